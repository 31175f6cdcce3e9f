"""Which emoji go into the corpus, what they are called, and which split they are in.

The list comes from the ``emoji`` package (CLDR short names), keywords from
OpenMoji's table (CLDR annotations) when installed. Rebalancing rules:

* skin tones: the default (yellow) emoji plus at most ONE skin-tone variant per
  base emoji, picked deterministically by hashing the base name, so all five
  tones occur across the corpus without one subject appearing six times;
* country/subdivision flags: at most ``max_flags`` (hash-ordered), the same
  set for every style, because ~260 near-identical rectangles would otherwise
  be ~7 % of the data;
* split: ``heldout`` when a hash of the *base* name falls in the held-out
  fraction, so every style and skin tone of one subject is in the same split.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import emoji

SKIN_TONES = range(0x1F3FB, 0x1F400)
REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)
TAG_CHARS = range(0xE0020, 0xE0080)
_SKIN_TONE_WORDS = re.compile(r"[,:]?\s*\b(?:medium-light|medium-dark|light|medium|dark) skin tone\b")


@dataclass(frozen=True)
class CatalogEntry:
    char: str
    name: str  # CLDR short name, e.g. "grinning face"
    base_name: str  # name without skin-tone words; used for the split hash
    aliases: tuple[str, ...]
    keywords: tuple[str, ...]
    group: str
    skin_tone: bool
    flag: bool
    split: str
    emoji_version: float
    codepoints: tuple[str, ...] = field(default=())


def stable_hash(text: str) -> int:
    """Process-independent hash (Python's ``hash`` is salted per run)."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def clean_name(short_name: str) -> str:
    """':Mrs._Claus_dark_skin_tone:' -> 'Mrs. Claus dark skin tone'."""
    return short_name.strip(":").replace("_", " ")


def base_name_of(name: str) -> str:
    return _SKIN_TONE_WORDS.sub("", name).strip()


def _display_name(raw: str, flag: bool) -> tuple[str, str]:
    """CLDR-style display name and base name.

    'woman judge medium skin tone' -> 'woman judge: medium skin tone'; country
    flags get the CLDR 'flag: ' prefix ('Wales' -> 'flag: Wales').
    """
    base = base_name_of(raw)
    if flag and not base.lower().startswith("flag"):
        base = f"flag: {base}"
    tones = [m.group(0).strip(" ,:") for m in _SKIN_TONE_WORDS.finditer(raw)]
    name = f"{base}: {', '.join(tones)}" if tones else base
    return name, base


def split_of(base_name: str, heldout_fraction: float) -> str:
    bucket = stable_hash("split:" + base_name.lower()) % 10_000
    return "heldout" if bucket < heldout_fraction * 10_000 else "train"


def is_country_flag(char: str) -> bool:
    cps = [ord(c) for c in char]
    if all(c in REGIONAL_INDICATORS for c in cps):
        return True
    # England/Scotland/Wales: black flag + tag characters
    return cps[0] == 0x1F3F4 and len(cps) > 1 and all(c in TAG_CHARS for c in cps[1:])


def _has_skin_tone(char: str) -> bool:
    return any(ord(c) in SKIN_TONES for c in char)


def _base_key(char: str) -> str:
    """Character with skin tones and variation selectors removed (groups variants)."""
    return "".join(c for c in char if ord(c) not in SKIN_TONES and c != "\ufe0f")


def _keywords(char: str, meta: dict[str, dict]) -> tuple[str, ...]:
    row = meta.get(char) or meta.get(char.replace("\ufe0f", ""))
    if not row:
        return ()
    words = [w.strip() for w in (row.get("tags") or "").split(",")]
    words += [w.strip() for w in (row.get("openmoji_tags") or "").split(",")]
    seen: dict[str, None] = {}
    for w in words:
        if w:
            seen.setdefault(w, None)
    return tuple(seen)


def _group(char: str, meta: dict[str, dict], flag: bool) -> str:
    row = meta.get(char) or meta.get(char.replace("\ufe0f", ""))
    if row:
        return row.get("group", "")
    return "flags" if flag else ""


def build_catalog(
    meta: dict[str, dict] | None = None,
    max_flags: int = 60,
    heldout_fraction: float = 0.05,
) -> list[CatalogEntry]:
    """Rebalanced, split-assigned emoji list in a deterministic order."""
    meta = meta or {}
    fully = emoji.STATUS["fully_qualified"]
    chars = [c for c, d in emoji.EMOJI_DATA.items() if d["status"] == fully]
    chars.sort(key=lambda c: [ord(x) for x in c])

    # One skin-tone variant per base: group variants, pick by hash of the base.
    variants: dict[str, list[str]] = {}
    for c in chars:
        if _has_skin_tone(c):
            variants.setdefault(_base_key(c), []).append(c)
    keep_tone = {base: sorted(vs)[stable_hash("tone:" + base) % len(vs)] for base, vs in variants.items()}

    flags = sorted((c for c in chars if is_country_flag(c)), key=lambda c: stable_hash("flag:" + c))
    keep_flags = set(flags[:max_flags])

    entries: list[CatalogEntry] = []
    for c in chars:
        tone = _has_skin_tone(c)
        flag = is_country_flag(c)
        if tone and keep_tone[_base_key(c)] != c:
            continue
        if flag and c not in keep_flags:
            continue
        data = emoji.EMOJI_DATA[c]
        name, base = _display_name(clean_name(data["en"]), flag)
        entries.append(
            CatalogEntry(
                char=c,
                name=name,
                base_name=base,
                aliases=tuple(clean_name(a) for a in data.get("alias", [])),
                keywords=_keywords(c, meta),
                group=_group(c, meta, flag),
                skin_tone=tone,
                flag=flag,
                split=split_of(base, heldout_fraction),
                emoji_version=float(data.get("E", 0)),
                codepoints=tuple(f"U+{ord(x):04X}" for x in c),
            )
        )
    return entries
