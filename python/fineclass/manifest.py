"""Run manifests: what a reviewer needs to replicate a result (versions, seeds, hashes, config, metrics)."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from ._fs import atomic_file

PACKAGES = ("fineclass", "torch", "transformers", "peft", "pyarrow", "numpy", "scikit-learn", "tokenizers")


def versions() -> dict:
    """The versions a result depends on: Python, the platform, and fineclass's main packages.

    Returns:
        ``{name: version or None}``.
    """
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hash_rows(*columns: Iterable[Any]) -> str:
    """A SHA-256 over columns of values, row by row: the same data gives the same hash.

    Args:
        *columns: sequences of values of equal length.

    Returns:
        The hex digest.
    """
    h = hashlib.sha256()
    for row in zip(*columns):
        for v in row:
            h.update(repr(v.tolist() if hasattr(v, "tolist") else v).encode("utf-8"))
            h.update(b"\x1f")
        h.update(b"\x1e")
    return h.hexdigest()


def hash_model_folder(path: str) -> str | None:
    """A fingerprint of a local model folder: names, sizes and the config files' contents.

    Args:
        path: the folder (a hub id gives None).

    Returns:
        The hex digest, or None when ``path`` is not a folder.
    """
    p = Path(path)
    if not p.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(p.rglob("*")):
        if f.is_file():
            h.update(f"{f.relative_to(p)}:{f.stat().st_size}".encode())
            if f.suffix == ".json" and f.stat().st_size < 5_000_000:
                h.update(f.read_bytes())
    return h.hexdigest()


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def weights_digest(path: str | Path) -> str | None:
    """A SHA-256 over the contents of a model folder's weight files, in a fixed order.

    Unlike :func:`hash_model_folder` (names and sizes only, for speed), this reads every byte of every weight file
    (``.safetensors``, ``.bin``, ``.pt``, ``.pth``, ``.gguf``), so two folders with the same layout but different
    weights never share a digest. ``save()`` records it in the manifest; ``load()`` and resumed runs compare it.

    Args:
        path: the model folder (a hub id or a missing path gives None).

    Returns:
        The hex digest, or None when ``path`` is not a folder or holds no weight file.
    """
    p = Path(path)
    if not p.is_dir():
        return None
    files = sorted(f for f in p.rglob("*") if f.is_file() and not f.is_symlink() and f.suffix in WEIGHT_SUFFIXES)
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(p).as_posix().encode("utf-8") + b"\x00")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\x1e")
    return h.hexdigest()


def now() -> str:
    """The time now, in UTC, as ISO 8601 to the second.

    Returns:
        e.g. ``"2026-01-31T12:00:00+00:00"``.
    """
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically: a reader sees the old file or the new one, never half of it.

    Args:
        path: the JSON file to write (its folder is created).
        obj: anything ``json.dump`` can write; other values are written with ``str()``.
    """
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
