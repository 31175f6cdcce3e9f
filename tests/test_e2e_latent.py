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


def test_samples_are_reproducible_by_seed(client):
    a = client.predict(4, 123, 1.0, "corpus", api_name="/latent_sample")
    b = client.predict(4, 123, 1.0, "corpus", api_name="/latent_sample")
    pixels = [[np.asarray(Image.open(item["image"])) for item in run[0]] for run in (a, b)]
    assert len(pixels[0]) == 4 and all(np.array_equal(x, y) for x, y in zip(*pixels))
    assert "123" in a[1]


def test_server_still_serves_text_after_bad_images(client):
    assert (
        client.predict("Hi", api_name="/chat", max_new_tokens=4, temperature=0.0, seed=0)["new_tokens"] >= 1
    )
