"""Where the app listens: AIGC_HOST/AIGC_PORT when set, else Gradio's own variables (as a Space sets them)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aigc_demo.config import AppConfig

ROOT = Path(__file__).resolve().parent.parent
# Every model missing: each tab shows its load failure, and the app starts in seconds.
NO_MODELS = {
    "AIGC_TEXT_MODEL": "/nonexistent/model.gguf",
    "AIGC_IMAGE_MODEL": "/nonexistent/ldm",
    "AIGC_IMAGE_GAN": "",
    "AIGC_LATENT_MODEL": "/nonexistent/vae",
    "GRADIO_ANALYTICS_ENABLED": "False",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> set[str]:
    """IPv4 addresses with a listening TCP socket on ``port`` (from /proc/net/tcp: state 0A is LISTEN)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def _start(env: dict, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env={**os.environ, **NO_MODELS, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not _listening(port):
        if proc.poll() is not None:
            raise AssertionError(f"app.py exited:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.3)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_config_leaves_host_and_port_to_gradio_unless_set():
    assert AppConfig.from_env({}).server.host is None and AppConfig.from_env({}).server.port is None
    cfg = AppConfig.from_env({"AIGC_HOST": "0.0.0.0", "AIGC_PORT": "7000"})
    assert (cfg.server.host, cfg.server.port) == ("0.0.0.0", 7000)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_a_space_binds_every_interface_and_our_variables_win():
    port = _free_port()
    proc = _start({"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": str(port)}, port)
    try:
        assert _listening(port) == {"0.0.0.0"}, "GRADIO_SERVER_NAME=0.0.0.0 (as a Space sets it) was ignored"
    finally:
        _stop(proc)
    port = _free_port()
    proc = _start({"GRADIO_SERVER_NAME": "0.0.0.0", "AIGC_HOST": "127.0.0.1", "AIGC_PORT": str(port)}, port)
    try:
        assert _listening(port) == {"127.0.0.1"}
    finally:
        _stop(proc)


def test_a_model_that_fails_to_load_disables_only_its_tab(start_app, tmp_path):
    """A broken exploration VAE (its weights file is not safetensors): the Latent tab says what failed and how to
    fix it, and loses its endpoints; chat and pictures are served."""
    import json
    import urllib.request

    from gradio_client import Client

    broken = tmp_path / "vae"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"_class_name": "EmojiVAE", "latent_dim": 32}))
    (broken / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 64)
    with start_app(AIGC_LATENT_MODEL=str(broken), AIGC_SERVER_WARMUP="false") as url:
        client = Client(url, verbose=False)
        names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
        assert {"/chat", "/image_generate"} <= names
        assert not {n for n in names if n.startswith("/latent_")}, "the broken tab offers nothing"
        reply = client.predict("Say hi.", max_new_tokens=4, temperature=0.0, api_name="/chat")
        assert reply["new_tokens"] >= 1
        _, info = client.predict("red apple", num_inference_steps=2, seed=1, api_name="/image_generate")
        assert info["seed"] == 1
        page = urllib.request.urlopen(url + "config", timeout=30).read().decode()
        assert "Unable to load weights from checkpoint file" in page, "the error is shown"
        assert "weights/vae-emoji" in page, "and how to fix it"
