"""Writing files and folders atomically: a reader sees the old content or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from .errors import FineclassError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask (read without changing it where ``/proc`` allows, else set and restored at once).

    Returns:
        The umask, e.g. ``0o022``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        old = os.umask(0o022)
        os.umask(old)
    return old


def follow_umask(path: str | Path, folder: bool = False) -> None:
    """Give a file or folder made by ``tempfile`` (0600 / 0700) the mode a plain ``open``/``mkdir`` would give it.

    Args:
        path: the file or folder.
        folder: whether it is a folder (0777 before the umask) rather than a file (0666).
    """
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


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
    follow_umask(tmp)
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
    follow_umask(tmp, folder=True)
    try:
        yield tmp
        for entry in tmp.rglob("*"):  # some writers (safetensors via transformers) create 0600 files
            if not entry.is_symlink():
                follow_umask(entry, folder=entry.is_dir())
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


def check_replaceable(path: str | Path, overwrite: bool, marker: str, what: str, argument: str = "path") -> None:
    """Refuse to write over a folder that is not empty, unless asked to and it holds what we wrote before.

    Args:
        path: the folder about to be written.
        overwrite: whether the user asked to replace it.
        marker: a file that only a folder we wrote holds (``fineclass.json`` for a saved model).
        what: what such a folder is, for the error (``"a fineclass model"``).
        argument: the argument named in the error.

    Raises:
        FineclassError: naming ``argument`` when the folder holds files and ``overwrite`` is false, or when it
            holds files that are not ``what``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FineclassError(f"`{argument}` {str(path)!r} is a file, not a folder; choose another folder.", argument)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FineclassError(
                f"`{argument}` {str(path)!r} exists and is not empty; pass overwrite=True (--overwrite) or choose "
                f"another folder.",
                argument,
            )
        if not (path / marker).exists():
            raise FineclassError(
                f"`{argument}` {str(path)!r} holds files that are not {what}; refusing to overwrite them.", argument
            )


def check_can_write_folder(path: str | Path, argument: str = "path") -> None:
    """Make sure a folder can be written at ``path`` (before hours of work that end in writing it).

    The nearest existing folder above ``path`` must be a folder in which a folder can be created (tried, then
    removed); nothing is left behind.

    Args:
        path: the folder that will be written.
        argument: the argument named in the error.

    Raises:
        FineclassError: naming ``argument`` when a part of ``path`` is a file, or the folder cannot be created.
    """
    path = Path(path).absolute()
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FineclassError(
            f"`{argument}` {str(path)!r} cannot be created: {str(existing)!r} is a file, not a folder.", argument
        )
    try:
        shutil.rmtree(tempfile.mkdtemp(prefix=".fineclass-write-check.", dir=str(existing)))
    except OSError as e:
        raise FineclassError(
            f"`{argument}` {str(path)!r} cannot be written ({e.strerror or e} in {str(existing)!r}); choose a "
            f"folder you can write to.",
            argument,
        ) from None


SMALL_FILE_LIMIT = 16 * 1024 * 1024  # labels.json, fineclass.json: far more than any real one needs


def check_folder_files(folder: str | Path, argument: str = "path") -> None:
    """Refuse a folder (read from an untrusted source) that holds anything but regular files and folders inside it.

    A FIFO would hang a reader, a device (``/dev/zero``) would fill memory, and a symbolic link that leads out of
    the folder would read files the folder's author chose on this machine. Links that stay inside the folder and
    end at a regular file or folder are accepted.

    Args:
        folder: the folder to check (every level below it).
        argument: the argument named in the error.

    Raises:
        FineclassError: naming ``argument`` and the first entry that is not a regular file or folder, or leads
            outside ``folder``.
    """
    root = Path(folder).resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            entry = Path(dirpath) / name
            rel = entry.relative_to(root)
            st = os.lstat(entry)
            if stat.S_ISLNK(st.st_mode):
                target = entry.resolve()
                if target != root and root not in target.parents:
                    raise FineclassError(
                        f"`{argument}` {str(folder)!r}: {str(rel)!r} is a symbolic link to {str(target)!r}, outside "
                        f"the folder; a model folder must hold its own files. Copy the real file in its place.",
                        argument,
                    )
                st = os.stat(entry)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                raise FineclassError(
                    f"`{argument}` {str(folder)!r}: {str(rel)!r} is not a regular file (a pipe, device or socket); "
                    f"remove it. A model folder holds regular files only.",
                    argument,
                )


def read_small_file(path: str | Path, limit: int = SMALL_FILE_LIMIT, argument: str = "path") -> bytes:
    """Read a small file (a manifest, a label list) that must be a regular file of at most ``limit`` bytes.

    It is opened without blocking and without following a final symbolic link, and its type and size are
    checked on the open file, so a FIFO or a device put in its place is refused, not read.

    Args:
        path: the file.
        limit: the largest size accepted, in bytes.
        argument: the argument named in the error.

    Returns:
        The file's bytes.

    Raises:
        FineclassError: naming ``argument`` when the file is not a regular file or is larger than ``limit``.
        OSError: when it cannot be opened or read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(str(path), flags)
    except OSError as e:
        if os.path.islink(path):
            raise FineclassError(
                f"`{argument}`: {str(path)!r} is a symbolic link; put the real file there.", argument
            ) from None
        raise e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise FineclassError(
                f"`{argument}`: {str(path)!r} is not a regular file; put the real file there.", argument
            )
        if st.st_size > limit:
            raise FineclassError(
                f"`{argument}`: {str(path)!r} holds {st.st_size} bytes, more than the {limit} such a file may hold; "
                f"it is not a file fineclass wrote.",
                argument,
            )
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FineclassError(f"`{argument}`: {str(path)!r} grew beyond {limit} bytes while being read.", argument)
    return data
