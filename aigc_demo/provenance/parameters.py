"""Generation parameters in a PNG's text chunks.

Every PNG the app hands out carries the parameters that made it, twice: as AUTOMATIC1111's ``parameters``
text (so other tools read it) and as JSON under ``aigc_studio`` (what this app reads back). Reading is
defensive: the file comes from a stranger, so only known keys of the right type and size survive. Text chunks
vanish in any editor; the signed copy of the same parameters is in the C2PA manifest (``content_credentials``).
"""

from __future__ import annotations

import json
import math
import secrets
from collections import OrderedDict
from io import BytesIO
from pathlib import Path

from PIL import Image, PngImagePlugin

from aigc_demo.outputs import fresh_output_dir
from aigc_demo.pipelines.image import RESULT_KEYS, ImageParams
from aigc_demo.provenance import image_watermark
from aigc_demo.provenance.content_credentials import sign_if_enabled
from aigc_demo.schema import Schema

JSON_KEY = "aigc_studio"
A1111_KEY = "parameters"
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_TEXT = 4000

# key -> type of the value accepted back from a PNG: the request schema's fields and what made the image.
PARAMETER_TYPES: dict[str, type] = {**Schema(ImageParams).types(), **RESULT_KEYS}


def a1111_text(params: dict) -> str:
    """'prompt\\nNegative prompt: ...\\nSteps: 20, Sampler: ..., CFG scale: 5, Seed: 1, Size: 64x64, Model: ...'"""
    fields = [
        f"Steps: {params.get('num_inference_steps')}",
        f"Sampler: {params.get('scheduler')}",
        f"CFG scale: {params.get('guidance_scale')}",
        f"Seed: {params.get('seed')}",
        f"Size: {params.get('width')}x{params.get('height')}",
        f"Model: {params.get('model')}",
    ]
    negative = params.get("negative_prompt") or ""
    return f"{params.get('prompt', '')}\nNegative prompt: {negative}\n" + ", ".join(fields)


# watermark id -> the parameters of the picture that carries it, for pictures this process made: what links a
# re-encoded copy (manifest gone, watermark kept) back to them. Bounded; it does not outlive the process.
MADE_HERE: OrderedDict[int, dict] = OrderedDict()
MADE_HERE_LIMIT = 10_000


def new_watermark(params: dict) -> tuple[image_watermark.FrameMarker, dict]:
    """A marker for a fresh watermark id and ``params`` recording the id, remembered in MADE_HERE: for a
    picture or every frame of a film, before it is signed with the returned parameters."""
    watermark_id = secrets.randbits(image_watermark.ID_BITS)
    params = {**params, "watermark_id": f"{watermark_id:06x}"}
    MADE_HERE[watermark_id] = params
    while len(MADE_HERE) > MADE_HERE_LIMIT:
        MADE_HERE.popitem(last=False)
    return image_watermark.FrameMarker(watermark_id), params


def save_png(image: Image.Image, params: dict, folder: Path | None = None) -> Path:
    """Write ``image`` as a PNG carrying ``params``, watermarked (128 px and more) and signed; returns its path
    (a fresh temp file by default)."""
    if min(image.size) >= image_watermark.MIN_SIDE:
        marker, params = new_watermark(params)
        image = marker(image)
    info = PngImagePlugin.PngInfo()
    info.add_text(A1111_KEY, a1111_text(params))
    info.add_text(JSON_KEY, json.dumps(params, ensure_ascii=False))
    folder = Path(folder or fresh_output_dir("image-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"aigc-{params.get('generator', 'image')}-{params.get('seed', 0)}.png"
    image.save(path, pnginfo=info)
    return sign_if_enabled(path, params)  # after the text chunks: signing binds every byte


def read_parameters(source: str | Path | bytes) -> dict:
    """The parameters stored in a PNG made by this app. ValueError with a clear message otherwise."""
    if source is None:
        raise ValueError("no file was given")
    data = source if isinstance(source, bytes) else _read_bounded(Path(source))
    try:
        with Image.open(BytesIO(data)) as img:
            # info: the text chunks before the pixels (where they are written); img.text would decode the pixels
            text = {k: v for k, v in img.info.items() if isinstance(v, str)}
    except Exception as err:  # noqa: BLE001 - any decoder failure means "not an image we can read"
        raise ValueError(f"that file is not a readable PNG ({type(err).__name__})") from None
    raw = text.get(JSON_KEY)
    if raw is None:
        raise ValueError("this image carries no AIGC Studio parameters (was it made by this app?)")
    if len(raw) > 4 * MAX_TEXT:
        raise ValueError("the image's parameter block is too large to trust")
    try:
        stored = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError("the image's parameter block is not valid JSON") from None
    if not isinstance(stored, dict):
        raise ValueError("the image's parameter block is not a set of named values")
    return {k: v for k, v in ((k, _clean(k, stored.get(k))) for k in PARAMETER_TYPES) if v is not None}


def _read_bounded(path: Path) -> bytes:
    if not path.is_file():
        raise ValueError("no file was given")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"the file is over {MAX_FILE_BYTES // (1024 * 1024)} MB")
    return path.read_bytes()


def _clean(key: str, value):
    """The value if it has the expected type and a sane size, else None (dropped)."""
    kind = PARAMETER_TYPES[key]
    if kind is str:
        return value[:MAX_TEXT] if isinstance(value, str) else None
    if kind is bool:
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if kind is int:
        return int(value) if float(value).is_integer() and abs(value) < 2**63 else None
    return float(value) if math.isfinite(value) else None
