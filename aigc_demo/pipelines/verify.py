"""Verify: what a file says about where it came from.

A dropped file is checked for size and emptiness before anything reads it, then its Content Credentials are
validated (``provenance/content_credentials.py``) and its generation parameters are read: the signed ones
from the manifest, else the PNG text chunks (unsigned, so reported as such). The file is a stranger's:
nothing here trusts its name, its size or its contents.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aigc_demo.config import ProvenanceConfig
from aigc_demo.provenance.content_credentials import ContentCredentials, Verdict, content_credentials
from aigc_demo.provenance.parameters import read_parameters, save_png


@dataclass(frozen=True)
class Inspection:
    name: str
    size_bytes: int
    verdict: Verdict
    parameters: dict | None  # how it was made, when the file says
    parameters_source: str  # "signed manifest" | "PNG text (unsigned)" | "none"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "size_bytes": self.size_bytes,
            **self.verdict.as_dict(),
            "parameters": self.parameters,
            "parameters_source": self.parameters_source,
        }


class VerifyPipeline:
    """Checks files against the process's trust list; cheap, so it runs on the request's thread."""

    def __init__(self, cfg: ProvenanceConfig, credentials: ContentCredentials):
        self.cfg = cfg
        self.credentials = credentials

    @classmethod
    def from_config(cls, cfg: ProvenanceConfig) -> VerifyPipeline:
        return cls(cfg, content_credentials())

    def inspect(self, path: str | Path | None) -> Inspection:
        """ValueError for no file, an empty one or one over the size limit; else what the file says."""
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
        verdict = self.credentials.verify(path)
        if verdict.generation is not None and verdict.state not in ("tampered", "invalid"):
            parameters, source = verdict.generation, "signed manifest"
        else:
            parameters, source = self._text_parameters(path), "PNG text (unsigned)"
            if parameters is None:
                source = "none"
        return Inspection(path.name, size, verdict, parameters, source)

    @staticmethod
    def _text_parameters(path: Path) -> dict | None:
        try:
            return read_parameters(path)
        except ValueError:
            return None

    def warm_up(self) -> None:
        """Sign and read a tiny PNG once: loads c2pa and builds its contexts before a visitor waits."""
        from PIL import Image

        self.inspect(save_png(Image.new("RGB", (8, 8), "white"), {"prompt": "warm-up"}))
