"""Build the captioned multi-style emoji corpus.

    python -m aigc_demo.data.build_corpus            # -> data/emoji/
    python -m aigc_demo.data.build_corpus --sizes 64 128 --out /tmp/emoji

Writes ``images_<size>.npy`` (uint8, N x size x size x 3, white background),
``manifest.jsonl`` (one JSON object per row, same order) and ``corpus_info.json``
(sources, licenses, rebalancing rules, counts). Sources that are not installed
are reported with their install command and skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from aigc_demo.data.catalog import CatalogEntry, build_catalog
from aigc_demo.data.paths import corpus_dir, vendor_dir
from aigc_demo.data.render import to_tile
from aigc_demo.data.sources import EmojiSource, all_sources, openmoji_metadata

logger = logging.getLogger(__name__)

REBALANCING_NOTE = (
    "Skin tones: default emoji plus at most one skin-tone variant per base emoji "
    "(chosen by a hash of the base). Country/subdivision flags: at most {max_flags} "
    "(hash-selected, same set in every style). Held-out split: hash of the base name "
    "(skin tone removed), {heldout:.0%} of subjects, identical across styles."
)


def caption_for(entry: CatalogEntry, source: EmojiSource) -> str:
    return f"{entry.name}, in {source.label} style"


def manifest_row(row: int, entry: CatalogEntry, source: EmojiSource) -> dict:
    stem = "-".join(cp[2:].lower() for cp in entry.codepoints)
    return {
        "row": row,
        "id": f"{source.style}:{stem}",
        "char": entry.char,
        "codepoints": list(entry.codepoints),
        "name": entry.name,
        "base_name": entry.base_name,
        "caption": caption_for(entry, source),
        "keywords": list(entry.keywords),
        "aliases": list(entry.aliases),
        "group": entry.group,
        "skin_tone": entry.skin_tone,
        "flag": entry.flag,
        "emoji_version": entry.emoji_version,
        "style": source.style,
        "style_label": source.label,
        "source": source.package,
        "license": source.license,
        "attribution": source.attribution,
        "split": entry.split,
    }


def available_sources(styles: list[str] | None, vendor: Path) -> list[EmojiSource]:
    """Installed sources, logging the install command for each missing one."""
    chosen: list[EmojiSource] = []
    for src in all_sources(vendor):
        if styles and src.style not in styles:
            continue
        if src.available():
            chosen.append(src)
        else:
            logger.warning(
                "source %-9s MISSING (%s not found) -> install with: %s",
                src.style,
                src.location,
                src.install_hint,
            )
    return chosen


def render_corpus(
    sources: list[EmojiSource],
    catalog: list[CatalogEntry],
    sizes: list[int],
) -> tuple[dict[int, np.ndarray], list[dict]]:
    """Render every (source, emoji) pair that has artwork; deterministic order."""
    tiles: dict[int, list[np.ndarray]] = {s: [] for s in sizes}
    rows: list[dict] = []
    total = len(sources) * len(catalog)
    with tqdm(total=total, desc="rendering", unit="emoji") as bar:
        for src in sources:
            for entry in catalog:
                bar.update(1)
                art = src.render(entry.char)
                if art is None:
                    continue
                for s in sizes:
                    tiles[s].append(to_tile(art, s))
                rows.append(manifest_row(len(rows), entry, src))
    arrays = {s: np.stack(t) if t else np.zeros((0, s, s, 3), np.uint8) for s, t in tiles.items()}
    return arrays, rows


def corpus_stats(rows: list[dict]) -> dict:
    per_style = Counter(r["style"] for r in rows)
    heldout = Counter(r["style"] for r in rows if r["split"] == "heldout")
    return {
        "items": len(rows),
        "heldout_items": sum(heldout.values()),
        "per_style": dict(per_style),
        "heldout_per_style": dict(heldout),
        "skin_tone_items": sum(r["skin_tone"] for r in rows),
        "flag_items": sum(r["flag"] for r in rows),
    }


def write_corpus(
    out: Path,
    arrays: dict[int, np.ndarray],
    rows: list[dict],
    info: dict,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for size, arr in arrays.items():
        np.save(out / f"images_{size}.npy", arr)
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out / "corpus_info.json").write_text(
        json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def build(
    out: Path,
    sizes: list[int],
    styles: list[str] | None = None,
    limit: int | None = None,
    max_flags: int = 60,
    heldout_fraction: float = 0.05,
    vendor: Path | None = None,
) -> dict:
    """Build the corpus into ``out``; returns the stats. Raises if no source exists."""
    vendor = vendor or vendor_dir()
    sources = available_sources(styles, vendor)
    if not sources:
        raise RuntimeError("no emoji source is installed; see the install commands above")
    catalog = build_catalog(openmoji_metadata(vendor), max_flags, heldout_fraction)
    if limit:
        catalog = catalog[:limit]
    logger.info(
        "%d catalog emoji x %d sources: %s", len(catalog), len(sources), ", ".join(s.style for s in sources)
    )
    arrays, rows = render_corpus(sources, catalog, sizes)
    stats = corpus_stats(rows)
    info = {
        "sizes": sizes,
        "background": "white",
        "rebalancing": REBALANCING_NOTE.format(max_flags=max_flags, heldout=heldout_fraction),
        "max_flags": max_flags,
        "heldout_fraction": heldout_fraction,
        "sources": [
            {
                "style": s.style,
                "label": s.label,
                "package": s.package,
                "license": s.license,
                "attribution": s.attribution,
            }
            for s in sources
        ],
        "stats": stats,
    }
    write_corpus(out, arrays, rows, info)
    return stats


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--out", type=Path, default=None, help="output dir (default: data/emoji or $AIGC_DATA_DIR)"
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[64], help="tile sizes to store")
    p.add_argument("--styles", nargs="+", default=None, help="subset of noto openmoji twemoji")
    p.add_argument("--limit", type=int, default=None, help="first N catalog emoji (for tests)")
    p.add_argument("--max-flags", type=int, default=60)
    p.add_argument("--heldout-fraction", type=float, default=0.05)
    p.add_argument("--vendor", type=Path, default=None, help="npm prefix (default data/vendor)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    out = args.out or corpus_dir()
    try:
        stats = build(
            out, args.sizes, args.styles, args.limit, args.max_flags, args.heldout_fraction, args.vendor
        )
    except RuntimeError as exc:
        logger.error("%s", exc)
        return 1
    logger.info("wrote %s: %s", out, json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
