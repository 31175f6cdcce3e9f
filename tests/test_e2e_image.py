"""End to end on the Image tab's API: the real committed diffusion model and GAN, through gradio_client."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image, PngImagePlugin

from aigc_demo.config import ImageConfig


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def generate(client, prompt="red heart, in Twemoji style", **kw):
    args = dict(
        prompt=prompt,
        negative_prompt="",
        num_inference_steps=8,
        guidance_scale=5.0,
        scheduler="DPM++ 2M",
        seed=0,
        batch_size=1,
        width=0,
        height=0,
        generator="diffusion",
    )
    args.update(kw)
    return client.predict(*args.values(), api_name="/image_generate")


def pixels(files):
    return np.stack(
        [np.asarray(Image.open(f["path"] if isinstance(f, dict) else f).convert("RGB")) for f in files]
    )


def test_generate_is_seeded_and_png_carries_parameters(client):
    files, info = generate(client, seed=11, batch_size=2)
    again, _ = generate(client, seed=11, batch_size=2)
    assert len(files) == 2 and info["seed"] == 11
    assert [p["seed"] for p in info["parameters"]] == [11, 12]
    assert np.array_equal(pixels(files), pixels(again))
    img = pixels(files)[0]
    assert img.shape == (64, 64, 3) and img.std() > 5, "a non-degenerate image"
    back = client.predict(
        handle_file(files[0] if isinstance(files[0], str) else files[0]["path"]),
        api_name="/image_read_parameters",
    )
    assert (
        back["prompt"] == "red heart, in Twemoji style"
        and back["seed"] == 11
        and back["num_inference_steps"] == 8
    )


def test_scheduler_switch_and_random_seed(client):
    _, a = generate(client, seed=-1, scheduler="Euler a")
    assert 0 <= a["seed"] < 2**32
    files_ddim, _ = generate(client, seed=3, scheduler="DDIM")
    files_unipc, _ = generate(client, seed=3, scheduler="UniPC")
    assert pixels(files_ddim).shape == pixels(files_unipc).shape


def test_gan_is_one_step_and_steerable(client):
    files, info = generate(client, generator="gan", seed=5)
    assert info["parameters"][0]["generator"] == "gan" and pixels(files).shape == (1, 64, 64, 3)
    moved, params = client.predict("red heart", 5, [2.0, -2.0, 1.0], api_name="/image_gan")
    assert params["seed"] == 5
    assert not np.array_equal(pixels([moved])[0], pixels(files)[0])


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"prompt": ""}, "empty"),
        ({"prompt": "x" * 100_000}, "limit"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_inference_steps": 10**6}, "num_inference_steps"),
        ({"guidance_scale": "nan"}, "guidance_scale"),
        ({"batch_size": 10**4}, "batch_size"),
        ({"seed": "abc"}, "seed"),
        ({"width": 1000}, "width"),
        ({"scheduler": "PLMS-9000"}, "scheduler must be one of"),
        ({"generator": "dall-e"}, "generator"),
    ],
)
def test_bad_input_gets_a_clear_message(client, kwargs, words):
    with pytest.raises(Exception, match=words):
        generate(client, **kwargs)


def test_a_prompt_alone_is_a_whole_request(client):
    """Every argument but the prompt has the schema's default (the API page lists them)."""
    files, info = client.predict("red heart, in Twemoji style", api_name="/image_generate")
    params = info["parameters"][0]
    assert len(files) == 1 and params["num_inference_steps"] == 20 and params["scheduler"] == "DPM++ 2M"
    assert params["generator"] == "diffusion" and params["width"] == 64
    endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/image_generate"]
    listed = {p["parameter_name"]: p for p in endpoint["parameters"]}
    assert not listed["prompt"]["parameter_has_default"]
    assert all(p["parameter_has_default"] for name, p in listed.items() if name != "prompt")
    assert listed["guidance_scale"]["parameter_default"] == 5.0


def test_reading_parameters_of_nothing_is_a_clear_message(client):
    with pytest.raises(Exception, match="no file was given"):
        client.predict(None, api_name="/image_read_parameters")


def test_hostile_png_metadata_and_non_images(client, tmp_path):
    hostile = tmp_path / "hostile.png"
    info = PngImagePlugin.PngInfo()
    info.add_text(
        "aigc_studio", json.dumps({"prompt": {"$gt": 1}, "seed": "DROP TABLE", "num_inference_steps": 1e308})
    )
    Image.new("RGB", (4, 4)).save(hostile, pnginfo=info)
    assert client.predict(handle_file(str(hostile)), api_name="/image_read_parameters") == {}
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG but not really" * 100)
    with pytest.raises(Exception, match="not a readable PNG"):
        client.predict(handle_file(str(junk)), api_name="/image_read_parameters")


def test_long_prompt_is_truncated_with_a_warning_and_server_carries_on(client):
    _, info = generate(client, prompt="a very long prompt about a red heart " * 12)
    assert any("tokens" in w for w in info["warnings"])
    files, _ = generate(client, seed=1)
    assert len(files) == 1


def test_interrupt_through_the_api_keeps_the_partial_image(client):
    import time

    args = ["red heart", "", 100, 5.0, "DPM++ 2M", 2, 1, 0, 0, "diffusion"]
    job = client.submit(*args, api_name="/image_generate")
    time.sleep(2.0)  # let it start denoising
    t0 = time.perf_counter()
    client.predict(api_name="/image_interrupt")
    files, info = job.result(timeout=60)
    assert info["interrupted"] is True and len(files) == 1
    assert time.perf_counter() - t0 < 10, "stops within a step, not after 100"
    # The worker is free again at once.
    files, info = generate(client, seed=2, num_inference_steps=4)
    assert info["interrupted"] is False


def test_live_is_the_students_seeded_picture_of_the_words(client):
    heart, info = client.predict("red heart, in Twemoji style", 3, api_name="/image_live")
    again, _ = client.predict("red heart, in Twemoji style", 3, api_name="/image_live")
    live_steps = ImageConfig().live_steps
    assert (info["generator"], info["num_inference_steps"], info["seed"]) == ("student", live_steps, 3)
    assert np.array_equal(pixels([heart]), pixels([again]))
    ink = pixels([heart])[0].reshape(-1, 3).astype(int)
    ink = ink[ink.sum(axis=1) < 600]  # the drawing, not the white ground
    assert len(ink) > 200 and ink[:, 0].mean() > ink[:, 1].mean() + 40, "a red heart is drawn in red"
    big, info = client.predict("red heart", 3, True, api_name="/image_live")
    assert pixels([big]).shape == (1, 256, 256, 3) and not info["warnings"]
    with pytest.raises(Exception, match="prompt is empty"):
        client.predict("", 3, api_name="/image_live")


def _abandoned_after(since: int, timeout_s: float = 30) -> tuple[int, int] | None:
    """The step at which the app logged an image request abandoned by its caller, after log offset ``since``."""
    import re
    import time

    from conftest import APP_LOG

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        found = re.search(
            r"abandoned by its caller after step (\d+) of (\d+)", APP_LOG[-1].read_text()[since:]
        )
        if found:
            return int(found[1]), int(found[2])
        time.sleep(0.2)
    return None


LONG_JOB = ["red heart", "", 100, 5.0, "DPM++ 2M", 5, 8, 0, 0, "diffusion"]  # batch 8, 100 steps: a minute


def test_a_cancelled_image_job_stops_computing_within_a_step(client):
    """job.cancel() ends the denoising loop on the server, not only the client's wait."""
    import time

    from conftest import APP_LOG

    since = len(APP_LOG[-1].read_text())
    job = client.submit(*LONG_JOB, api_name="/image_generate")
    deadline = time.time() + 60
    while not job.outputs() and time.time() < deadline:
        time.sleep(0.05)
    files, progress = job.outputs()[-1]
    assert files == [] and progress["steps"] == 100, "the API streams each step's progress"
    job.cancel()
    stopped = _abandoned_after(since)
    assert stopped is not None, "the cancelled job kept denoising"
    assert stopped[0] <= progress["step"] + 3 and stopped[1] == 100
    assert generate(client, seed=2, num_inference_steps=4)[1]["interrupted"] is False


def test_a_client_that_leaves_mid_image_frees_the_compute(client, app_url):
    import subprocess
    import sys

    from conftest import APP_LOG

    since = len(APP_LOG[-1].read_text())
    script = (
        "import os, time\n"
        "from gradio_client import Client\n"
        f"c = Client({app_url!r}, verbose=False)\n"
        f"job = c.submit(*{LONG_JOB!r}, api_name='/image_generate')\n"
        "deadline = time.time() + 60\n"
        "while not job.outputs() and time.time() < deadline: time.sleep(0.05)\n"
        "os._exit(0 if job.outputs() else 3)\n"
    )
    assert subprocess.run([sys.executable, "-c", script], timeout=120).returncode == 0
    stopped = _abandoned_after(since)
    assert stopped is not None and stopped[0] < 50, "the abandoned job kept denoising"


def test_a_file_argument_must_be_a_file_sent_with_the_request(app_url):
    """A client names files it uploaded, never a path on the server (plain REST: gradio_client would upload a
    local file it is given, and here the client's files are the server's)."""
    import httpx

    call = app_url + "gradio_api/call/image_read_parameters"

    def answer(value) -> str:
        event = httpx.post(call, json={"data": [value]}).json()["event_id"]
        return httpx.get(f"{call}/{event}", timeout=30).text

    for path in ("/etc/passwd", "/tmp/gradio/../../etc/hostname"):
        # A FileData naming a server file: Gradio refuses to take it in; a plain path string: the app refuses.
        assert "was not uploaded by a user" in answer({"path": path, "meta": {"_type": "gradio.FileData"}})
        refused = answer(path)
        assert "event: error" in refused and "must be a file sent with the request" in refused, refused


def test_clients_drawing_at_once_get_what_each_gets_alone(app_url):
    """Requests served at once share UNet calls (their own lane): each picture as if drawn alone."""
    from concurrent.futures import ThreadPoolExecutor

    requests = [
        {"prompt": "red heart, in Twemoji style", "seed": 11},
        {"prompt": "cat face, in OpenMoji style", "seed": 12, "scheduler": "Euler a"},
        {"prompt": "rocket, in Noto Color Emoji style", "seed": 13, "num_inference_steps": 6},
    ]
    clients = [Client(app_url, verbose=False) for _ in requests]
    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(lambda pair: generate(pair[0], **pair[1]), zip(clients, requests)))
    for (files, info), request in zip(together, requests, strict=True):
        alone, _ = generate(clients[0], **request)
        assert info["parameters"][0]["seed"] == request["seed"]
        assert np.abs(pixels(files).astype(int) - pixels(alone).astype(int)).max() <= 2
