"""Caption variants for text-conditioned training.

One fixed caption per image teaches a model one phrasing. Users type "happy face", "a red apple" or
"cat in Twemoji style", so every corpus row gets several captions built from its CLDR name, aliases and
keywords, with and without the style: the text encoder then sees many phrasings of each subject, and the
style stays promptable.
"""

from __future__ import annotations

from aigc_demo.data.catalog import stable_hash

MAX_VARIANTS = 4


def caption_variants(row: dict, max_variants: int = MAX_VARIANTS) -> list[str]:
    """Deterministic captions for one manifest row; the first is the canonical one."""
    name, style = row["name"], row["style_label"]
    variants = [f"{name}, in {style} style", name]
    extra = [a for a in row.get("aliases", []) if a.lower() != name.lower()]
    extra += [k for k in row.get("keywords", []) if k.lower() not in name.lower()]
    # A stable pick, so rebuilding gives the same captions, without always using the first keyword.
    extra = sorted(dict.fromkeys(extra), key=lambda k: stable_hash(row["id"] + k))
    for word in extra[:2]:
        variants.append(f"{word} emoji, {style} style")
    return variants[:max_variants]
