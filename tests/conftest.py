"""Shared fixtures. Everything here is offline and CPU-only; tiny models are built from configs."""

from __future__ import annotations

import functools
import os

import pytest

# Tests must never reach a model hub, and two cores are all there is.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! How are you today? I am fine, thank you.",
    "Language models predict the next token from the previous ones.",
    "Once upon a time there was a small robot who loved the sea.",
    "中文也可以：你好，世界。生成模型。",
] * 20


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A randomly initialised 2-layer Llama with a real byte-level BPE tokenizer, saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(CORPUS, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML
    tok.save_pretrained(folder)

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder, safe_serialization=True)
    return folder


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


APP_LOG: list = []  # the running app's log file, shown under any failing test that drove the app


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.failed and APP_LOG and "app_url" in getattr(item, "fixturenames", ()):
        report.sections.append(("app.py log (last 4,000 characters)", APP_LOG[-1].read_text()[-4000:]))


@pytest.fixture(scope="session")
def start_app(tmp_path_factory):
    """``with start_app(**env) as url``: `python app.py` as a user would, on a free port, with ``env`` on top of
    the tests' own settings (a test module's ``app_url`` that serves another configuration)."""
    import contextlib

    return contextlib.contextmanager(functools.partial(_running_app, tmp_path_factory))


@pytest.fixture(scope="session")
def app_url(start_app):
    """Start `python app.py` as a user would (default embedded models), on a free port."""
    with start_app() as url:
        yield url


def _running_app(tmp_path_factory, **overrides: str):
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    port = _free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    APP_LOG.append(log_path)
    # No background UNet compile: it would take a core for a minute and change images between two calls.
    env = {
        **os.environ,
        "AIGC_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "AIGC_IMAGE_COMPILE": "off",
        "AIGC_TUNE_ADAPTERS_DIR": str(tmp_path_factory.mktemp("adapters")),
        **overrides,
    }
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited early:\n{log_path.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError(f"app.py did not start:\n{log_path.read_text()[-3000:]}")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        APP_LOG.remove(log_path)  # failures after this are another app's


@pytest.fixture(scope="session")
def artifacts_dir():
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "test-artifacts"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def tab_screenshot(artifacts_dir):
    """Save a page as a tab's screenshot: in test-artifacts/, and with AIGC_UPDATE_SCREENSHOTS=1 also as the
    README's picture in docs/screenshots/ (how those are refreshed)."""
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs" / "screenshots"

    def save(page, name: str) -> None:
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(artifacts_dir / f"tab-{name}.png"), full_page=False)
        if os.environ.get("AIGC_UPDATE_SCREENSHOTS") == "1":
            docs.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(docs / f"{name}.png"), full_page=False)

    return save


# -- a tiny random Stable Diffusion pipeline (the hub-folder path) and a tiny GAN ------------------------
WORDS = (
    "a an the red blue green apple heart face cat dog happy sad star in style emoji openmoji twemoji".split()
)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    """A randomly initialised SD pipeline (UNet, AutoencoderKL, BERT text encoder) saved like a hub model."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-sd")
    vocab = folder / "vocab.txt"
    vocab.write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz"])
    )
    tokenizer = BertTokenizer(str(vocab), model_max_length=8)
    torch.manual_seed(0)
    text_encoder = BertModel(
        BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
        ),
        add_pooling_layer=False,
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=16,
    )
    scheduler = DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction"
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out = folder / "pipe"
    pipe.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def tiny_student_dir(tiny_sd_dir, tmp_path_factory):
    """The tiny pipeline as a few-step student ships: the same folder with an LCMScheduler."""
    from diffusers import LCMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, safety_checker=None)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    out = tmp_path_factory.mktemp("tiny-lcm") / "pipe"
    pipe.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def tiny_image_config(tiny_sd_dir):
    """ImageConfig(**overrides) for the tiny pipeline: fp32, one thread, no compile, no other model."""
    from aigc_demo.config import ImageConfig

    def make(**overrides) -> ImageConfig:
        base = dict(model=str(tiny_sd_dir), student="", gan="", dtype="float32", threads=1, compile="off")
        return ImageConfig(**{**base, **overrides})

    return make


@pytest.fixture(scope="session")
def tiny_pipe(tiny_image_config):
    from aigc_demo.pipelines.image import ImagePipeline

    return ImagePipeline.from_config(tiny_image_config(max_batch_size=4))


@pytest.fixture(scope="session")
def tiny_gan_pipe(tiny_sd_dir, tiny_student_dir, tiny_image_config, tmp_path_factory):
    """The tiny SD pipeline, its copy as a few-step student, and a random GAN conditioned on the tiny BERT's
    sentence embedding: every generator the app serves."""
    import dataclasses

    import torch
    from transformers import BertModel, BertTokenizer

    from aigc_demo.models import GANGenerator, PromptMatch, save_fp16
    from aigc_demo.pipelines.gan import GanGenerator
    from aigc_demo.pipelines.image import ImagePipeline
    from aigc_demo.pipelines.scoring import PromptScorer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-gan")
    save_fp16(GANGenerator(z_dim=8, text_dim=32, cond_dim=8, width=8), folder)
    encoder = (
        BertTokenizer.from_pretrained(tiny_sd_dir / "tokenizer"),
        BertModel.from_pretrained(tiny_sd_dir / "text_encoder"),
    )
    cfg = tiny_image_config(student=str(tiny_student_dir), gan=str(folder), max_batch_size=4)
    base = ImagePipeline.from_config(dataclasses.replace(cfg, gan=""))
    scorer = PromptScorer(PromptMatch(text_dim=32, channels=(8, 8, 8, 8)).eval(), encoder)
    gan = GanGenerator(GANGenerator.from_pretrained(folder), encoder, str(folder))
    return ImagePipeline([base.diffusion, base.student, gan], cfg, scorer)


def pytest_collection_modifyitems(config, items):
    """Everything that starts the app, drives a browser or loads the real default models is slow: the fast
    profile (``pytest -m "not slow"``) is the unit tests on tiny models."""
    for item in items:
        heavy = "app_url" in getattr(item, "fixturenames", ()) or any(
            item.get_closest_marker(name) for name in ("real_model", "browser")
        )
        if heavy:
            item.add_marker(pytest.mark.slow)
