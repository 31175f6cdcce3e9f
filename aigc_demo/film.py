"""A narrated film from a storyboard: each shot's panel with a slow pan or zoom (Ken Burns), the caller's
latent-space in-betweens (or a crossfade) from one shot to the next, subtitles burned in, and the narration
on a sound track that lasts exactly as long as the picture. Writes an MP4 (H.264 + AAC), a small GIF and a
ZIP of PNG frames.

Frames are made one at a time and streamed into ffmpeg, so making and encoding overlap and at most a
couple of full-size frames exist at once. Panels are enlarged by a whole factor with NEAREST before the
camera moves over them: generated pixels stay crisp instead of being smeared by a smooth upscale.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import time
import uuid
import wave
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from aigc_demo import validation
from aigc_demo.imaging import png_bytes, upscale
from aigc_demo.media import replace_audio, write_mp4

__all__ = ["Shot", "FilmSpec", "Film", "render_film", "subtitle_band", "subtitle_font", "wrap_text"]

log = logging.getLogger(__name__)

MAX_SHOTS = 16
SHOT_SECONDS = (0.5, 30.0)
SIZES = (128, 1024)
FPS = (1, 30)
SAMPLE_RATES = (8000, 48000)
MAX_TRANSITION_SECONDS = 5.0
MAX_SUBTITLE = 500  # characters; a subtitle shows at most SUBTITLE_LINES lines of it
SUBTITLE_LINES = 3
ZOOM = 1.12  # how far a shot zooms or how much of the panel a pan leaves out: slow enough to read as calm
GIF_SIDE, GIF_FPS = 256, 6  # the GIF is a preview: small, with fewer frames, no sound
PRESET = "superfast"  # x264: ~3x faster than "medium" here; files grow ~1.5x, still a few hundred kB
# A view is where the camera looks: (centre x, centre y, side), as fractions of the panel's side.
_NEAR = 1 / ZOOM
MOTIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "zoom_in": ((0.5, 0.5, 1.0), (0.5, 0.5, _NEAR)),
    "zoom_out": ((0.5, 0.5, _NEAR), (0.5, 0.5, 1.0)),
    "pan_left": ((1 - _NEAR / 2, 0.5, _NEAR), (_NEAR / 2, 0.5, _NEAR)),
    "pan_right": ((_NEAR / 2, 0.5, _NEAR), (1 - _NEAR / 2, 0.5, _NEAR)),
    "still": ((0.5, 0.5, 1.0), (0.5, 0.5, 1.0)),
}
# Subtitle fonts, best first: Debian's fonts-noto-cjk (face 2 of the collection is Simplified Chinese),
# then DejaVu (Latin only); fc-match is asked when none of these paths exists.
_CJK_FONTS = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc", 2),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc", 2),
)
_LATIN_FONTS = (("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 0),)


@dataclass(frozen=True, eq=False)
class Shot:
    """One scene on screen: its picture, how long it stays, what is said and how the camera moves."""

    panel: Image.Image  # any size; typically 256x256 (4x upscaler) or 64x64
    seconds: float  # on screen, transitions not counted; SHOT_SECONDS
    subtitle: str = ""  # burned in at the bottom; any language
    audio: np.ndarray | None = None  # float32 mono in [-1, 1] at FilmSpec.sample_rate; at most `seconds` long
    motion: str = "zoom_in"  # a key of MOTIONS


@dataclass(frozen=True)
class FilmSpec:
    size: int = 512  # square frames, even: H.264 with yuv420p needs even sides
    fps: int = 12  # a slow camera needs few frames; each costs encoding time on a 2-core CPU
    sample_rate: int = 22050  # speech needs no more
    transition_seconds: float = 0.75  # between two shots; 0 cuts


@dataclass(frozen=True, eq=False)
class Film:
    mp4: Path  # H.264 (+ AAC when any shot speaks)
    gif: Path  # GIF_SIDE px at GIF_FPS, no sound
    frames_zip: Path  # the film at the GIF's size and rate, full-colour PNGs: frame-0000.png, ...
    seconds: float  # video duration
    audio_seconds: float | None  # None when silent
    frame_count: int
    stopped: bool = False  # stop() ended it early; all that was made until then is in the files


@dataclass(frozen=True)
class _Segment:
    """A run of frames: shot ``shot``, or (``transition``) the way from shot ``shot`` to the next."""

    shot: int
    transition: bool
    start: int  # first frame
    count: int


def render_film(
    shots: Sequence[Shot],
    transitions: Sequence[Sequence[Image.Image]],
    folder: Path,
    spec: FilmSpec = FilmSpec(),
    stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
    mark: Callable[[Image.Image], Image.Image] | None = None,
) -> Film:
    """Film ``shots`` with ``transitions[i]`` (in-between images, spread over ``spec.transition_seconds``;
    empty: a crossfade) between shot i and i + 1. ``stop()`` is asked before each frame after the first;
    when it says True the film ends there and keeps what exists. ``progress(done, total)`` is told about
    once a second of film. ``mark`` (a watermark) is applied to every frame. Bad input raises ValueError
    naming it."""
    # 1. Check inputs.
    t0 = time.perf_counter()
    shots, transitions, spec = _checked(shots, transitions, spec)
    # 2. Lay out the time line in whole frames; the sound track follows the same frame boundaries.
    segments = _timeline(shots, spec)
    total = segments[-1].start + segments[-1].count
    speaks = any(shot.audio is not None and len(shot.audio) for shot in shots)
    # 3. All files under one unique stem.
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / f"film-{uuid.uuid4().hex[:8]}"
    mp4, gif, zip_path, wav = (base.with_suffix(s) for s in (".mp4", ".gif", ".zip", ".wav"))
    made = 0

    def stream(keep: _Keepsakes) -> Iterator[Image.Image]:
        nonlocal made
        frames = _frames(shots, transitions, segments, spec.size)
        for n in range(total):
            if n and stop is not None and stop():
                return
            frame = next(frames)
            if mark is not None:
                frame = mark(frame)
            keep.add(n, frame)
            made = n + 1
            if progress is not None and made % spec.fps == 0:
                progress(made, total)
            yield frame

    try:
        # 4. Stream the frames into ffmpeg, with the whole sound track beside them.
        track = _soundtrack(shots, segments, spec, total) if speaks else None
        if track is not None:
            _write_wav(wav, track, spec.sample_rate)
        with _Keepsakes(zip_path, min(GIF_SIDE, spec.size), spec.fps, min(GIF_FPS, spec.fps)) as keep:
            write_mp4(mp4, stream(keep), spec.fps, audio=None if track is None else wav, preset=PRESET)
            keep.write_gif(gif)
        # 5. Stopped early: the sound track is cut to the frames that exist.
        samples = _sample(made, spec)
        if track is not None and made < total:
            _write_wav(wav, track[:samples], spec.sample_rate)
            replace_audio(mp4, wav)
    except BaseException:
        for path in (mp4, gif, zip_path):
            path.unlink(missing_ok=True)
        raise
    finally:
        wav.unlink(missing_ok=True)
    if progress is not None:
        progress(made, total)
    log.info("film %s: %d of %d frames in %.2f s", mp4.name, made, total, time.perf_counter() - t0)
    return Film(
        mp4=mp4,
        gif=gif,
        frames_zip=zip_path,
        seconds=made / spec.fps,
        audio_seconds=None if track is None else samples / spec.sample_rate,
        frame_count=made,
        stopped=made < total,
    )


# ----------------------------------------------------------------------------------------------------
# Checks and time line
# ----------------------------------------------------------------------------------------------------
def _checked(shots, transitions, spec) -> tuple[list[Shot], list[list[Image.Image]], FilmSpec]:
    """Clean copies of the inputs, or a ValueError that names the first problem."""
    if not isinstance(spec, FilmSpec):
        raise ValueError(f"spec must be a FilmSpec, not {type(spec).__name__}")
    size = validation.in_range("size", validation.as_int("size", spec.size), *SIZES)
    if size % 2:
        raise ValueError(f"size must be even, not {size}")
    spec = FilmSpec(
        size=size,
        fps=validation.in_range("fps", validation.as_int("fps", spec.fps), *FPS),
        sample_rate=validation.in_range(
            "sample_rate", validation.as_int("sample_rate", spec.sample_rate), *SAMPLE_RATES
        ),
        transition_seconds=validation.in_range(
            "transition_seconds",
            validation.as_float("transition_seconds", spec.transition_seconds),
            0.0,
            MAX_TRANSITION_SECONDS,
        ),
    )
    if isinstance(shots, str | bytes) or not isinstance(shots, Sequence):
        raise ValueError(f"shots must be a list of Shot, not {type(shots).__name__}")
    if not shots:
        raise ValueError("shots is empty: a film needs at least one shot")
    validation.in_range("number of shots", len(shots), 1, MAX_SHOTS)
    clean = [_checked_shot(i, shot, spec) for i, shot in enumerate(shots)]
    if isinstance(transitions, str | bytes) or not isinstance(transitions, Sequence):
        raise ValueError("transitions must be a list of lists of images")
    if len(transitions) != len(shots) - 1:
        raise ValueError(
            f"transitions has {len(transitions)} entries; {len(shots)} shots need {len(shots) - 1}"
        )
    tweens = []
    for i, frames in enumerate(transitions):
        if isinstance(frames, str | bytes) or not isinstance(frames, Sequence):
            raise ValueError(f"transitions[{i}] must be a list of images (empty for a crossfade)")
        for j, frame in enumerate(frames):
            if not isinstance(frame, Image.Image):
                raise ValueError(f"transitions[{i}][{j}] must be an image, not {type(frame).__name__}")
        tweens.append(list(frames))
    return clean, tweens, spec


def _checked_shot(i: int, shot, spec: FilmSpec) -> Shot:
    name = f"shots[{i}]"
    if not isinstance(shot, Shot):
        raise ValueError(f"{name} must be a Shot, not {type(shot).__name__}")
    if not isinstance(shot.panel, Image.Image):
        raise ValueError(f"{name}.panel must be an image, not {type(shot.panel).__name__}")
    if min(shot.panel.size) < 1:
        raise ValueError(f"{name}.panel is empty ({shot.panel.width}x{shot.panel.height})")
    seconds = validation.in_range(
        f"{name}.seconds", validation.as_float(f"{name}.seconds", shot.seconds), *SHOT_SECONDS
    )
    motion = validation.choice(f"{name}.motion", shot.motion, tuple(MOTIONS))
    subtitle = validation.text(f"{name}.subtitle", shot.subtitle, MAX_SUBTITLE)
    audio = shot.audio
    if audio is not None:
        try:
            audio = np.asarray(audio, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"{name}.audio must be an array of samples") from None
        if audio.ndim != 1:
            raise ValueError(f"{name}.audio must be mono (one dimension), not shape {audio.shape}")
        if not np.isfinite(audio).all():
            raise ValueError(f"{name}.audio has NaN or infinite samples")
        if len(audio) > round(seconds * spec.sample_rate) + 1:
            raise ValueError(
                f"{name}.audio lasts {len(audio) / spec.sample_rate:.2f} s, longer than the shot's "
                f"{seconds:g} s"
            )
        audio = np.clip(audio, -1.0, 1.0)
    return replace(shot, seconds=seconds, motion=motion, subtitle=subtitle, audio=audio)


def _timeline(shots: list[Shot], spec: FilmSpec) -> list[_Segment]:
    """Shots and transitions as runs of frames. Boundaries are rounded from the running time, so the film
    is as long as asked to within one frame however many shots it has; every shot has a frame."""
    segments, clock, frame = [], 0.0, 0
    for i, shot in enumerate(shots):
        clock += shot.seconds
        end = max(frame + 1, round(clock * spec.fps))
        segments.append(_Segment(i, False, frame, end - frame))
        frame = end
        if i + 1 < len(shots):
            clock += spec.transition_seconds
            end = max(frame, round(clock * spec.fps))
            if end > frame:
                segments.append(_Segment(i, True, frame, end - frame))
            frame = end
    return segments


def _sample(frame: int, spec: FilmSpec) -> int:
    """The sound sample at which ``frame`` starts."""
    return round(frame * spec.sample_rate / spec.fps)


def _soundtrack(shots: list[Shot], segments: list[_Segment], spec: FilmSpec, total: int) -> np.ndarray:
    """Each narration from the start of its shot, cut at the shot's last frame; silence elsewhere."""
    track = np.zeros(_sample(total, spec), dtype=np.float32)
    for seg in segments:
        audio = shots[seg.shot].audio
        if seg.transition or audio is None:
            continue
        start, end = _sample(seg.start, spec), _sample(seg.start + seg.count, spec)
        part = audio[: end - start]
        track[start : start + len(part)] = part
    return track


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """16-bit mono PCM: what ffmpeg reads without guessing."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


# ----------------------------------------------------------------------------------------------------
# Pictures: the camera over crisp panels, in-betweens, subtitles
# ----------------------------------------------------------------------------------------------------
def _frames(
    shots: list[Shot], transitions: list[list[Image.Image]], segments: list[_Segment], size: int
) -> Iterator[Image.Image]:
    """Every frame of the film in order, each ``size`` x ``size`` RGB. In-betweens are prepared one
    transition at a time; the camera glides from where one shot ends to where the next begins."""
    panels = [_crisp(shot.panel, size) for shot in shots]
    bands = [subtitle_band(shot.subtitle, size) for shot in shots]
    for seg in segments:
        i = seg.shot
        if not seg.transition:
            begin, end = MOTIONS[shots[i].motion]
            for j in range(seg.count):
                frame = _look(panels[i], _lerp(begin, end, _ease(j / max(1, seg.count - 1))), size)
                if bands[i] is not None:
                    frame.paste(bands[i], (0, size - bands[i].height), bands[i])
                yield frame
            continue
        tweens = [_crisp(f, size) for f in transitions[i]]
        begin, end = MOTIONS[shots[i].motion][1], MOTIONS[shots[i + 1].motion][0]
        for j in range(seg.count):
            u = (j + 1) / (seg.count + 1)
            view = _lerp(begin, end, _ease(u))
            if tweens:  # spread evenly: frame j shows the in-between at the same fraction of the list
                x = min(max((j + 0.5) / seg.count * len(tweens) - 0.5, 0.0), len(tweens) - 1.0)
                k = int(x)
                nxt = tweens[min(k + 1, len(tweens) - 1)]
                yield _mix(tweens[k], nxt, x - k, view, size)
            else:
                yield _mix(panels[i], panels[i + 1], u, view, size)


def _crisp(img: Image.Image, size: int) -> Image.Image:
    """RGB, centre square, enlarged by a whole factor (NEAREST) to at least ``size``; very large pictures
    are first brought down to twice ``size``, enough for any zoom."""
    img = img.convert("RGB")
    side = min(img.size)
    if img.width != img.height:
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if side > 2 * size:
        img = img.resize((2 * size, 2 * size), Image.Resampling.LANCZOS)
    return upscale(img, size)


def _look(img: Image.Image, view: tuple[float, float, float], size: int) -> Image.Image:
    """What the camera sees of ``img`` at ``view``, as a ``size`` frame (sub-pixel: smooth motion)."""
    cx, cy, side = view
    w = img.width
    half = side * w / 2
    box = (cx * w - half, cy * w - half, cx * w + half, cy * w + half)
    return img.resize((size, size), Image.Resampling.BILINEAR, box=box)


def _mix(a: Image.Image, b: Image.Image, t: float, view, size: int) -> Image.Image:
    """``a`` dissolving into ``b`` (fraction ``t`` of b), seen at ``view``."""
    if t < 1e-3 or a is b:
        return _look(a, view, size)
    if a.size == b.size:
        return _look(Image.blend(a, b, t), view, size)
    return Image.blend(_look(a, view, size), _look(b, view, size), t)


def _ease(t: float) -> float:
    """Smoothstep: the camera starts and stops gently, so shots and transitions meet without a jolt."""
    return t * t * (3 - 2 * t)


def _lerp(a: tuple[float, ...], b: tuple[float, ...], t: float) -> tuple[float, ...]:
    return tuple(x + (y - x) * t for x, y in zip(a, b))


def subtitle_band(text: str, size: int) -> Image.Image | None:
    """An RGBA strip ``size`` wide to lay over a frame's bottom: ``text`` wrapped, centred, white with a
    dark outline on a translucent band (legible on any picture); None for no text."""
    text = text.strip()
    if not text:
        return None
    font = subtitle_font(max(10, round(size / 20)))
    lines = wrap_text(text, font, int(size * 0.9))
    if len(lines) > SUBTITLE_LINES:
        lines = lines[:SUBTITLE_LINES]
        lines[-1] = _clipped(lines[-1], font, int(size * 0.9))
    top, bottom = font.getbbox("国Ag")[1::2]
    line_h = round((bottom - top) * 1.25)
    pad = max(4, line_h // 3)
    band = Image.new("RGBA", (size, 2 * pad + line_h * len(lines)), (0, 0, 0, 110))
    draw = ImageDraw.Draw(band)
    stroke = max(1, size // 256)
    for k, line in enumerate(lines):
        x = (size - draw.textlength(line, font=font)) / 2
        draw.text(
            (x, pad + k * line_h - top),
            line,
            font=font,
            fill="white",
            stroke_width=stroke,
            stroke_fill="black",
        )
    return band


def _clipped(text: str, font, width: int) -> str:
    """``text`` cut to fit ``width`` on one line with an ellipsis: more text follows."""
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def wrap_text(text: str, font, width: float) -> list[str]:
    """``text`` in lines no wider than ``width`` px in ``font``: breaks at spaces and between any two CJK
    characters (Chinese has no spaces); a word wider than a line is broken between its letters."""
    lines: list[str] = []
    for paragraph in text.splitlines():
        line = ""
        for token in _tokens(paragraph):
            for piece in [token] if font.getlength(token.rstrip()) <= width else list(token):
                if line and font.getlength((line + piece).rstrip()) > width:
                    lines.append(line.rstrip())
                    line = piece.lstrip()
                else:
                    line += piece
        lines.append(line.rstrip())
    return [line for line in lines if line] or [""]


def _tokens(text: str) -> Iterator[str]:
    """Words with their trailing spaces, and CJK characters one by one (each is a place a line may break)."""
    word = ""
    for ch in text:
        if _is_cjk(ch):
            if word:
                yield word
            word = ""
            yield ch
        elif ch.isspace():
            word += ch
        else:
            if word and word[-1].isspace():
                yield word
                word = ""
            word += ch
    if word:
        yield word


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF


@functools.cache
def subtitle_font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A ``px`` font with Chinese glyphs (Noto Sans CJK SC) where installed, else DejaVu Sans, else PIL's
    own; loaded once per size."""
    found = _font_file()
    if found is not None:
        return ImageFont.truetype(found[0], px, index=found[1])
    log.warning("no CJK or DejaVu font found (apt-get install fonts-noto-cjk): subtitles use PIL's font")
    return ImageFont.load_default(px)


@functools.cache
def _font_file() -> tuple[str, int] | None:
    for path, index in _CJK_FONTS:
        if Path(path).is_file():
            return path, index
    for pattern, needle in ((":lang=zh-cn", "CJK"), ("DejaVu Sans", "DejaVu")):
        found = _fc_match(pattern)
        if found is not None and needle in Path(found[0]).name:
            return found
    for path, index in _LATIN_FONTS:
        if Path(path).is_file():
            return path, index
    return None


def _fc_match(pattern: str) -> tuple[str, int] | None:
    """fontconfig's best file for ``pattern`` (it always answers something: the caller checks what)."""
    try:
        out = subprocess.run(
            ["fc-match", "-f", "%{file}|%{index}", pattern], capture_output=True, text=True, timeout=10
        ).stdout
        path, index = out.rsplit("|", 1)
        return (path, int(index)) if Path(path).is_file() else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


# ----------------------------------------------------------------------------------------------------
# Side outputs: GIF and ZIP
# ----------------------------------------------------------------------------------------------------
class _Keepsakes:
    """The GIF's frames and the ZIP's PNGs, taken from the film as it streams: the frames that fall on the
    GIF's rate, at its size. The ZIP is written as they come; only small palette frames are held."""

    def __init__(self, zip_path: Path, side: int, fps: int, gif_fps: int):
        self.side, self.fps, self.gif_fps = side, fps, gif_fps
        self.gif_frames: list[Image.Image] = []
        self.zip = zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED)  # PNGs are compressed already

    def add(self, n: int, frame: Image.Image) -> None:
        if n * self.gif_fps // self.fps < len(self.gif_frames):
            return
        factor, rest = divmod(frame.width, self.side)
        small = frame.reduce(factor) if rest == 0 else frame.resize((self.side,) * 2, Image.Resampling.BOX)
        self.zip.writestr(f"frame-{len(self.gif_frames):04d}.png", png_bytes(small))
        self.gif_frames.append(small.quantize(256, method=Image.Quantize.FASTOCTREE))

    def __enter__(self) -> _Keepsakes:
        return self

    def __exit__(self, *exc) -> None:
        self.zip.close()

    def write_gif(self, path: Path) -> None:
        # GIF delays are whole centiseconds: round the running time, so the GIF keeps the film's pace.
        ticks = [round(100 * k / self.gif_fps) for k in range(len(self.gif_frames) + 1)]
        durations = [10 * (b - a) for a, b in zip(ticks, ticks[1:])]
        first, *rest = self.gif_frames
        first.save(path, save_all=True, append_images=rest, duration=durations, loop=0)
