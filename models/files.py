"""Files the models read: a file's sha256 (checkpoint identities, extractor profiles, graph caches) and
the folder of a model that a pip package ships (the offline Whisper and MiniLM weights)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pip_model_path(package: str, marker: str, how_to_get: str) -> Path:
    """``<package>/model``, the folder of weights an installed pip ``package`` ships, checked for its
    ``marker`` file. Not installed: FileNotFoundError with ``how_to_get``."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(how_to_get)
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / marker).is_file():
        raise FileNotFoundError(f"{package} is installed but {path} holds no {marker}")
    return path
