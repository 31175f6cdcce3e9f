"""The picture watermark and signing as a user gets them: robustness, visibility, false alarms, added time.

    python bench/provenance.py [--marked 100] [--unmarked 500] [--films 20]

Needs the corpus (``python -m aigc_demo.data.build_corpus --sizes 64 256``). Marked: held-out corpus pictures
at 256 px (the size of the app's upscaled pictures and Story panels), each with a random id. For each copy a
picture may go through (JPEG quality 75, half size, 10% cropped, PNG -> JPEG -> PNG, a screenshot), the share
whose id is
read back and the mean bit accuracy of the 40 decoded bits (the copies are the Verify tab's robustness lab,
``provenance/robustness.py``). Visibility: PSNR of marked vs unmarked. False
alarms: ids "found" in unmarked pictures. Time: what ``save_png`` adds per picture (watermark, then C2PA
signing) over a plain PIL save, medians. Films: Story-style films (three held-out pictures, zoom and pan,
subtitles, 512 px H.264) with every frame marked, read back as the Verify tab reads them (the mean of 8
frames spread over the video, then frame by frame) as made, re-encoded at x264 CRF 32, halved and re-encoded,
and from the film's GIF. Idle machine only.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
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
    ap.add_argument("--films", type=int, default=20)
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
    if args.films:
        films(corpus, held_out, args.films, rng)
    return 0


def films(corpus, held_out: list[int], count: int, rng: np.random.Generator) -> None:
    import imageio_ffmpeg

    from aigc_demo.config import ProvenanceConfig
    from aigc_demo.film import FilmSpec, Shot, render_film
    from aigc_demo.pipelines.verify import VerifyPipeline
    from aigc_demo.provenance import image_watermark as wm

    folder = Path(tempfile.mkdtemp())
    verify = VerifyPipeline.from_config(ProvenanceConfig())
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    reencodes = {"x264 CRF 32": ["-crf", "32"], "halved, CRF 28": ["-vf", "scale=256:256", "-crf", "28"]}
    found: dict[str, int] = {}
    mark_s = []
    for _ in range(count):
        rows = rng.choice(held_out, 3, replace=False)
        shots = [
            Shot(Image.fromarray(corpus.images[r][..., :3]), 2.0, subtitle="a scene", motion=motion)
            for r, motion in zip(rows, ("zoom_in", "pan_left", "zoom_out"), strict=True)
        ]
        marker = wm.FrameMarker(int(rng.integers(0, 2**wm.ID_BITS)))
        film = render_film(shots, [[], []], folder, FilmSpec(), mark=marker)
        frame = Image.new("RGB", (FilmSpec().size,) * 2, "white")
        t0 = time.perf_counter()
        marker(frame)
        mark_s.append(time.perf_counter() - t0)
        copies = {"as made (MP4)": film.mp4, "the film's GIF": film.gif}
        for name, options in reencodes.items():
            copy = folder / f"{film.mp4.stem}-{len(copies)}.mp4"
            command = [ffmpeg, "-y", "-loglevel", "error", "-i", str(film.mp4), *options, str(copy)]
            subprocess.run(command, check=True, capture_output=True)
            copies[name] = copy
        for name, path in copies.items():
            reading = verify.inspect(path).watermark
            found[name] = found.get(name, 0) + bool(reading and reading.watermark_id == marker.watermark_id)
    print(f"{count} films of 3 held-out pictures (6 s, 512 px, 12 fps), every frame marked")
    print("| copy | id read back |")
    print("|---|---|")
    for name, hits in found.items():
        print(f"| {name} | {hits}/{count} ({hits / count:.0%}) |")
    print(f"marking a 512-px frame: {statistics.median(mark_s) * 1e3:.1f} ms (median)")


if __name__ == "__main__":
    sys.exit(main())
