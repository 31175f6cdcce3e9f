"""Small image helpers shared by every pipeline and the UI (no model code, no gradio), and the one way an
uploaded image is opened (``load_image``)."""

from __future__ import annotations

import io
import logging
import math
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["to_pil", "upscale", "psnr", "png_bytes", "load_image", "limit_pil_pixels"]

log = logging.getLogger(__name__)


def to_pil(image) -> Image.Image:
    """A tensor or array in [0, 1] (CHW or HWC, RGB or single channel) -> 8-bit PIL image.

    Values are clamped first: decoders return unclamped means, and uint8 wrap-around would turn a
    slightly-too-bright white into black.
    """
    if hasattr(image, "detach"):  # a torch tensor, without importing torch here
        image = image.detach().to("cpu").float().numpy()
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)  # CHW -> HWC
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an image array (H, W[, C]), got shape {arr.shape}")
    arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
    return Image.fromarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def upscale(img: Image.Image, min_side: int = 256) -> Image.Image:
    """Enlarge by a whole factor with NEAREST until the short side is >= ``min_side``.

    A 64 px latent decode shown at 256 px should look like crisp pixels, not a blur; a whole factor
    keeps every source pixel the same size. Images already large enough are returned unchanged.
    """
    short = min(img.size)
    if short <= 0 or short >= min_side:
        return img
    factor = math.ceil(min_side / short)
    return img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)


def _as_float_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    arr = np.asarray(image, dtype=np.float64)
    return arr / 255.0 if arr.max(initial=0.0) > 1.0 else arr


def psnr(a, b) -> float:
    """PSNR in dB between two images (PIL, or arrays in [0, 1]); capped at 100 dB for identical inputs."""
    x, y = _as_float_array(a), _as_float_array(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    return 100.0 if mse <= 1e-10 else 10.0 * math.log10(1.0 / mse)


def png_bytes(img: Image.Image) -> bytes:
    """PNG-encode fast: compress_level=1 is ~5x quicker than the default 6 and only slightly larger,
    which matters when a slider streams one image per move."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------
# Uploads: anything a visitor or an API client sends becomes an RGB square, or a short ValueError
# ----------------------------------------------------------------------------------------------------
def limit_pil_pixels(max_pixels: int) -> None:
    """Tighten (never loosen) PIL's decompression-bomb guard to ``max_pixels``.

    PIL warns above MAX_IMAGE_PIXELS and refuses at twice that, *before* allocating, so a 20000x20000 PNG
    costs a header read, not 1.2 GB. Process-wide: every pipeline gets the same guard.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is None or current > max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def load_image(source, min_side: int, max_pixels: int, size: int) -> Image.Image:
    """PIL image, numpy array, file path, bytes or a Gradio file dict -> RGB on white, centre-cropped to a
    ``size`` x ``size`` square. Sizes outside ``min_side`` .. ``max_pixels``, non-images, corrupt and
    truncated files are refused with a ValueError that says which."""
    if isinstance(source, dict) and "path" in source:  # gradio FileData from an API client
        source = source["path"]
    if isinstance(source, Image.Image):
        _check_size(source.width, source.height, min_side, max_pixels)
        try:
            if getattr(source, "is_animated", False):
                source.seek(0)
            rgb = _to_rgb(source)
        except (OSError, SyntaxError, EOFError, struct.error) as err:
            raise ValueError(f"could not decode the image ({err})") from None
    elif isinstance(source, np.ndarray):
        rgb = _to_rgb(_array_to_pil(source, min_side, max_pixels))
    elif isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"no image file at {path}")
        rgb = _open_file(path, min_side, max_pixels, size)
    elif isinstance(source, bytes | bytearray):
        rgb = _open_file(io.BytesIO(source), min_side, max_pixels, size)
    else:
        raise ValueError(
            f"expected an image (PIL image, numpy array or file path), not {type(source).__name__}"
        )
    return _fit_square(rgb, size)


def _check_size(w: int, h: int, min_side: int, max_pixels: int) -> None:
    if w < min_side or h < min_side:
        raise ValueError(f"image is too small: {w}x{h}; it must be at least {min_side}x{min_side}")
    if w * h > max_pixels:
        raise ValueError(
            f"image is too large: {w}x{h} = {w * h / 1e6:.0f} megapixels; the limit is {max_pixels / 1e6:g}"
        )


def _open_file(source, min_side: int, max_pixels: int, target: int) -> Image.Image:
    """Open a path or a file object and decode the first frame to RGB, refusing bad input before decoding."""
    # PIL checks the header against MAX_IMAGE_PIXELS inside Image.open, before any allocation: it raises
    # DecompressionBombError beyond twice the limit and warns below that (a warning filtered to "error"
    # arrives as the exception). The size check right after open refuses anything over ``max_pixels``
    # either way; no warnings.catch_warnings here, it is not thread-safe in a server.
    try:
        with Image.open(source) as img:
            _check_size(img.width, img.height, min_side, max_pixels)
            if img.format == "JPEG":
                img.draft("RGB", (target * 2, target * 2))  # decode big photos at 1/2..1/8 scale: fast
            img.seek(0)  # animated: the first frame
            img.load()
            return _to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"image is too large ({err})") from None
    except UnidentifiedImageError:
        raise ValueError("not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, EOFError, struct.error) as err:
        raise ValueError(f"could not decode the image (corrupt or truncated file: {err})") from None


def _array_to_pil(arr: np.ndarray, min_side: int, max_pixels: int) -> Image.Image:
    """HxW, HxWx1/3/4 arrays: uint8, uint16 (scaled down), bool or floats in [0, 1] (or [0, 255])."""
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"an image array must be HxW or HxWx3/4, got shape {arr.shape}")
    _check_size(arr.shape[1], arr.shape[0], min_side, max_pixels)
    if arr.dtype == np.uint8:
        u8 = arr
    elif arr.dtype == np.bool_:
        u8 = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer):
        top = 65535 if arr.max(initial=0) > 255 else 255
        u8 = (np.clip(arr, 0, top).astype(np.float32) * (255 / top) + 0.5).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("the image array contains NaN or infinite values")
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
        u8 = (np.clip(arr * scale, 0, 255) + 0.5).astype(np.uint8)
    else:
        raise ValueError(f"unsupported image array dtype {arr.dtype}")
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[u8.ndim if u8.ndim == 2 else u8.shape[-1]]
    return Image.fromarray(np.ascontiguousarray(u8), mode=mode)


def _deep_gray_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit and float grayscale -> 8-bit. PIL's own convert clips everything above 255 to white."""
    arr = np.asarray(img, dtype=np.float32)
    peak = float(arr.max(initial=0.0))
    if img.mode == "F" and peak <= 1.0:
        top = 1.0
    else:
        top = 65535.0 if peak > 255 else 255.0
    return Image.fromarray((np.clip(arr / top, 0, 1) * 255 + 0.5).astype(np.uint8), mode="L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any mode -> RGB. Transparency is composited on white: the corpus (and so every model) is on white."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF must not make a viewable image unusable
        log.debug("ignoring unreadable EXIF orientation")
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = _deep_gray_to_l(img)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _fit_square(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to ``size``."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = img.crop((left, top, left + side, top + side)) if w != h else img
    if side == size:
        return square.copy()
    return square.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
