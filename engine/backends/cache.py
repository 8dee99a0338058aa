"""The backends' cache files: what keys them, and how they are written.

A cache file's name holds everything that changes its content, so a stale file is never reused:

* the exported fp32 graph: the model id (checkpoint hash, fusion rule, text weight) and
  ``export_version(model)``, a hash of the code that exports it (``models/export.py`` and the source of
  the model's own packages) and of the exporter's version;
* a converted graph (fp16, int8) and a TensorRT engine: the bytes of the graph it is made from
  (``file_digest``), and the version of the code that makes it.

Every cache file is written by ``atomic_write``: into a unique temporary file in the same folder, then
renamed over the final path. A reader sees the old file, the new file or none, never a partial one; two
processes building the same file at once do not overwrite each other's temporary file; a failed or
interrupted write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from models.files import file_sha256

DIGEST_CHARS = 16


def default_cache_dir(kind: str) -> Path:
    """The user's cache for ``kind`` ("onnx", "tensorrt"): $XDG_CACHE_HOME/cmarr-engine/<kind>, else
    ~/.cache/cmarr-engine/<kind>."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cmarr-engine" / kind


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (the first ``DIGEST_CHARS`` hex digits)."""
    return file_sha256(path)[:DIGEST_CHARS]


def text_digest(*parts: str | bytes) -> str:
    """sha256 of ``parts`` (each length-prefixed, so that ("ab", "c") and ("a", "bc") differ)."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:DIGEST_CHARS]


def sources_digest(files: Iterable[str | Path], *extra: str) -> str:
    """Hash of source files (name and bytes, in sorted order) and of ``extra`` strings (e.g. versions)."""
    parts: list[str | bytes] = []
    for f in sorted({Path(f).resolve() for f in files}):
        parts += [f.name, f.read_bytes()]
    return text_digest(*parts, *extra)


def code_digest(*functions: Callable[..., object]) -> str:
    """Hash of the source of ``functions`` (their bytecode where the source is not shipped)."""
    parts: list[str | bytes] = []
    for fn in functions:
        try:
            parts.append(inspect.getsource(fn))
        except (OSError, TypeError):
            code = fn.__code__
            parts += [code.co_code, repr(code.co_consts), repr(code.co_names)]
    return text_digest(*parts)


def _model_source_files(model: object) -> set[Path]:
    """The .py files of every package that defines a module class of ``model`` (the model's own class,
    its bases and its submodules' classes; torch's excluded): the code its forward runs, and siblings."""
    import torch

    files: set[Path] = set()
    for cls in {type(m) for m in model.modules()}:  # type: ignore[attr-defined]
        for klass in cls.__mro__:
            if not issubclass(klass, torch.nn.Module) or klass.__module__.split(".")[0] == "torch":
                continue
            src = getattr(sys.modules.get(klass.__module__), "__file__", None)
            if src:
                files.update(Path(src).parent.glob("*.py"))
    return files


def export_version(model: object) -> str:
    """The version of the code that exports ``model`` to ONNX: a hash of ``models/export.py``, the source
    of the model's packages (its forward is what gets traced) and the exporter's (torch's) version. An
    edit to any of them changes the version, so the graph is exported again."""
    import torch

    import models.export

    files = {Path(models.export.__file__), *_model_source_files(model)}
    return sources_digest(files, f"torch={torch.__version__}")


@functools.lru_cache(maxsize=1)
def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file (0o666 less the umask); mkstemp's files are 0o600."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` through ``write(tmp)``, which fills a temporary file in the same folder; the file
    is then flushed to disk and renamed over ``path``. On any failure (an exception in ``write``, an
    interrupt) the temporary file is removed and ``path`` is left as it was. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes | bytearray | memoryview) -> Path:
    """``path`` holds ``data`` once this returns, and nothing partial if it raises."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)
