"""Teaching the image model a new word: the Tune tab's picture loop against a plain diffusers + peft loop, what
the tuned model draws, and what a running fine-tune costs the other tabs.

    python bench/tune_image.py [--no-plain]

The pictures are the Tune tab's example: Blip, a made-up mascot in 8 poses (aigc_demo/data/tune_examples),
taught as "my-blip" with the default settings (100 steps of 8, LoRA rank 8 on the UNet's attention). Prints:

1. a plain loop (diffusers' ``add_adapter`` LoRA, AdamW, the same objective, batch, steps and rate, no
   previews or fit evaluations) in this process: pictures/s;
2. through the running app (its UNet compiled before it answers): ``/tune_image`` wall time, the training
   pictures/s and the ratio to the plain loop, the fit loss before and after;
3. ``/tune_image_compare`` over 4 seeds: mean likeness of base and tuned pictures of "my-blip" to the training
   pictures (scorer cosine to the nearest) and mean prompt match;
4. ``/image_generate`` (20 steps) and ``/chat`` speed idle and while a ``/tune_image`` run trains.

Idle machine only: every part is timed on its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aigc_demo.data.tune_examples import MASCOT_WORD, mascot_pictures  # noqa: E402

SEEDS = (0, 1, 2, 3)


def plain_loop_pictures_per_s(steps: int = 60, batch: int = 8, rank: int = 8, lr: float = 1e-3) -> float:
    """diffusers + peft as its LoRA training scripts do it, on the same pictures and objective."""
    import numpy as np
    import torch
    from diffusers import DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from PIL import Image

    from aigc_demo.config import ImageConfig
    from aigc_demo.device import configure_threads
    from aigc_demo.models import load_text_encoder
    from aigc_demo.pipelines.tune_image import ATTENTION

    cfg = ImageConfig()
    configure_threads(cfg.threads)
    tokenizer, encoder = load_text_encoder(cfg.text_encoder)
    sd = StableDiffusionPipeline.from_pretrained(
        cfg.model,
        tokenizer=tokenizer,
        text_encoder=encoder,
        safety_checker=None,
        requires_safety_checker=False,
    )
    unet = UNet2DConditionModel.from_pretrained(cfg.model, subfolder="unet").requires_grad_(False)
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(ATTENTION))
    )
    params = [p for p in unet.parameters() if p.requires_grad]
    pictures = [np.asarray(Image.open(p).convert("RGB")) for p in mascot_pictures()]
    x = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        latents = sd.vae.encode(torch.cat([x, x.flip(-1)])).latent_dist.mean * sd.vae.config.scaling_factor
        states = sd.encode_prompt(MASCOT_WORD, "cpu", 1, False)[0]
    schedule = DDPMScheduler.from_config(sd.scheduler.config)
    acp = schedule.alphas_cumprod
    weights = torch.clamp(acp / (1 - acp), max=5.0) / (acp / (1 - acp) + 1)
    optimizer = torch.optim.AdamW(params, lr=lr)
    g = torch.Generator().manual_seed(0)
    unet.train()
    for step in range(steps + 5):
        if step == 5:  # the first steps set up kernels
            t0 = time.perf_counter()
        rows = torch.randint(0, len(latents), (batch,), generator=g)
        x0, t = latents[rows], torch.randint(0, 1000, (batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        out = unet(
            schedule.add_noise(x0, noise, t), t, encoder_hidden_states=states.expand(batch, -1, -1)
        ).sample
        per_item = torch.nn.functional.mse_loss(out, schedule.get_velocity(x0, noise, t), reduction="none")
        loss = (per_item.mean((1, 2, 3)) * weights[t]).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    return steps * batch / (time.perf_counter() - t0)


def through_app(plain: float | None) -> None:
    from gradio_client import Client, handle_file
    from running_app import running_app

    with (
        tempfile.TemporaryDirectory() as adapters,
        running_app(
            {"AIGC_TUNE_ADAPTERS_DIR": adapters, "AIGC_IMAGE_COMPILE": "now"}, start_timeout_s=600
        ) as url,
    ):
        client = Client(url, verbose=False)
        pictures = [handle_file(p) for p in mascot_pictures()]
        t0 = time.perf_counter()
        events = list(client.submit(MASCOT_WORD, pictures, "blip", api_name="/tune_image"))
        wall = time.perf_counter() - t0
        result = events[-1]
        steps = [e for e in events if "step" in e]
        rate = steps[-1]["step"] * 8 / result["train_seconds"]
        ratio = f", {rate / plain:.2f}x the plain loop" if plain else ""
        print(
            f"app /tune_image: {wall:.1f} s wall, {result['train_seconds']:.1f} s training ({result['steps']} steps, "
            f"previews and fit evaluations included), {rate:.1f} pictures/s{ratio}; fit loss "
            f"{result['fit_loss_before']:.4f} -> {result['fit_loss_after']:.4f}"
        )
        base_like, tuned_like, base_match, tuned_match = [], [], [], []
        for seed in SEEDS:
            c = client.predict("blip", [MASCOT_WORD], seed, api_name="/tune_image_compare")
            base_like.append(c["base"][0]["likeness"]["similarity"])
            tuned_like.append(c["tuned"][0]["likeness"]["similarity"])
            base_match.append(c["base"][0]["prompt_match"])
            tuned_match.append(c["tuned"][0]["prompt_match"])
        print(
            f"'{MASCOT_WORD}' over seeds {SEEDS}: likeness to the pictures base {statistics.mean(base_like):.3f}, "
            f"tuned {statistics.mean(tuned_like):.3f}; prompt match base {statistics.mean(base_match):.3f}, "
            f"tuned {statistics.mean(tuned_match):.3f}"
        )

        def image_seconds() -> float:
            _, info = client.predict("red apple", seed=1, num_inference_steps=20, api_name="/image_generate")
            return info["seconds"]

        def chat_speed() -> float:
            out = client.predict(
                "Write about the sea.", max_new_tokens=96, temperature=0, seed=0, api_name="/chat"
            )
            return out["tokens_per_s"]

        image_seconds(), chat_speed()  # warm
        idle_image = statistics.median(image_seconds() for _ in range(3))
        idle_chat = statistics.median(chat_speed() for _ in range(3))
        done = threading.Event()

        def tune() -> None:
            Client(url, verbose=False).predict(MASCOT_WORD, pictures, "busy", api_name="/tune_image")
            done.set()

        threading.Thread(target=tune, daemon=True).start()
        time.sleep(8)  # into the training steps
        busy_image, busy_chat = [], []
        while not done.is_set() and len(busy_chat) < 3:
            busy_image.append(image_seconds())
            busy_chat.append(chat_speed())
        print(
            f"while /tune_image trains: a 20-step image {idle_image:.2f} s idle -> "
            f"{statistics.median(busy_image):.2f} s; /chat {idle_chat:.0f} -> {statistics.median(busy_chat):.0f} "
            f"tokens/s ({statistics.median(busy_chat) / idle_chat:.2f}x)"
        )
        done.wait(600)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-plain", action="store_true", help="skip the plain diffusers + peft loop")
    args = ap.parse_args()
    from aigc_demo.training.common import machine_class

    print(f"{machine_class()}, {time.strftime('%Y-%m-%d')}")
    plain = None
    if not args.no_plain:
        plain = plain_loop_pictures_per_s()
        print(f"plain diffusers + peft loop: {plain:.1f} pictures/s")
    through_app(plain)
    return 0


if __name__ == "__main__":
    sys.exit(main())
