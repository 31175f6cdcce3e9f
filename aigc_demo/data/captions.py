"""Caption variants for text-conditioned training.

One fixed caption per image teaches a model one phrasing. Users type "happy face", "a red apple" or
"cat in Twemoji style", so every corpus row gets several captions built from its CLDR name, aliases and
keywords, with and without the style: the text encoder then sees many phrasings of each subject, and the
style stays promptable.

A keyword that is another emoji's name is left out: "rocket" is a keyword of the six astronaut images, and
as "rocket emoji" it taught the model to draw an astronaut for "rocket".
"""

from __future__ import annotations

from aigc_demo.data.catalog import stable_hash

MAX_VARIANTS = 4


def caption_variants(
    row: dict, max_variants: int = MAX_VARIANTS, other_names: frozenset[str] = frozenset()
) -> list[str]:
    """Deterministic captions for one manifest row; the first is the canonical one. ``other_names`` (lower
    case) are the corpus's emoji names: an alias or keyword among them would caption this row as another emoji."""
    name, style = row["name"], row["style_label"]
    variants = [f"{name}, in {style} style", name]
    extra = [a for a in row.get("aliases", []) if a.lower() != name.lower()]
    extra += [k for k in row.get("keywords", []) if k.lower() not in name.lower()]
    extra = [word for word in extra if word.lower() not in other_names]
    # A stable pick, so rebuilding gives the same captions, without always using the first keyword.
    extra = sorted(dict.fromkeys(extra), key=lambda k: stable_hash(row["id"] + k))
    for word in extra[:2]:
        variants.append(f"{word} emoji, {style} style")
    return variants[:max_variants]
