"""Idea to narrated MP4 through the running app's API, stage by stage, beside the plain engines.

    python bench/story.py [--rounds 3]

Starts app.py on a free port (UNet compiled before it answers: the steady state a visitor meets after the
first minutes) and, per round, calls /story_plan (4 scenes) then /story_render with the defaults (20-step
panels, Upscale x4, eSpeak NG narration, 6 latent transition frames, 512-px MP4). Prints the app's stage
times and the wall time a client waits. Then, with the app stopped, the plain engines on the same work:
llama.cpp writing the same plan without the JSON grammar (what constrained decoding costs), and eSpeak NG's
command line on the same lines. The first round is a warm-up and is not counted. Idle machine only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from running_app import running_app

IDEAS = [
    "a cat who is afraid of rain finds an umbrella",
    "a robot learns to bake bread",
    "a snowman who wants to see the summer",
    "a little fish who wants to fly",
]


def story_round(client, idea: str, seed: int) -> dict:
    t0 = time.perf_counter()
    plan = client.predict(idea, seed=seed, api_name="/story_plan")
    t1 = time.perf_counter()
    _, _, info = client.predict(plan, seed=seed, api_name="/story_render")
    t2 = time.perf_counter()
    stages = info["stage_seconds"]
    return {
        "plan (LLM)": plan["seconds"] - plan["grounding_seconds"],
        "grounding": plan["grounding_seconds"],
        "draw": stages["draw"],
        "upscale": stages["upscale"],
        "speech": stages["voice"],
        "transitions": stages["transitions"],
        "frames+encode": stages["encode"],
        "client wait": t2 - t0,
        "film seconds": info["seconds"],
        "audio seconds": info["audio_seconds"] or 0.0,
        "_plan": plan,
        "_render_wall": t2 - t1,
    }


def plain_engines(plans: list[dict]) -> dict:
    """llama.cpp without the grammar on the same messages, and espeak-ng's CLI on the same narration."""
    import llama_cpp

    from aigc_demo.config import TextConfig
    from aigc_demo.models import resolve_model_path
    from aigc_demo.pipelines.story_plan import plan_messages, plan_schema

    cfg = TextConfig()
    folder, gguf = resolve_model_path(cfg.model)
    llm = llama_cpp.Llama(model_path=f"{folder}/{gguf}", n_ctx=cfg.context_length, n_threads=2, verbose=False)
    rates = {"grammar": [], "free": []}
    for idea in IDEAS[1:]:
        system, history, message = plan_messages(idea, 4)
        messages = [{"role": "system", "content": system}, *history, {"role": "user", "content": message}]
        grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(plan_schema(4)), verbose=False)
        for name, extra in (("grammar", {"grammar": grammar}), ("free", {})):
            t = time.perf_counter()
            out = llm.create_chat_completion(messages, temperature=0.7, seed=1, max_tokens=400, **extra)
            rates[name].append(out["usage"]["completion_tokens"] / (time.perf_counter() - t))
    lines = [s["narration"] for p in plans for s in p["scenes"]]
    t = time.perf_counter()
    for line in lines:
        subprocess.run(["espeak-ng", "--stdout", "-v", "en-us", "--", line], capture_output=True, check=True)
    return {
        "llama.cpp tok/s with the plan grammar": statistics.median(rates["grammar"]),
        "llama.cpp tok/s free text": statistics.median(rates["free"]),
        "espeak-ng CLI s per 4 lines": (time.perf_counter() - t) / len(lines) * 4,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from gradio_client import Client

    rounds = []
    with running_app({"AIGC_IMAGE_COMPILE": "now"}, start_timeout_s=900) as url:
        client = Client(url, verbose=False)
        for i in range(args.rounds + 1):
            r = story_round(client, IDEAS[i % len(IDEAS)], seed=i + 1)
            print(
                f"round {i}{' (warm-up)' if i == 0 else ''}: client wait {r['client wait']:.1f} s", flush=True
            )
            if i:
                rounds.append(r)
    keys = [k for k in rounds[0] if not k.startswith("_")]
    print(f"\n{'stage (median of ' + str(len(rounds)) + ')':<32} seconds")
    for k in keys:
        print(f"{k:<32} {statistics.median(r[k] for r in rounds):7.2f}")
    plain = plain_engines([r["_plan"] for r in rounds])
    print()
    for k, v in plain.items():
        print(f"{k:<40} {v:7.2f}")
    ratio = plain["llama.cpp tok/s with the plan grammar"] / plain["llama.cpp tok/s free text"]
    print(f"{'grammar / free decoding speed':<40} {ratio:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
