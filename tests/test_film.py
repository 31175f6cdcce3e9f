"""The film stage: shots, in-betweens, subtitles and narration become an MP4 (H.264 + AAC), a GIF and a ZIP.

Panels are PIL drawings and the narration a sine tone; every file is probed with imageio-ffmpeg's own ffmpeg.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import zipfile

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image, ImageDraw

from aigc_demo.film import FilmSpec, Shot, render_film, subtitle_band, subtitle_font, wrap_text

FPS, SR = 12, 22050
SPEC = FilmSpec(size=256, fps=FPS, sample_rate=SR, transition_seconds=0.5)
SECONDS = (1.0, 1.5, 1.0)
LENGTH = sum(SECONDS) + 2 * SPEC.transition_seconds  # 4.5 s, 54 frames


def panel(seed: int, side: int = 64) -> Image.Image:
    """Dark shapes on a dark ground: nothing near white, so white pixels can only be subtitles."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(20, 90, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        x, y = rng.integers(0, side - 8, 2)
        r = int(rng.integers(4, side // 3))
        draw.ellipse((x, y, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 180, 3)))
    return img


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def shots(audio: bool = True, subtitles: bool = True) -> list[Shot]:
    lines = ("一条小鱼每天都抬头看天上的鸟。", "One morning a bird came.", "")
    motions = ("zoom_in", "pan_left", "still")
    return [
        Shot(
            panel(i, 64 if i != 1 else 256),
            seconds,
            lines[i] if subtitles else "",
            tone(0.6, 300 + 100 * i) if audio else None,
            motions[i],
        )
        for i, seconds in enumerate(SECONDS)
    ]


def transitions() -> list[list[Image.Image]]:
    return [[panel(10 + k) for k in range(3)], []]  # latent-like in-betweens, then a crossfade


def ffmpeg(*args: str) -> str:
    """ffmpeg's report (stderr); exit codes are ignored: ``-i`` alone "fails" after printing the streams."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stderr


def streams(path) -> list[str]:
    return re.findall(r"Stream #\d+:\d+.*?: (Video: \w+|Audio: \w+)", ffmpeg("-i", str(path)))


def decoded_seconds(path, which: str) -> float:
    """How long stream ``which`` ("v" or "a") lasts when decoded to the end."""
    times = re.findall(
        r"time=(\d+):(\d+):([\d.]+)", ffmpeg("-i", str(path), "-map", f"0:{which}", "-f", "null", "-")
    )
    h, m, s = times[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def decoded_audio(path) -> np.ndarray:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a", "-f", "s16le", "-"]
    pcm = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768


def decoded_frames(path, size: int) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)  # metadata
    return [np.frombuffer(raw, np.uint8).reshape(size, size, 3) for raw in reader]


@pytest.fixture(scope="module")
def narrated(tmp_path_factory):
    calls = []
    film = render_film(
        shots(),
        transitions(),
        tmp_path_factory.mktemp("film"),
        SPEC,
        progress=lambda d, t: calls.append((d, t)),
    )
    return film, calls


def test_narrated_film_has_h264_and_aac_of_one_length(narrated):
    film, _ = narrated
    assert streams(film.mp4) == ["Video: h264", "Audio: aac"]
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(film.mp4))
    assert frames == film.frame_count == round(LENGTH * FPS)
    assert seconds == pytest.approx(LENGTH, abs=1 / FPS) and film.seconds == pytest.approx(
        LENGTH, abs=1 / FPS
    )
    assert film.audio_seconds == pytest.approx(film.seconds, abs=1 / FPS)
    assert decoded_seconds(film.mp4, "a") == pytest.approx(decoded_seconds(film.mp4, "v"), abs=1 / FPS)
    assert not film.stopped


def test_narration_starts_each_shot_and_transitions_are_silent(narrated):
    film, _ = narrated
    audio = decoded_audio(film.mp4)

    def rms(start: float, end: float) -> float:
        return float(np.sqrt(np.mean(audio[int(start * SR) : int(end * SR)] ** 2)))

    starts = (0.0, 1.5, 3.5)  # each shot begins after the one before and a 0.5 s transition
    for start in starts:
        assert rms(start + 0.1, start + 0.5) > 0.2  # a 0.5-amplitude tone: rms 0.35
        assert rms(start + 0.7, start + 0.95) < 0.02  # the 0.6 s line is over: silence to the shot's end
    assert rms(1.05, 1.45) < 0.02 and rms(3.05, 3.45) < 0.02  # transitions


def test_progress_is_reported_up_to_the_total(narrated):
    _, calls = narrated
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (round(LENGTH * FPS),) * 2


def test_gif_and_zip_open(narrated):
    film, _ = narrated
    with Image.open(film.gif) as gif:
        assert gif.size == (256, 256) and gif.n_frames > 10
        total_ms = 0
        for k in range(gif.n_frames):
            gif.seek(k)
            total_ms += gif.info["duration"]
    assert total_ms / 1000 == pytest.approx(film.seconds, abs=0.2)
    with zipfile.ZipFile(film.frames_zip) as archive:
        names = archive.namelist()
        assert names[0] == "frame-0000.png" and len(names) == round(film.seconds * 6)
        with archive.open(names[-1]) as f, Image.open(f) as png:
            assert png.size == (256, 256)


def test_subtitles_are_burned_in_at_the_bottom(narrated):
    film, _ = narrated
    frame = decoded_frames(film.mp4, 256)[6]  # mid first shot, which has a Chinese subtitle
    white = (frame.min(axis=2) > 220).sum(axis=1)  # white pixels per row: the panels have none
    assert white[-50:].sum() > 100 and white[:150].sum() == 0


def test_chinese_subtitles_use_a_cjk_font():
    font = subtitle_font(26)
    assert "CJK" in " ".join(font.getname())  # Debian's fonts-noto-cjk, as CI installs
    a, b = subtitle_band("你好，世界", 512), subtitle_band("小鱼飞过大海", 512)
    assert a.size[0] == 512 and np.asarray(a)[..., :3].min(axis=2).max() > 240  # white text
    assert not np.array_equal(np.asarray(a), np.asarray(b))  # real glyphs, not the same missing-glyph boxes
    assert subtitle_band("  ", 512) is None


def test_wrap_text_breaks_chinese_anywhere_and_english_at_spaces():
    font = subtitle_font(20)
    chinese = wrap_text("一条小鱼每天都抬头看天上的鸟它们一起飞过了蓝色的大海", font, 120)
    assert len(chinese) > 2 and all(font.getlength(line) <= 120 for line in chinese)
    assert "".join(chinese) == "一条小鱼每天都抬头看天上的鸟它们一起飞过了蓝色的大海"
    english = wrap_text("the quick brown fox jumps over the lazy dog", font, 120)
    assert " ".join(english) == "the quick brown fox jumps over the lazy dog" and len(english) > 1
    assert all(font.getlength(line) <= 120 for line in english)


def test_in_betweens_are_spread_over_the_transition(tmp_path):
    spec = FilmSpec(size=128, fps=FPS, transition_seconds=0.5)
    solid = [Image.new("RGB", (32, 32), c) for c in ("red", "lime", "blue")]
    black, white = Image.new("RGB", (64, 64), "black"), Image.new("RGB", (64, 64), "white")
    film = render_film([Shot(black, 1.0, motion="still"), Shot(white, 1.0)], [solid], tmp_path, spec)
    frames = decoded_frames(film.mp4, 128)
    assert len(frames) == 30
    colours = [int(np.argmax(f.reshape(-1, 3).mean(axis=0))) for f in frames[12:18]]
    assert colours == [0, 0, 1, 1, 2, 2]  # red, green, blue in order, two frames each


def test_stop_keeps_a_shorter_valid_film(tmp_path):
    calls = itertools.count(1)
    film = render_film(shots(), transitions(), tmp_path, SPEC, stop=lambda: next(calls) >= 10)
    assert film.stopped and film.frame_count == 10
    assert streams(film.mp4) == ["Video: h264", "Audio: aac"]
    assert imageio_ffmpeg.count_frames_and_secs(str(film.mp4))[0] == 10
    assert film.audio_seconds == pytest.approx(10 / FPS, abs=1 / SR)
    assert decoded_seconds(film.mp4, "a") == pytest.approx(10 / FPS, abs=1 / FPS)
    with Image.open(film.gif) as gif:
        assert gif.n_frames >= 1
    assert zipfile.ZipFile(film.frames_zip).testzip() is None
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".gif", ".mp4", ".zip"]  # no leftovers


def test_silent_film_has_no_audio_stream(tmp_path):
    film = render_film(shots(audio=False, subtitles=False), transitions(), tmp_path, SPEC)
    assert streams(film.mp4) == ["Video: h264"]
    assert film.audio_seconds is None and film.frame_count == round(LENGTH * FPS)


def _with(i: int, **changes) -> list[Shot]:
    from dataclasses import replace

    out = shots()
    out[i] = replace(out[i], **changes)
    return out


@pytest.mark.parametrize(
    "args, match",
    [
        (([], []), "shots is empty"),
        (([Shot(panel(0), 1.0)] * 17, [[]] * 16), "number of shots must be between 1 and 16"),
        ((_with(1, seconds=0.2), transitions()), r"shots\[1\]\.seconds"),
        ((_with(0, seconds=31), transitions()), r"shots\[0\]\.seconds"),
        ((shots(), [[]]), "transitions has 1 entries; 3 shots need 2"),
        ((_with(2, panel=np.zeros((8, 8, 3))), transitions()), r"shots\[2\]\.panel must be an image"),
        ((shots(), [["not an image"], []]), r"transitions\[0\]\[0\] must be an image"),
        ((_with(0, motion="spin"), transitions()), r"shots\[0\]\.motion"),
        ((_with(0, audio=tone(1.5)), transitions()), r"shots\[0\]\.audio lasts 1\.50 s"),
        ((_with(0, audio=np.zeros((10, 2))), transitions()), r"shots\[0\]\.audio must be mono"),
        ((shots(), transitions(), FilmSpec(size=100)), "size must be between 128 and 1024"),
        ((shots(), transitions(), FilmSpec(size=258 + 1)), "size must be even"),
        ((shots(), transitions(), FilmSpec(fps=0)), "fps must be between 1 and 30"),
        ((shots(), transitions(), FilmSpec(fps=60)), "fps must be between 1 and 30"),
    ],
)
def test_bad_input_is_named(tmp_path, args, match):
    shots_, transitions_, *spec = args
    with pytest.raises(ValueError, match=match):
        render_film(shots_, transitions_, tmp_path, *spec)
    assert not any(tmp_path.iterdir())  # refused before any file is written
