"""Text benchmark: the app's pipeline vs plain library calls on the same model file, side by side.

    python bench/text.py [--new-tokens 128] [--threads 2]

(a) the app's TextPipeline exactly as the Text tab calls it (default engine, streaming included),
(b) plain transformers `model.generate` with default settings (fp32) on the GGUF,
(c) llama.cpp on the same GGUF through llama-cpp-python's `create_completion`,
(d) the app's transformers engine (the path for hub models and GPUs) on the same weights.
Prints load time, time to first token, decode tokens/s, ratios, and the first 32 greedy tokens of each.
Each row runs in a fresh process. Not a test: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROW_MARK = "BENCH-ROW "
PROMPT = "Write a detailed essay about the history of the printing press and how it changed Europe."
SYSTEM = "You are a helpful, concise assistant."


def bench_pipeline(engine: str, threads: int, new_tokens: int, cache_dir: Path | None = None):
    from aigc_demo.compute import compute_thread
    from aigc_demo.config import TextConfig
    from aigc_demo.pipelines.text import GenerationParams, TextPipeline

    kwargs = {"cache_dir": cache_dir} if cache_dir else {}
    t0 = time.perf_counter()
    # Loaded and warmed up on the compute thread, as the app's registry does.
    pipe = compute_thread().run(
        TextPipeline.from_config, TextConfig(engine=engine, threads=threads, **kwargs)
    )
    load = time.perf_counter() - t0
    params = GenerationParams(max_new_tokens=new_tokens, temperature=0.0, repetition_penalty=1.0, seed=0)

    def warm_up():
        for _ in pipe.chat(
            "Hi", system_prompt=SYSTEM, params=GenerationParams(max_new_tokens=2, temperature=0)
        ):
            pass

    compute_thread().run(warm_up)
    warm = time.perf_counter() - t0
    # Record the ids the engine yields, to compare tokens with the plain calls.
    ids: list[int] = []
    original = pipe.engine.generate_ids

    def recording(prompt_ids, p):
        for i in original(prompt_ids, p):
            ids.append(i)
            yield i

    pipe.engine.generate_ids = recording
    last = None
    for last in pipe.chat(PROMPT, system_prompt=SYSTEM, params=params):
        pass
    s = last.stats
    return dict(
        load=load,
        start=warm,
        ttft=s.time_to_first_token_s,
        tps=s.tokens_per_s,
        n=s.new_tokens,
        ids=ids[: s.new_tokens],
        prompt_tokens=s.prompt_tokens,
    )


def chat_prompt_text() -> str:
    from aigc_demo.config import TextConfig
    from aigc_demo.pipelines.text_engines import LlamaCppEngine

    eng = LlamaCppEngine.from_config(TextConfig(threads=1, context_length=512))
    return eng.render_chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}])


def bench_plain_transformers(prompt: str, threads: int, new_tokens: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aigc_demo.config import DEFAULT_TEXT_MODEL
    from aigc_demo.models import resolve_model_path

    torch.set_num_threads(threads)
    folder, gguf = resolve_model_path(DEFAULT_TEXT_MODEL)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf)
    load = time.perf_counter() - t0
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    model.generate(**ids, max_new_tokens=2, do_sample=False)  # warm-up
    t1 = time.perf_counter()
    model.generate(**ids, max_new_tokens=1, do_sample=False)
    ttft = time.perf_counter() - t1
    t2 = time.perf_counter()
    out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False)
    total = time.perf_counter() - t2
    new = out[0, ids["input_ids"].shape[1] :].tolist()
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    n = next((i for i, t in enumerate(new) if t in eos), len(new))
    return dict(load=load, ttft=ttft, tps=(len(new) - 1) / max(total - ttft, 1e-9), n=n, ids=new[:n])


def bench_llama_cpp(prompt: str, threads: int, new_tokens: int):
    import llama_cpp

    from aigc_demo.config import DEFAULT_TEXT_MODEL
    from aigc_demo.models import resolve_model_path

    folder, gguf = resolve_model_path(DEFAULT_TEXT_MODEL)
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(str(Path(folder) / gguf), n_ctx=4096, n_threads=threads, verbose=False)
    load = time.perf_counter() - t0
    llm.create_completion(prompt, max_tokens=2, temperature=0.0)  # warm-up
    llm.reset()
    t1 = time.perf_counter()
    first = None
    pieces = []
    for chunk in llm.create_completion(prompt, max_tokens=new_tokens, temperature=0.0, stream=True):
        if first is None:
            first = time.perf_counter() - t1
        pieces.append(chunk["choices"][0]["text"])
    total = time.perf_counter() - t1
    text = "".join(pieces)
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)
    n = len(pieces)
    return dict(load=load, ttft=first, tps=(n - 1) / max(total - first, 1e-9), n=n, ids=ids, text=text)


def memory_read_gb_s(threads: int) -> float:
    """What one pass over a 500 MB tensor achieves: the ceiling for weight-streaming decode."""
    import torch

    torch.set_num_threads(threads)
    big = torch.randn(125_000_000)
    big.sum()
    t0 = time.perf_counter()
    for _ in range(5):
        big.sum()
    return 5 * big.numel() * 4 / (time.perf_counter() - t0) / 1e9


def linear_weight_bytes() -> int:
    """Bytes of fp32 matrix weights a transformers decode step reads (every Linear, LM head included)."""
    from transformers import AutoConfig

    from aigc_demo.config import DEFAULT_TEXT_MODEL
    from aigc_demo.models import resolve_model_path

    folder, gguf = resolve_model_path(DEFAULT_TEXT_MODEL)
    c = AutoConfig.from_pretrained(folder, gguf_file=gguf)
    head = c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads * head
    per_layer = c.hidden_size * (2 * c.hidden_size + 2 * kv) + 3 * c.hidden_size * c.intermediate_size
    return 4 * (c.num_hidden_layers * per_layer + c.vocab_size * c.hidden_size)


ROWS = {
    "a": "(a) app pipeline (default engine)",
    "b": "(b) plain transformers generate fp32",
    "c": "(c) llama-cpp-python create_completion",
    "d": "(d) app pipeline, transformers engine",
}


def run_row(row: str, threads: int, new_tokens: int) -> dict:
    if row == "a":
        return bench_pipeline("auto", threads, new_tokens)
    if row == "d":
        return bench_pipeline("transformers", threads, new_tokens)
    prompt = chat_prompt_text()
    if row == "b":
        return bench_plain_transformers(prompt, threads, new_tokens)
    return bench_llama_cpp(prompt, threads, new_tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--row", choices=sorted(ROWS), help="measure one row and print it as JSON (internal)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.row:
        print(ROW_MARK + json.dumps(run_row(args.row, args.threads, args.new_tokens)))
        return
    # Each row in a fresh process: a thread that ran PyTorch keeps an OpenMP team alive, which would
    # slow every row measured after it in the same process (see aigc_demo/compute.py).
    results = {}
    for row, name in ROWS.items():
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--row",
                row,
                "--threads",
                str(args.threads),
                "--new-tokens",
                str(args.new_tokens),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results[name] = json.loads(out.split(ROW_MARK, 1)[1])
    print(
        f"\nprompt: {results['(a) app pipeline (default engine)']['prompt_tokens']} tokens (chat template), "
        f"{args.new_tokens} new greedy tokens max, {args.threads} threads\n"
    )
    print(f"{'':42} {'load s':>8} {'start s':>8} {'TTFT ms':>8} {'tok/s':>8} {'tokens':>7}")
    for name, r in results.items():
        start = f"{r['start']:8.2f}" if "start" in r else f"{'':>8}"
        print(f"{name:42} {r['load']:8.2f} {start} {r['ttft'] * 1000:8.1f} {r['tps']:8.1f} {r['n']:7d}")
    a, b, c, d = results.values()
    print(
        f"\nratio decode tok/s  a/c = {a['tps'] / c['tps']:.2f}   a/b = {a['tps'] / b['tps']:.2f}   "
        f"d/b = {d['tps'] / b['tps']:.2f}"
    )
    print(f"ratio TTFT          a/c = {a['ttft'] / c['ttft']:.2f}   d/b = {d['ttft'] / b['ttft']:.2f}")
    print(f"app start (load + warm-up): {a['start']:.2f} s")
    bandwidth = memory_read_gb_s(args.threads)
    weights = linear_weight_bytes()
    print(
        f"transformers fp32 decode streams {weights / 1e6:.0f} MB of weights per token: "
        f"(b) {weights * b['tps'] / 1e9:.1f} GB/s, (d) {weights * d['tps'] / 1e9:.1f} GB/s, "
        f"memory read ceiling {bandwidth:.1f} GB/s -> at most {bandwidth * 1e9 / weights:.0f} tok/s"
    )
    print(
        f"greedy tokens identical: a==c (first 32): {a['ids'][:32] == c['ids'][:32]}   "
        f"d==b (all): {d['ids'] == b['ids']}"
    )
    for name, r in results.items():
        print(f"{name:42} first 32 ids: {r['ids'][:32]}")


if __name__ == "__main__":
    main()
