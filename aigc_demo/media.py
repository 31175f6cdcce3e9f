"""Animations from frames: an animated GIF (Pillow) and an H.264 MP4 with optional AAC sound
(imageio-ffmpeg), for any tab.

Small generated frames are enlarged with NEAREST to the display size first: a 64 px GIF is a postage stamp,
and smooth resampling would blur the pixels the model actually produced.
"""

from __future__ import annotations

import itertools
import subprocess
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from PIL import Image

from aigc_demo import validation
from aigc_demo.imaging import upscale

MAX_FRAMES = 1024  # after the boomerang; an interpolation has at most a few hundred
MIN_SIDE = 256  # animations are never written smaller than this, whatever the display size
AAC = ["-b:a", "64k"]  # narration, mono: 64 kb/s is transparent for speech
FFMPEG_TIMEOUT = 120  # seconds for a remux, which copies the video: far more than it ever takes


def write_animation(
    frames: Sequence[Image.Image],
    folder: str | Path,
    fps: int = 12,
    display_size: int = 256,
    boomerang: bool = True,
    stem: str = "walk",
    mark: Callable[[Image.Image], Image.Image] | None = None,
) -> tuple[Path, Path]:
    """Write ``frames`` as ``<stem>-<id>.gif`` and ``.mp4`` in ``folder``; returns (gif, mp4).

    ``boomerang`` plays forth and back without repeating the turning frames, so a loop has no jump. ``mark``
    (a watermark) is applied to every enlarged frame.
    """
    # 1. Check inputs.
    frames = list(frames)
    if not frames or not all(isinstance(f, Image.Image) for f in frames):
        raise ValueError("frames must be a non-empty list of images")
    fps = validation.in_range("fps", validation.as_int("fps", fps), 1, 60)
    # 2. Forth and back, crisp and large.
    if boomerang and len(frames) > 2:
        frames = frames + frames[-2:0:-1]
    if len(frames) > MAX_FRAMES:
        raise ValueError(f"{len(frames)} frames; the limit is {MAX_FRAMES}")
    side = max(MIN_SIDE, validation.as_int("display_size", display_size))
    big = [_even_canvas(upscale(f.convert("RGB"), side)) for f in frames]
    if mark is not None:
        big = [mark(f) for f in big]
    # 3. Both files under one unique stem.
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / f"{stem}-{uuid.uuid4().hex[:8]}"
    gif, mp4 = base.with_suffix(".gif"), base.with_suffix(".mp4")
    big[0].save(gif, save_all=True, append_images=big[1:], duration=round(1000 / fps), loop=0)
    write_mp4(mp4, big, fps)
    return gif, mp4


def write_mp4(
    path: Path,
    frames: Iterable[Image.Image],
    fps: int,
    audio: Path | None = None,
    preset: str | None = None,
) -> int:
    """H.264, yuv420p (what every browser plays), moov atom first so playback starts before the download
    ends; returns the number of frames. Frames must share one size with even sides (``_even_canvas``); a
    generator is encoded as it yields, so making frames and encoding them overlap. ``audio``, a WAV, is
    muxed as AAC and must last as long as the frames: no ``-shortest``, which cuts at whole packets.
    ``preset`` is x264's speed/size trade (its default: "medium")."""
    import imageio_ffmpeg

    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("no frames to write")
    size = first.size
    params = ["-threads", "1", "-movflags", "+faststart"] + (["-preset", preset] if preset else [])
    writer = imageio_ffmpeg.write_frames(
        str(path),
        size,
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=2,
        ffmpeg_log_level="error",
        output_params=params + (AAC if audio is not None else []),
        audio_path=None if audio is None else str(audio),
        audio_codec=None if audio is None else "aac",
    )
    writer.send(None)  # start ffmpeg
    count = 0
    try:
        for frame in itertools.chain([first], frames):
            if frame.size != size:
                raise ValueError(f"frame {count} is {frame.size}, not {size} like the first")
            writer.send((frame if frame.mode == "RGB" else frame.convert("RGB")).tobytes())
            count += 1
    finally:
        writer.close()
    return count


def replace_audio(mp4: Path, wav: Path) -> None:
    """Swap ``mp4``'s sound for ``wav`` (as AAC), copying the video stream untouched: cheap, no re-encode."""
    import imageio_ffmpeg

    tmp = mp4.with_name(mp4.stem + ".remux.mp4")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(mp4), "-i", str(wav)]
    cmd += ["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", *AAC]
    cmd += ["-movflags", "+faststart", str(tmp)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=FFMPEG_TIMEOUT)
    except subprocess.CalledProcessError as err:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"ffmpeg could not remux {mp4.name}: {err.stderr.decode(errors='replace')}"
        ) from None
    tmp.replace(mp4)


def sample_frames(path: Path, count: int = 8, max_side: int = 512) -> list[Image.Image]:
    """Up to ``count`` frames spread over a video (each at most ``max_side`` px, for reading, not showing).
    ValueError when the file has no video stream ffmpeg can decode."""
    import imageio_ffmpeg

    scale = f"scale='min({max_side},iw)':-2"
    try:
        reader = imageio_ffmpeg.read_frames(str(path), output_params=["-vf", scale])
        meta = reader.__next__()
        width, height = meta["size"]
        total = max(1, round(float(meta.get("duration") or 0) * float(meta.get("fps") or 0)))
        every = max(1, total // count)
        frames = []
        for n, raw in enumerate(reader):
            if n % every == 0:
                frames.append(Image.frombytes("RGB", (width, height), raw))
            if len(frames) == count:
                break
        reader.close()
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as err:
        raise ValueError(f"no video stream could be read ({type(err).__name__})") from None
    if not frames:
        raise ValueError("the video has no frames")
    return frames


def _even_canvas(img: Image.Image) -> Image.Image:
    """H.264 with yuv420p needs even width and height: pad one white pixel where odd."""
    w, h = img.size
    if w % 2 == 0 and h % 2 == 0:
        return img
    canvas = Image.new("RGB", (w + w % 2, h + h % 2), (255, 255, 255))
    canvas.paste(img, (0, 0))
    return canvas
