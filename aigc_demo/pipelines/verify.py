"""Verify: what a file says about where it came from.

A dropped file is checked for size and emptiness before anything reads it, then its Content Credentials are
validated (``provenance/content_credentials.py``) and its generation parameters are read: the signed ones
from the manifest, else the PNG text chunks (unsigned, so reported as such). The file is a stranger's:
nothing here trusts its name, its size or its contents.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from aigc_demo.config import ProvenanceConfig
from aigc_demo.media import sample_frames
from aigc_demo.provenance import image_watermark
from aigc_demo.provenance.content_credentials import ContentCredentials, Verdict, content_credentials
from aigc_demo.provenance.image_watermark import Reading
from aigc_demo.provenance.parameters import MADE_HERE, read_parameters, save_png
from aigc_demo.provenance.robustness import make_copies

MAX_WATERMARK_PIXELS = 4096 * 4096  # larger pictures are not decoded for the watermark
VIDEO_FRAMES_READ = 8  # spread over a video or GIF: their mean brings the fixed mark out of moving pictures


@dataclass(frozen=True)
class Inspection:
    name: str
    size_bytes: int
    verdict: Verdict
    parameters: dict | None  # how it was made, when the file says
    parameters_source: str  # "signed manifest" | "PNG text (unsigned)" | "watermark" | "none"
    watermark: Reading | None = None  # pictures and videos

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "size_bytes": self.size_bytes,
            **self.verdict.as_dict(),
            "parameters": self.parameters,
            "parameters_source": self.parameters_source,
            "watermark": None if self.watermark is None else {
                "found": self.watermark.found,
                "id": None if self.watermark.watermark_id is None else f"{self.watermark.watermark_id:06x}",
                "bits_corrected": self.watermark.flipped,
                "summary": self.watermark.summary(),
            },
        }  # fmt: skip


class VerifyPipeline:
    """Checks files against the process's trust list; cheap, so it runs on the request's thread."""

    def __init__(self, cfg: ProvenanceConfig, credentials: ContentCredentials):
        self.cfg = cfg
        self.credentials = credentials

    @classmethod
    def from_config(cls, cfg: ProvenanceConfig) -> VerifyPipeline:
        return cls(cfg, content_credentials())

    def _checked(self, path: str | Path | None) -> Path:
        """ValueError for no file, an empty one or one over the size limit."""
        if path is None or not Path(path).is_file():
            raise ValueError("no file was given")
        path = Path(path)
        size = path.stat().st_size
        if size == 0:
            raise ValueError("the file is empty")
        if size > self.cfg.max_file_bytes:
            raise ValueError(
                f"the file is over the {self.cfg.max_file_bytes // 2**20} MB limit ({size / 2**20:.0f} MB)"
            )
        return path

    def inspect(self, path: str | Path | None) -> Inspection:
        """What the file says about where it came from (ValueError for no, empty or oversized files)."""
        path = self._checked(path)
        size = path.stat().st_size
        verdict = self.credentials.verify(path)
        if verdict.generation is not None and verdict.state not in ("tampered", "invalid"):
            parameters, source = verdict.generation, "signed manifest"
        else:
            parameters, source = self._text_parameters(path), "PNG text (unsigned)"
            if parameters is None:
                source = "none"
        mark = self._watermark(path) or self._video_watermark(path)
        if parameters is None and mark is not None and mark.found and mark.watermark_id in MADE_HERE:
            parameters, source = MADE_HERE[mark.watermark_id], "watermark (made by this instance)"
        return Inspection(path.name, size, verdict, parameters, source, mark)

    @staticmethod
    def _watermark(path: Path) -> Reading | None:
        """The picture's watermark reading; None for files that are not pictures."""
        try:
            with Image.open(path) as img:
                if img.width * img.height > MAX_WATERMARK_PIXELS:
                    return None
                count = getattr(img, "n_frames", 1)
                if count == 1:
                    return image_watermark.read(img.convert("RGB"))
                frames = []  # an animation: its palette hides the mark in one frame, not in their mean
                for n in range(0, count, max(1, count // VIDEO_FRAMES_READ)):
                    img.seek(n)
                    frames.append(img.convert("RGB"))
                return image_watermark.read_frames(frames[:VIDEO_FRAMES_READ])
        except (OSError, ValueError, Image.DecompressionBombError):
            return None

    @staticmethod
    def _video_watermark(path: Path) -> Reading | None:
        """The watermark in frames spread over a video; None when no video stream can be decoded."""
        try:
            return image_watermark.read_frames(sample_frames(path, count=VIDEO_FRAMES_READ))
        except ValueError:
            return None

    def lab(self, path: str | Path | None) -> list[dict]:
        """The robustness lab: for the file and each copy of it (provenance/robustness.py), whether its
        Content Credentials, its watermark and its PNG text parameters survive."""
        path = self._checked(path)
        if self._watermark(path) is None:
            raise ValueError("the robustness lab takes pictures (PNG, JPEG, GIF, WebP), not this file")
        rows = []
        with tempfile.TemporaryDirectory(prefix="aigc-lab-") as folder:
            for name, copy in {"the file as it is": path, **make_copies(path, Path(folder))}.items():
                mark = self._watermark(copy)
                rows.append(
                    {
                        "copy": name,
                        "content_credentials": self.credentials.verify(copy).state,
                        "watermark": f"found ({mark.watermark_id:06x})"
                        if mark and mark.found
                        else "not found",
                        "png_text_parameters": "kept" if self._text_parameters(copy) else "lost",
                    }
                )
        return rows

    @staticmethod
    def _text_parameters(path: Path) -> dict | None:
        try:
            return read_parameters(path)
        except ValueError:
            return None

    def warm_up(self) -> None:
        """Sign and read a tiny PNG once: loads c2pa and builds its contexts before a visitor waits."""
        self.inspect(save_png(Image.new("RGB", (8, 8), "white"), {"prompt": "warm-up"}))
