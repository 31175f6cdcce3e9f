"""Text generation speed with the page open: what a user watching the Text tab gets.

    python bench/text_page.py [--intervals 0 0.05 0.1 0.2] [--repeats 3]

Starts app.py once per page-update interval (AIGC_TEXT_UI_UPDATE_INTERVAL_S; 0 = a page update for every
token), asks for the same long story in Debian's Chromium (Playwright), and prints the decode speed the
Text tab reports when the reply finishes. On 2 cores the browser re-rendering the chat competes with the
model, so fewer page updates mean faster text; bench/text.py gives the speed with no page at all.
Idle machine only.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys

from running_app import running_app

MESSAGE = "Write a long story about a lighthouse keeper."
FINISHED = "#chat-stats:has-text('finish: stop'), #chat-stats:has-text('finish: length')"


def page_speeds(browser, url: str, repeats: int) -> list[float]:
    speeds = []
    for _ in range(repeats):
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#chat-message textarea", timeout=60_000)
        page.fill("#chat-message textarea", MESSAGE)
        page.click("#chat-send")
        page.wait_for_selector(FINISHED, timeout=120_000)
        speeds.append(float(re.search(r"([\d.]+) tok/s", page.inner_text("#chat-stats")).group(1)))
        page.close()
    return speeds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--intervals", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        for interval in args.intervals:
            with running_app({"AIGC_TEXT_UI_UPDATE_INTERVAL_S": str(interval)}) as url:
                rows.append((interval, page_speeds(browser, url, args.repeats)))
        browser.close()
    base = statistics.median(rows[0][1])
    print(f"{'page update every':>18} | tok/s (each run)        | median | vs first row")
    for interval, speeds in rows:
        every = "token" if interval == 0 else f"{interval:.2f} s"
        runs = ", ".join(f"{s:.1f}" for s in speeds)
        median = statistics.median(speeds)
        print(f"{every:>18} | {runs:<23} | {median:6.1f} | {median / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
