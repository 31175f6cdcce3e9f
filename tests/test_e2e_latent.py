"""End to end on the Latent tab's API: real VAE, real uploads, hostile uploads."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny file whose PNG header claims a huge image (a decompression bomb's first bytes)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return handle_file(str(path))


def _image_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_reconstruct_a_real_upload(client, tmp_path):
    img = Image.new("RGB", (200, 160), "white")
    img.paste((230, 40, 40), (50, 30, 150, 130))  # a red square, roughly emoji-like
    image, info = client.predict(
        _write(tmp_path, "red.png", _image_bytes(img, "PNG")), api_name="/latent_reconstruct"
    )
    assert info["psnr_db"] > 10 and len(info["latent"]) > 0
    with Image.open(image) as out:
        assert out.size[0] >= 64
        assert out.format == "PNG"  # lossless: Gradio's default (webp) would blur the pixels


@pytest.mark.parametrize(
    "mode",
    ["L", "RGBA", "CMYK", "P", "I;16"],
)
def test_unusual_modes_are_converted(client, tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    img = rgb.convert(mode) if mode != "I;16" else rgb.convert("L").convert("I;16")
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    _, info = client.predict(
        _write(tmp_path, f"x.{fmt.lower()}", _image_bytes(img, fmt)), api_name="/latent_reconstruct"
    )
    assert np.isfinite(info["psnr_db"])


def test_animated_gif_uses_its_first_frame(client, tmp_path):
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "blue", "green")]
    data = _image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    _, info = client.predict(_write(tmp_path, "anim.gif", data), api_name="/latent_reconstruct")
    assert np.isfinite(info["psnr_db"])


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("bomb.png", _png_claiming(20000, 20000), "too large"),
        ("tiny.png", _image_bytes(Image.new("RGB", (1, 1)), "PNG"), "too small"),
        (
            "corrupt.png",
            b"\x89PNG\r\n\x1a\n" + bytes(np.random.default_rng(1).integers(0, 255, 500, dtype=np.uint8)),
            "image",
        ),
        ("notes.txt", b"this is not an image at all", "image"),
    ],
)
def test_hostile_uploads_get_a_clear_message(client, tmp_path, name, data, words):
    with pytest.raises(Exception, match=words):
        client.predict(_write(tmp_path, name, data), api_name="/latent_reconstruct")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(row=0, coefficients=[99.0]), "coefficient|range|between|-3"),
        (dict(row=10**9, coefficients=[0.0]), "row"),
        (dict(row="abc", coefficients=[0.0]), "row|number"),
        (dict(row=0, coefficients="up"), "coefficients"),
    ],
)
def test_out_of_range_steering_is_refused(client, kwargs, words):
    with pytest.raises(Exception, match=words):
        client.predict(api_name="/latent_steer", **kwargs)


def test_steering_changes_the_image(client):
    a = np.asarray(Image.open(client.predict(0, [0.0], api_name="/latent_steer")))
    b = np.asarray(Image.open(client.predict(0, [2.5], api_name="/latent_steer")))
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 1


def test_sample_limits(client):
    with pytest.raises(Exception, match="n|between|range"):
        client.predict(10**6, -1, 1.0, "corpus", api_name="/latent_sample")


def _pixels(paths) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in paths]


def test_samples_are_reproducible_by_seed(client):
    a = client.predict(4, 123, 1.0, "posterior", api_name="/latent_sample")
    b = client.predict(n=4, seed=123, api_name="/latent_sample")  # the rest are the defaults
    pixels = [_pixels(run[0]) for run in (a, b)]
    assert len(pixels[0]) == 4 and all(np.array_equal(x, y) for x, y in zip(*pixels, strict=True))
    assert a[1] == {"seed": 123, "n": 4, "temperature": 1.0, "source": "posterior"}


def test_sample_source_is_honoured(client):
    corpus = _pixels(client.predict(n=2, seed=7, source="corpus", api_name="/latent_sample")[0])
    prior = _pixels(client.predict(n=2, seed=7, source="prior", api_name="/latent_sample")[0])
    assert not all(np.array_equal(x, y) for x, y in zip(corpus, prior, strict=True))


def test_random_seeds_differ(client):
    seeds = {client.predict(n=1, api_name="/latent_sample")[1]["seed"] for _ in range(2)}
    assert len(seeds) == 2


def test_interpolate_with_defaults_and_an_upload(client, tmp_path):
    strip, gif, mp4 = client.predict(api_name="/latent_interpolate")
    with Image.open(strip) as im:
        assert im.format == "PNG" and im.width == 10 * im.height  # 10 steps by default
    with Image.open(gif) as im:
        assert im.n_frames == 10 + 8  # forth and back
    assert mp4.endswith(".mp4")
    img = Image.new("RGB", (64, 64), "white")
    img.paste((40, 90, 230), (16, 16, 48, 48))
    upload = _write(tmp_path, "blue.png", _image_bytes(img, "PNG"))
    strip2, _, _ = client.predict(a_image=upload, steps=3, method="lerp", api_name="/latent_interpolate")
    with Image.open(strip2) as im:
        assert im.width == 3 * im.height


def test_attribute_and_search(client):
    image, note = client.predict(api_name="/latent_attribute")
    assert "smiling" in note and "neutral" in note
    with Image.open(image) as im:
        assert im.format == "PNG"
    items = client.predict("cat", api_name="/latent_search")
    assert items and all({"row", "char", "name", "caption", "style"} <= set(i) for i in items)


def test_latent_endpoints_are_listed_with_defaults(client):
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    sample = {p["parameter_name"]: p["parameter_default"] for p in named["/latent_sample"]["parameters"]}
    assert sample == {"n": 16, "seed": -1, "temperature": 1.0, "source": "posterior"}
    for name in (
        "/latent_interpolate",
        "/latent_attribute",
        "/latent_reconstruct",
        "/latent_steer",
        "/latent_search",
    ):
        assert name in named


def test_server_still_serves_text_after_bad_images(client):
    assert (
        client.predict("Hi", api_name="/chat", max_new_tokens=4, temperature=0.0, seed=0)["new_tokens"] >= 1
    )
