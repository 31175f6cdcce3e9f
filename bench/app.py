"""End-to-end speed through the running app's API: what a user (or a script) actually waits for.

    python bench/app.py [--rounds 3] [--text-only] [--env AIGC_SERVER_QUEUE_POLL_S=0.001 ...]

Starts app.py on a free port (its UNet compiled before it answers, as it does in the background when serving)
and, in each round, calls /chat (greedy, 128 new tokens), /image_generate at batch 1 twice and at batch 8 once
(20 DPM++ 2M steps, guidance 5), then /chat again: text and images served by one process, one after the other,
as users mix them. Each round also streams the same chat through the plain REST API (``/call/chat`` read with
httpx: the serving path without gradio_client's own polling) and from llama-cpp-python itself in this process
(the same GGUF, threads and system prompt; the app idle meanwhile), each timed as its reader sees it, and prints
the API's and REST's tokens/s and first token against llama-cpp-python's. ``--text-only`` skips the images (and the UNet compile). Prints the
app's own numbers (time to first token, tokens/s, seconds per image, the image dtype). Compare with
bench/image.py and bench/text.py, which time each pipeline alone. Idle machine only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from running_app import PIDS, cpu_by_thread_name, running_app

PROMPT = "grinning face, in Noto Color Emoji style"
MESSAGE = "Write a detailed essay about the history of the printing press."
NEW_TOKENS = 128


class Stream:
    """First token and decode speed of one streamed reply, as its reader sees them."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.first: float | None = None
        self.count = 0

    def saw(self, tokens: int) -> None:
        if tokens > 0 and self.first is None:
            self.first = time.perf_counter() - self.t0
        self.count = tokens

    def line(self, name: str) -> tuple[str, float, float]:
        total = time.perf_counter() - self.t0
        tps = (self.count - 1) / max(total - self.first, 1e-9)
        return (
            f"{name} {self.count} tokens: first {self.first * 1e3:.0f} ms, {tps:.1f} tok/s",
            self.first,
            tps,
        )


class CoresUsed:
    """Cores busy while a reply streams, split into the app's compute threads (with their OpenMP workers: the
    team decoding), its other threads and this process (the client): on 2 cores, what the serving path and
    its reader take from the team decoding."""

    def __init__(self, app_pid: int) -> None:
        self.pid = app_pid
        self.t0, self.app0, self.me0 = time.perf_counter(), cpu_by_thread_name(app_pid), time.process_time()

    def line(self) -> str:
        wall = time.perf_counter() - self.t0
        app = cpu_by_thread_name(self.pid)
        used = {name: app[name] - self.app0.get(name, 0.0) for name in app}
        compute = used.pop("aigc-compute", 0.0) + used.pop("aigc-llama.cpp", 0.0)
        others = sum(used.values())
        client = time.process_time() - self.me0
        return f"cores: compute {compute / wall:.2f}, app's other threads {others / wall:.2f}, client {client / wall:.2f}"


def rest_chat(url: str, data: list):
    """The same chat through Gradio's plain REST API (``/call/chat``, server-sent events) with httpx: the app's
    serving path without gradio_client, whose receiving thread looks for new messages every 50 ms."""
    import httpx

    def chat() -> tuple[str, float, float]:
        stream = Stream()
        with httpx.Client(base_url=url, timeout=120) as http:
            event_id = http.post("gradio_api/call/chat", json={"data": data}).json()["event_id"]
            with http.stream("GET", f"gradio_api/call/chat/{event_id}") as events:
                for line in events.iter_lines():
                    if line.startswith("event: error"):
                        raise RuntimeError(f"/call/chat failed: {events.read()[:300]!r}")
                    if line.startswith("data:"):
                        payload = json.loads(line[5:])
                        if isinstance(payload, list) and payload and isinstance(payload[0], dict):
                            stream.saw(payload[0]["new_tokens"])
        return stream.line("REST /call/chat")

    return chat


def chat_arguments(client, **values) -> list:
    """Every argument of /chat in order: ``values`` by name, the rest the endpoint's defaults."""
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/chat"]["parameters"]
    unknown = set(values) - {p["parameter_name"] for p in params}
    assert not unknown, f"/chat has no parameter {unknown}"
    return [values.get(p["parameter_name"], p.get("parameter_default")) for p in params]


def plain_llama_cpp():
    """llama-cpp-python on the app's GGUF, with the app's context and threads."""
    import llama_cpp

    from aigc_demo.config import TextConfig
    from aigc_demo.device import usable_cores
    from aigc_demo.models import resolve_model_path

    cfg = TextConfig()
    folder, gguf = resolve_model_path(cfg.model)
    threads = cfg.threads or usable_cores()
    llm = llama_cpp.Llama(
        str(Path(folder) / gguf), n_ctx=cfg.context_length, n_threads=threads, n_threads_batch=threads,
        verbose=False,
    )  # fmt: skip
    messages = [{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": MESSAGE}]

    def chat() -> tuple[str, float, float]:
        llm.reset()
        stream = Stream()
        chunks = llm.create_chat_completion(messages, max_tokens=NEW_TOKENS, temperature=0.0, stream=True)
        n = 0
        for chunk in chunks:
            if chunk["choices"][0]["delta"].get("content"):
                n += 1
                stream.saw(n)
        return stream.line("llama-cpp-python")

    chat()  # warm-up
    return chat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--text-only", action="store_true")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the app")
    args = ap.parse_args()
    from gradio_client import Client

    env = {
        "AIGC_IMAGE_COMPILE": "off" if args.text_only else "now",
        **dict(e.split("=", 1) for e in args.env),
    }
    with running_app(env, start_timeout_s=600) as url:
        client = Client(url, verbose=False)
        plain = plain_llama_cpp()
        ratios: list[tuple[float, float]] = []
        rest_ratios: list[tuple[float, float]] = []

        # The same request for every reader: the app's default system prompt, as llama-cpp-python gets it.
        arguments = chat_arguments(
            client, message=MESSAGE, history=[], max_new_tokens=NEW_TOKENS, temperature=0.0, seed=0
        )
        rest = rest_chat(url, arguments)

        def chat() -> str:
            stream, cores = Stream(), CoresUsed(PIDS[url])
            job = client.submit(*arguments, api_name="/chat")
            for update in job:
                stream.saw(update["new_tokens"])
            out = job.result()
            line, first, tps = stream.line("API /chat")
            server = (
                f"(server: first {out['time_to_first_token_s'] * 1e3:.0f} ms, {out['tokens_per_s']:.1f} tok/s; "
                f"{cores.line()})"
            )
            cores = CoresUsed(PIDS[url])
            rest_line, rest_first, rest_tps = rest()
            rest_line += f" ({cores.line()})"
            cores = CoresUsed(PIDS[url])
            reference, ref_first, ref_tps = plain()
            reference += f" ({cores.line().replace('client', 'llama-cpp-python')})"
            ratios.append((tps / ref_tps, first / ref_first))
            rest_ratios.append((rest_tps / ref_tps, rest_first / ref_first))
            return (
                f"{line} {server} | {rest_line} | {reference} | API/plain: tok/s {tps / ref_tps:.2f}x, first token "
                f"{first / ref_first:.2f}x; REST/plain: {rest_tps / ref_tps:.2f}x, {rest_first / ref_first:.2f}x"
            )

        def image(batch: int, seed: int) -> str:
            _, info = client.predict(
                PROMPT, "", 20, 5.0, "DPM++ 2M", seed, batch, 64, 64, "diffusion", api_name="/image_generate"
            )
            return f"image b{batch} ({info.get('dtype', '?')}, UNet {info['unet']}): {info['seconds'] / batch:.3f} s/image"

        for r in range(args.rounds):
            if args.text_only:
                print(f"round {r}:", chat(), "|", chat(), flush=True)
                continue
            print(
                f"round {r}:",
                chat(),
                "|",
                image(1, r),
                "|",
                image(1, r + 100),
                "|",
                image(8, r),
                "|",
                chat(),
                flush=True,
            )
        for name, rows in (("API (gradio_client)", ratios), ("REST (httpx)", rest_ratios)):
            tps_ratio = statistics.median(r[0] for r in rows)
            first_ratio = statistics.median(r[1] for r in rows)
            print(
                f"median over {len(rows)} chats, {name} against llama-cpp-python: tokens/s {tps_ratio:.2f}x, "
                f"first token {first_ratio:.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
