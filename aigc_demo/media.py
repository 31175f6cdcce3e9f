"""Animations from frames: an animated GIF (Pillow) and an H.264 MP4 (imageio-ffmpeg), for any tab.

Small generated frames are enlarged with NEAREST to the display size first: a 64 px GIF is a postage stamp,
and smooth resampling would blur the pixels the model actually produced.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from aigc_demo import validation
from aigc_demo.imaging import upscale

MAX_FRAMES = 1024  # after the boomerang; an interpolation has at most a few hundred
MIN_SIDE = 256  # animations are never written smaller than this, whatever the display size


def write_animation(
    frames: Sequence[Image.Image],
    folder: str | Path,
    fps: int = 12,
    display_size: int = 256,
    boomerang: bool = True,
    stem: str = "walk",
) -> tuple[Path, Path]:
    """Write ``frames`` as ``<stem>-<id>.gif`` and ``.mp4`` in ``folder``; returns (gif, mp4).

    ``boomerang`` plays forth and back without repeating the turning frames, so a loop has no jump.
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
    # 3. Both files under one unique stem.
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / f"{stem}-{uuid.uuid4().hex[:8]}"
    gif, mp4 = base.with_suffix(".gif"), base.with_suffix(".mp4")
    big[0].save(gif, save_all=True, append_images=big[1:], duration=round(1000 / fps), loop=0)
    write_mp4(mp4, big, fps)
    return gif, mp4


def write_mp4(path: Path, frames: Sequence[Image.Image], fps: int) -> None:
    """H.264, yuv420p (what every browser plays), moov atom first so playback starts before the download
    ends. Frames must share one size with even sides (``_even_canvas``)."""
    import imageio_ffmpeg

    w, h = frames[0].size
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=2,
        ffmpeg_log_level="error",
        output_params=["-threads", "1", "-movflags", "+faststart"],
    )
    writer.send(None)  # start ffmpeg
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(np.asarray(frame.convert("RGB"), dtype=np.uint8)).tobytes())
    finally:
        writer.close()


def _even_canvas(img: Image.Image) -> Image.Image:
    """H.264 with yuv420p needs even width and height: pad one white pixel where odd."""
    w, h = img.size
    if w % 2 == 0 and h % 2 == 0:
        return img
    canvas = Image.new("RGB", (w + w % 2, h + h % 2), (255, 255, 255))
    canvas.paste(img, (0, 0))
    return canvas
