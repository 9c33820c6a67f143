"""Writing files and folders atomically: a reader sees the old content or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import FineclassError


def fsync_dir(folder: str | Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows).

    Args:
        folder: the folder whose entries changed.
    """
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path, *, suffix: str = ".tmp", durable: bool = True) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; on success it replaces ``path``, on failure it is removed.

    Args:
        path: the file to write.
        suffix: the temporary file's suffix (its name is ``.<name>.<random><suffix>``).
        durable: fsync the file and its folder, so that the new content survives a crash of the machine.

    Yields:
        The temporary file's path; write it completely inside the ``with`` block.

    Example:
        >>> with atomic_file(tmp / "a.txt") as f:  # doctest: +SKIP
        ...     f.write_text("done")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=str(path.parent))
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_folder(path: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """A fresh temporary folder beside ``path`` to fill; on success it becomes ``path``, on failure it is removed.

    Args:
        path: the folder to write.
        replace: what happens when ``path`` exists at the end: ``True`` removes it first; ``False`` keeps it and
            drops the new folder (the first of several parallel writers wins).

    Yields:
        The temporary folder; fill it completely inside the ``with`` block.

    Example:
        >>> with atomic_folder(tmp / "model") as folder:  # doctest: +SKIP
        ...     (folder / "weights.safetensors").write_bytes(blob)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=str(path.parent)))
    try:
        yield tmp
        if path.exists():
            if not replace:
                return
            shutil.rmtree(path)
        try:
            os.replace(tmp, path)
        except OSError:
            if replace or not path.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_replaceable(path: str | Path, overwrite: bool, marker: str, what: str) -> None:
    """Refuse to write over a folder that is not empty, unless asked to and it holds what we wrote before.

    Args:
        path: the folder about to be written.
        overwrite: whether the user asked to replace it.
        marker: a file that only a folder we wrote holds (``fineclass.json`` for a saved model).
        what: what such a folder is, for the error (``"a fineclass model"``).

    Raises:
        FineclassError: naming ``path`` when the folder holds files and ``overwrite`` is false, or when it
            holds files that are not ``what``.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FineclassError(
                f"`path` {str(path)!r} exists and is not empty; pass overwrite=True or choose another folder.", "path"
            )
        if not (path / marker).exists():
            raise FineclassError(
                f"`path` {str(path)!r} holds files that are not {what}; refusing to overwrite them.", "path"
            )
