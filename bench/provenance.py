"""The picture watermark and signing as a user gets them: robustness, visibility, false alarms, added time.

    python bench/provenance.py [--marked 100] [--unmarked 500]

Needs the corpus (``python -m aigc_demo.data.build_corpus --sizes 64 256``). Marked: held-out corpus pictures
at 256 px (the size of the app's upscaled pictures and Story panels), each with a random id. For each copy a
picture may go through (JPEG quality 75, half size, 10% cropped, PNG -> JPEG -> PNG, a screenshot), the share
whose id is
read back and the mean bit accuracy of the 40 decoded bits (the copies are the Verify tab's robustness lab,
``provenance/robustness.py``). Visibility: PSNR of marked vs unmarked. False
alarms: ids "found" in unmarked pictures. Time: what ``save_png`` adds per picture (watermark, then C2PA
signing) over a plain PIL save, medians. Idle machine only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--marked", type=int, default=100)
    ap.add_argument("--unmarked", type=int, default=500)
    args = ap.parse_args()
    from aigc_demo.data.corpus import load_corpus
    from aigc_demo.provenance import image_watermark as wm
    from aigc_demo.provenance.parameters import save_png
    from aigc_demo.provenance.robustness import COPIES

    corpus = load_corpus(size=256)
    held_out = [i for i, row in enumerate(corpus.rows) if row.get("split") != "train"]
    others = [i for i, row in enumerate(corpus.rows) if row.get("split") == "train"]
    rng = np.random.default_rng(0)
    marked_rows = rng.choice(held_out, min(args.marked, len(held_out)), replace=False)
    unmarked_rows = rng.choice(others, args.unmarked, replace=False)

    copies = {"as made": lambda im: im, **COPIES}
    found = {name: 0 for name in copies}
    bit_accuracy = {name: [] for name in copies}
    psnr = []
    for row in marked_rows:
        picture = Image.fromarray(corpus.images[row][..., :3])
        watermark_id = int(rng.integers(0, 2**wm.ID_BITS))
        marked = wm.embed(picture, watermark_id)
        error = np.asarray(marked, dtype=float) - np.asarray(picture, dtype=float)
        psnr.append(10 * np.log10(255**2 / max((error**2).mean(), 1e-12)))
        word = (watermark_id << wm.CRC_BITS) | wm.crc16(watermark_id)
        for name, copy in copies.items():
            reading = wm.read(copy(marked))
            found[name] += reading.found and reading.watermark_id == watermark_id
            bit_accuracy[name].append(1 - bin(reading.word ^ word).count("1") / wm.BITS)
    false_alarms = sum(wm.read(Image.fromarray(corpus.images[row][..., :3])).found for row in unmarked_rows)

    # What save_png adds per picture: watermark + text chunks + C2PA signing, against a plain PIL save.
    folder = Path(tempfile.mkdtemp())
    sample = Image.fromarray(corpus.images[marked_rows[0]][..., :3])
    save_png(sample, {"prompt": "warm-up"}, folder)
    plain_s, ours_s = [], []
    for k in range(20):
        t0 = time.perf_counter()
        sample.save(folder / f"plain-{k}.png")
        plain_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        save_png(sample, {"prompt": "a picture", "seed": k}, folder / str(k))
        ours_s.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(5):
        wm.read(sample)
    read_s = (time.perf_counter() - t0) / 5

    n = len(marked_rows)
    print(f"{n} held-out corpus pictures at 256 px, each with a random {wm.ID_BITS}-bit id")
    print("| copy | id read back | bit accuracy |")
    print("|---|---|---|")
    for name in copies:
        print(
            f"| {name} | {found[name]}/{n} ({found[name] / n:.0%}) | {statistics.mean(bit_accuracy[name]):.3f} |"
        )
    print(f"PSNR marked vs unmarked: median {statistics.median(psnr):.1f} dB, lowest {min(psnr):.1f} dB")
    print(f"false alarms: {false_alarms} of {len(unmarked_rows)} unmarked corpus pictures")
    added = statistics.median(ours_s) - statistics.median(plain_s)
    print(
        f"save_png {statistics.median(ours_s) * 1e3:.1f} ms vs plain PIL save {statistics.median(plain_s) * 1e3:.1f} ms:"
        f" +{added * 1e3:.1f} ms per picture (watermark + C2PA); reading a watermark {read_s * 1e3:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
