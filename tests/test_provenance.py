"""Content Credentials: sign, verify, and every way a file can fail to prove where it came from."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from aigc_demo.config import ProvenanceConfig
from aigc_demo.media import write_mp4
from aigc_demo.pipelines.verify import VerifyPipeline
from aigc_demo.provenance.content_credentials import ContentCredentials
from aigc_demo.provenance.credentials import load_credentials
from aigc_demo.provenance.parameters import read_parameters, save_png

PARAMS = {"prompt": "red heart", "seed": 7, "num_inference_steps": 4, "generator": "student", "model": "m"}


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    return ContentCredentials.from_config(ProvenanceConfig(credentials_dir=tmp_path_factory.mktemp("ours")))


@pytest.fixture(scope="module")
def verify(ours):
    return VerifyPipeline(ProvenanceConfig(max_file_bytes=2**20), ours)


def signed_png(ours, folder, params=PARAMS, size=64):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8))
    path = save_png(image, params, folder)  # text chunks; signed below with this test's own chain
    ours.sign(path, params)
    return path


def test_sign_then_verify_is_valid_with_the_signed_parameters(ours, verify, tmp_path):
    result = verify.inspect(signed_png(ours, tmp_path))
    v = result.verdict
    assert v.state == "valid" and "demo certificate" in v.message and "not a publicly trusted" in v.message
    assert v.generation == PARAMS and result.parameters_source == "signed manifest"
    created = v.actions[0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"].endswith("/trainedAlgorithmicMedia")
    assert v.signer == "AIGC Studio Demo Signer" and not v.failures


def set_one_pixel_byte(path):
    """Flip one byte of the compressed pixel data (IDAT) and fix the chunk's CRC: a valid PNG, one change."""
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 + length // 2] ^= 0x01
    data[at + 4 + length : at + 8 + length] = struct.pack(">I", zlib.crc32(data[at : at + 4 + length]))
    path.write_bytes(bytes(data))


def test_a_changed_pixel_byte_is_tampering(ours, verify, tmp_path):
    path = signed_png(ours, tmp_path)
    set_one_pixel_byte(path)
    result = verify.inspect(path)
    assert result.verdict.state == "tampered" and "assertion.dataHash.mismatch" in result.verdict.failures
    assert result.parameters_source == "PNG text (unsigned)", (
        "a tampered manifest's parameters are not shown as signed"
    )


def test_a_resaved_copy_has_no_manifest(ours, verify, tmp_path):
    path = signed_png(ours, tmp_path)
    Image.open(path).save(tmp_path / "resaved.png")
    result = verify.inspect(tmp_path / "resaved.png")
    assert result.verdict.state == "absent" and result.parameters is None


def test_an_unsigned_picture_has_no_manifest_but_its_text_is_read(verify, tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (64, 64), "white").save(plain)
    assert verify.inspect(plain).verdict.state == "absent"
    unsigned = save_png(Image.new("RGB", (8, 8)), PARAMS, tmp_path / "unsigned")  # signing is the process's
    text_only = tmp_path / "text-only.png"
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("aigc_studio", Image.open(unsigned).text["aigc_studio"])
    Image.new("RGB", (8, 8)).save(text_only, pnginfo=info)
    result = verify.inspect(text_only)
    assert result.verdict.state == "absent" and result.parameters_source == "PNG text (unsigned)"
    assert result.parameters == read_parameters(text_only)


def test_another_signer_is_untrusted(verify, tmp_path):
    theirs = ContentCredentials.from_config(ProvenanceConfig(credentials_dir=tmp_path / "theirs"))
    result = verify.inspect(signed_png(theirs, tmp_path))
    assert result.verdict.state == "untrusted" and result.verdict.failures == ["signingCredential.untrusted"]


def test_a_configured_signer_is_trusted_through_its_root(tmp_path):
    made = ContentCredentials.from_config(
        ProvenanceConfig(credentials_dir=tmp_path / "made")
    )  # a chain on disk
    folder = tmp_path / "made"
    cfg = ProvenanceConfig(key=str(folder / "signer-key.pem"), chain=(folder / "chain.pem").read_text())
    configured = ContentCredentials.from_config(cfg)
    assert not configured.credentials.demo and made.credentials.demo
    v = configured.verify(signed_png(configured, tmp_path))
    assert v.state == "valid" and "a signer this instance trusts" in v.message
    with pytest.raises(ValueError, match="set together"):
        load_credentials(ProvenanceConfig(key=str(folder / "signer-key.pem")))
    with pytest.raises(ValueError, match="neither PEM text nor a file"):
        load_credentials(ProvenanceConfig(key="/nowhere", chain="/nowhere"))


def test_a_film_lists_its_pictures_as_ingredients(ours, verify, tmp_path):
    panels = [signed_png(ours, tmp_path / f"p{i}", {**PARAMS, "seed": i}) for i in range(2)]
    film = tmp_path / "film.mp4"
    frames = [Image.new("RGB", (64, 64), (20 * i, 0, 0)) for i in range(12)]
    write_mp4(film, frames, fps=12)
    ours.sign(film, {"title": "two hearts"}, ingredients=panels)
    v = verify.inspect(film).verdict
    assert v.state == "valid" and v.ingredients == [p.name for p in panels]
    assert [a["action"] for a in v.actions] == ["c2pa.created", "c2pa.placed"]


@pytest.mark.parametrize(
    "content, name, words",
    [
        (b"", "empty.png", "the file is empty"),
        (b"x" * (2**20 + 1), "big.png", "over the 1 MB limit"),
    ],
)
def test_empty_and_huge_files_are_refused_before_reading(verify, tmp_path, content, name, words):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=words):
        verify.inspect(tmp_path / name)


def test_broken_files_are_unreadable_not_errors(ours, verify, tmp_path):
    (tmp_path / "text.png").write_bytes(b"this is not a picture at all")
    assert verify.inspect(tmp_path / "text.png").verdict.state == "unreadable"
    signed = signed_png(ours, tmp_path).read_bytes()
    (tmp_path / "truncated.png").write_bytes(signed[: len(signed) // 2])
    assert verify.inspect(tmp_path / "truncated.png").verdict.state in ("unreadable", "absent")
    with pytest.raises(ValueError, match="no file was given"):
        verify.inspect(None)


def test_a_walks_video_and_gif_carry_the_watermark_their_credentials_record(verify, tmp_path):
    """Every frame is marked; Verify reads the MP4, a re-encoded copy without credentials and the GIF."""
    import subprocess

    import imageio_ffmpeg

    from aigc_demo.media import write_animation
    from aigc_demo.provenance.parameters import MADE_HERE, new_watermark

    marker, record = new_watermark({"tab": "latent"})
    frames = [Image.new("RGB", (64, 64), (255, 255 - 20 * i, 40 * i % 255)) for i in range(6)]
    for n, frame in enumerate(frames):
        frame.paste((0, 0, 0), (8 + 4 * n, 20, 30 + 4 * n, 44))  # something that moves
    gif, mp4 = write_animation(frames, tmp_path, fps=6, display_size=256, mark=marker)
    copy = tmp_path / "reencoded.mp4"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(mp4), "-crf", "32", str(copy)], check=True)
    for path in (mp4, copy, gif):
        mark = verify.inspect(path).watermark
        assert mark is not None and mark.watermark_id == marker.watermark_id, (path.name, mark)
    assert record["watermark_id"] == f"{marker.watermark_id:06x}" and MADE_HERE[marker.watermark_id] == record
    found = verify.inspect(copy)
    assert found.verdict.state == "absent" and found.parameters == record
    assert found.parameters_source.startswith("watermark")


def test_a_video_without_pictures_is_read_without_a_watermark(verify, tmp_path):
    import subprocess

    import imageio_ffmpeg

    sound = tmp_path / "sound-only.mp4"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=1"]
    subprocess.run([*command, "-c:a", "aac", str(sound)], check=True)
    found = verify.inspect(sound)
    assert found.watermark is None and found.verdict.state in ("absent", "unreadable")


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, whole chunk bytes) of a PNG, in order."""
    chunks, at = [], 8
    while at < len(data):
        length = struct.unpack(">I", data[at : at + 4])[0]
        chunks.append((data[at + 4 : at + 8], data[at : at + 12 + length]))
        at += 12 + length
    return chunks


def test_forged_and_corrupt_manifests_are_reported_not_trusted(ours, verify, tmp_path):
    """A manifest moved onto other pixels does not vouch for them; a manifest with broken bytes is not read as
    valid; neither stops the reader."""
    signed = signed_png(ours, tmp_path / "a").read_bytes()
    manifest = next(chunk for kind, chunk in png_chunks(signed) if kind == b"caBX")
    other = tmp_path / "other.png"
    Image.new("RGB", (64, 64), "red").save(other)
    plain = png_chunks(other.read_bytes())
    forged = tmp_path / "forged.png"
    forged.write_bytes(b"\x89PNG\r\n\x1a\n" + plain[0][1] + manifest + b"".join(c for _, c in plain[1:]))
    assert verify.inspect(forged).verdict.state == "tampered"

    broken = bytearray(signed)
    at = signed.index(b"caBX") + 200  # inside the manifest store: its signature and claim bytes
    broken[at : at + 64] = bytes(64)
    (tmp_path / "corrupt.png").write_bytes(bytes(broken))
    corrupt = verify.inspect(tmp_path / "corrupt.png")
    assert corrupt.verdict.state in ("tampered", "invalid", "unreadable"), corrupt.verdict
    assert verify.inspect(signed_png(ours, tmp_path / "b")).verdict.state == "valid"  # the reader carries on


def test_every_model_has_a_card_with_its_licence_and_pictures():
    from aigc_demo.provenance.cards import DATA_CARD, card_names, read_card

    names = card_names()
    assert {"emoji-ldm", "emoji-lcm", "emoji-gan", DATA_CARD} <= set(names)
    for name in names:
        card = read_card(name)
        assert "licen" in card.markdown.lower() and "![" not in card.markdown, name
    assert read_card("emoji-lcm").pictures, "the sample grid is shown beside the card"
    with pytest.raises(ValueError, match="no card named"):
        read_card("../../etc/passwd")


def test_a_resaved_256px_copy_loses_the_manifest_but_keeps_the_watermark(ours, verify, tmp_path):
    from test_image_watermark import emoji_like

    path = save_png(emoji_like(9), PARAMS, tmp_path)
    ours.sign(path, {**PARAMS})
    signed_id = Image.open(path).info["aigc_studio"]
    assert '"watermark_id"' in signed_id
    copy = tmp_path / "copy.jpg"
    Image.open(path).convert("RGB").save(copy, quality=75)
    result = verify.inspect(copy)
    assert result.verdict.state == "absent" and result.watermark.found
    assert result.parameters_source == "watermark (made by this instance)"
    assert result.parameters["prompt"] == PARAMS["prompt"] and result.parameters["watermark_id"] in signed_id


def test_the_robustness_lab_tables_what_survives_each_copy(ours, verify, tmp_path):
    from test_image_watermark import emoji_like

    path = save_png(emoji_like(4), PARAMS, tmp_path)
    ours.sign(path, PARAMS)
    rows = {r["copy"]: r for r in verify.lab(path)}
    assert rows["the file as it is"] == {
        "copy": "the file as it is", "content_credentials": "valid",
        "watermark": rows["the file as it is"]["watermark"], "png_text_parameters": "kept",
    }  # fmt: skip
    assert len(rows) == 6 and all(
        rows[name]["watermark"].startswith("found")
        for name in ("the file as it is", "JPEG quality 75", "resized to 0.5x")
    ), rows
    assert {r["content_credentials"] for name, r in rows.items() if name != "the file as it is"} == {"absent"}
    film = tmp_path / "film.mp4"
    write_mp4(film, [Image.new("RGB", (64, 64))] * 4, fps=4)
    with pytest.raises(ValueError, match="takes pictures"):
        verify.lab(film)


@pytest.mark.real_model
def test_the_copy_check_flags_a_training_picture_and_not_a_generated_one():
    """A training picture rendered again from the Noto font (as the corpus was) is flagged, with its licence;
    the diffusion model's own picture of the same subject is not."""
    from aigc_demo.config import ImageConfig
    from aigc_demo.data.render import to_tile
    from aigc_demo.data.sources import all_sources
    from aigc_demo.pipelines.image import ImagePipeline

    noto = all_sources()[0]
    if not noto.location.is_file():
        pytest.skip("the Noto Color Emoji font is not installed")
    pipe = ImagePipeline.from_config(ImageConfig(compile="off", gan="", student="", upscaler=""))
    training = Image.fromarray(to_tile(noto.renderer(noto.location, "\u2764\ufe0f"), 64)[..., :3])
    check = pipe.copies(training)
    assert check.likely_copy and check.nearest_in_pixels.caption == "red heart, in Noto Color Emoji style"
    assert check.nearest_in_pixels.licence == "SIL OFL 1.1" and check.nearest_in_pixels.pixel_bits <= 2
    from aigc_demo.ui.shared import copies_gallery, copies_markdown

    # As text: one row per neighbour with its licence; each source's attribution once, under the table.
    text = copies_markdown(check)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "/ 192 |" in line]
    attributions = {n.attribution for n in [*check.nearest, check.nearest_in_pixels]}
    assert len(rows) == len(check.nearest) + 1 and rows[-1].endswith("| SIL OFL 1.1 |")
    assert all(text.count(a) == 1 and not any(a in r for r in rows) for a in attributions)
    # Shown as pictures: the training picture itself, drawn again from its source, comes first in pixels.
    shown = dict((caption, picture) for picture, caption in copies_gallery(check, training))
    assert list(shown)[0] == "the picture checked"
    heart = next(p for c, p in shown.items() if c.startswith("red heart, in Noto") and "SIL OFL" in c)
    assert np.abs(np.asarray(heart.resize((64, 64)), float) - np.asarray(training, float)).mean() < 8
    drawn = pipe({"prompt": "red heart, in Noto Color Emoji style", "seed": 0}).images[0].image
    assert not pipe.copies(drawn).likely_copy
