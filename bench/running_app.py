"""Start ``python app.py`` on a free port for a benchmark, and stop it afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIDS: dict[str, int] = {}  # url -> the process serving it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(env: dict[str, str] | None = None, start_timeout_s: float = 180) -> Iterator[str]:
    """The app's URL once it answers; extra ``AIGC_*`` settings in ``env``."""
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")],
        cwd=ROOT,
        env={**os.environ, "AIGC_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + start_timeout_s
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.time() > deadline or app.poll() is not None:
                    raise SystemExit("the app did not start") from None
                time.sleep(0.5)
        PIDS[url] = app.pid
        yield url
    finally:
        PIDS.pop(url, None)
        app.terminate()
        app.wait()


def cpu_by_thread_name(pid: int) -> dict[str, float]:
    """CPU seconds each thread name of process ``pid`` has used so far (Linux). The app names its compute
    threads, and their OpenMP workers inherit the name: "aigc-compute" is that thread's whole team."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return used
