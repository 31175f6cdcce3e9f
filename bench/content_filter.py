"""Calibrate the misuse filter: how close the corpus comes to each concept, and what the filter refuses.

    python bench/content_filter.py

Benign set: the emoji corpus's captions and subject names (what the image model is asked for) and the tabs'
examples. For each concept: the highest cosine any benign text reaches (with the text), the threshold and
the margin between them. Then the false-positive rate on the benign set and the refusals among the test
suite's refused examples (tests/test_content_filter.py), and the time of one check (idle machine).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    from test_content_filter import REFUSED

    from aigc_demo.config import WEIGHTS_DIR, SafetyConfig
    from aigc_demo.content_filter import ContentFilter
    from aigc_demo.ui.image_tab import EXAMPLES as IMAGE_EXAMPLES
    from aigc_demo.ui.story_tab import EXAMPLES as STORY_EXAMPLES

    flt = ContentFilter.from_config(SafetyConfig())
    items = json.loads((WEIGHTS_DIR / "vae-emoji" / "index.json").read_text())["items"]
    benign = sorted({i["caption"] for i in items} | {i["name"] for i in items})
    benign += [p for p, _ in IMAGE_EXAMPLES] + STORY_EXAMPLES
    sims = flt.similarities(benign)
    print(f"{len(benign)} benign texts (corpus captions, subject names, tab examples)")
    print("| concept | closest benign text | its cosine | threshold | margin |")
    print("|---|---|---|---|---|")
    for j, concept in enumerate(flt.concepts):
        top = int(sims[:, j].argmax())
        value = float(sims[top, j])
        print(
            f"| {concept.name} | {benign[top]} | {value:.3f} | {concept.threshold:.2f} | {concept.threshold - value:+.3f} |"
        )
    false_positives = [t for t, hits in zip(benign, flt.hits(benign)) if hits]
    print(f"false positives: {len(false_positives)} of {len(benign)} {false_positives[:5]}")
    refused = [bool(hits) for hits in flt.hits([t for t, _ in REFUSED])]
    print(f"refused: {sum(refused)} of {len(REFUSED)} test examples")
    times = []
    for text, _ in REFUSED * 3:
        t0 = time.perf_counter()
        flt.hits([text])
        times.append(time.perf_counter() - t0)
    print(f"one check: {statistics.median(times) * 1e3:.1f} ms median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
