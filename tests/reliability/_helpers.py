"""Helpers for the reliability tests: fresh interpreters, a small disk, damaged files."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _env(extra: dict | None) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0")
    threads = os.environ.get("FINECLASS_TEST_THREADS", "1")
    if threads != "0":
        env["OMP_NUM_THREADS"] = threads  # torch's default thread count in the child
    env.update(extra or {})
    return env


def run_python(code: str, *, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a Python snippet in a fresh interpreter (the same venv), offline, and return the finished process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(env),
        cwd=str(REPO),
    )


def popen_python(code: str, log: Path, *, env: dict | None = None) -> subprocess.Popen:
    """Start a Python snippet in a fresh interpreter; its stdout and stderr go to ``log``."""
    out = open(log, "w")
    try:
        return subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(env),
            cwd=str(REPO),
        )
    finally:
        out.close()


# ---------------------------------------------------------------------- a small disk
def mount_tmpfs(folder: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` on ``folder``; returns None, or the reason it could not be mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    if sys.platform != "linux":
        return f"a tmpfs needs Linux (this is {sys.platform})"
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"mount could not run ({e})"
    if r.returncode != 0:
        return f"mounting a tmpfs is not permitted here ({(r.stderr or r.stdout).strip()})"
    return None


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def fill_disk(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` with one file, then shrink it so that about ``leave`` bytes stay free."""
    filler = folder / "filler.bin"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
        size = f.seek(0, os.SEEK_END)
    os.truncate(filler, max(size - leave, 0))
    return filler


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize
