"""Finding llama.cpp: the llama-cpp-python bindings, and the converter (``convert_hf_to_gguf.py``) that matches them.

The PyPI wheel of llama-cpp-python carries the compiled library but not llama.cpp's Python converter, its
``conversion`` package or its ``gguf-py``. They are in the source package (``vendor/llama.cpp/``), which setup
downloads once from PyPI anyway to build the wheel. ``install_converter()`` copies those three pieces out of it
into ``<venv>/share/fineclass/llama.cpp-<version>/``, next to the bindings they belong to; fineclass runs the
converter from there, in a subprocess with that ``gguf-py`` first on its path (the ``gguf`` package on PyPI can
be older than what the converter needs). Nothing is downloaded at run time.

Command line (``install-converter`` is run by ``scripts/setup.sh --with-gguf``)::

    fineclass gguf install-converter [--sdist llama_cpp_python-X.tar.gz] [--target DIR]
    fineclass gguf where
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

from .._fs import atomic_folder
from ..errors import FineclassError

CONVERTER = "convert_hf_to_gguf.py"
_PIECES = (CONVERTER, "conversion", "gguf-py", "LICENSE")
SETUP_HINT = "run scripts/setup.sh --with-gguf (it builds llama-cpp-python once and caches the wheel)"


def llama_cpp_version() -> str | None:
    """The installed llama-cpp-python version, or None (read from its metadata: nothing is imported).

    Returns:
        The version string, or None.
    """
    from importlib import metadata

    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return None


def bindings(argument: str = "engine"):
    """The low-level llama.cpp bindings (``llama_cpp.llama_cpp``), initialised once.

    llama.cpp's own console log is silenced; a FineclassError names the fix when llama-cpp-python is missing.

    Args:
        argument: the argument to name in errors.

    Returns:
        The ``llama_cpp.llama_cpp`` module.

    Raises:
        FineclassError: naming ``argument`` when llama-cpp-python is not installed.
    """
    try:
        import llama_cpp.llama_cpp as lib
    except ImportError as e:
        raise FineclassError(
            f"GGUF models need llama-cpp-python, which is not installed ({e}); {SETUP_HINT}, or "
            f"pip install llama-cpp-python.",
            argument,
        ) from None
    _init(lib)
    return lib


_LOG_CALLBACK = None


def _init(lib) -> None:
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return
    import ctypes

    @lib.llama_log_callback
    def quiet(level, text, user_data):  # llama.cpp logs every load to stderr; errors reach us as return codes
        return None

    _LOG_CALLBACK = quiet  # kept alive: llama.cpp holds the pointer
    lib.llama_log_set(quiet, ctypes.c_void_p(0))
    lib.llama_backend_init()


def _converter_candidates(version: str | None = None) -> list[Path]:
    """Where the converter is looked for.

    In order: $FINECLASS_LLAMACPP_CONVERTER, the venv's share folder, the fineclass cache.
    """
    from ..models import cache_dir

    version = version or llama_cpp_version() or "unknown"
    out = []
    env = os.environ.get("FINECLASS_LLAMACPP_CONVERTER")
    if env:
        out.append(Path(env).expanduser())
    out.append(Path(sys.prefix) / "share" / "fineclass" / f"llama.cpp-{version}")
    out.append(cache_dir() / f"llama.cpp-{version}")
    return out


def converter_dir(argument: str = "format") -> Path:
    """The folder holding ``convert_hf_to_gguf.py``, ``conversion/`` and ``gguf-py/`` for the installed bindings.

    Args:
        argument: the argument to name in errors.

    Returns:
        The folder.

    Raises:
        FineclassError: naming ``argument`` when llama-cpp-python or its converter is missing (with the fix).
    """
    version = llama_cpp_version()
    if version is None:
        raise FineclassError(f"GGUF export needs llama-cpp-python, which is not installed; {SETUP_HINT}.", argument)
    places = _converter_candidates(version)
    for p in places:
        if (p / CONVERTER).is_file() and (p / "conversion").is_dir() and (p / "gguf-py").is_dir():
            return p
    raise FineclassError(
        f"GGUF export needs llama.cpp's converter for llama-cpp-python {version}, found in none of "
        f"{', '.join(str(p) for p in places)}. It ships in llama-cpp-python's source package: {SETUP_HINT}, or run "
        f"`fineclass gguf install-converter` (pip downloads that source package once).",
        argument,
    )


def gguf_status() -> str:
    """One line for ``fineclass doctor``: whether GGUF export and the llama.cpp engine are available.

    Returns:
        The line.
    """
    version = llama_cpp_version()
    if version is None:
        return f"not installed (optional; {SETUP_HINT})"
    try:
        where = converter_dir()
    except FineclassError:
        return f"llama-cpp-python {version}; converter missing (export unavailable; {SETUP_HINT})"
    return f"llama-cpp-python {version}; converter in {where}"


@lru_cache(maxsize=4)
def convertible_architectures(folder: str) -> frozenset:
    """The Hugging Face architectures (``config.json`` ``architectures``) the converter in ``folder`` handles.

    Read from its ``conversion/__init__.py`` table without importing it (that would import torch here).
    """
    source = (Path(folder) / "conversion" / "__init__.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        )
        if isinstance(target, ast.Name) and target.id == "TEXT_MODEL_MAP" and node.value is not None:
            return frozenset(ast.literal_eval(node.value))
    return frozenset()


def python_child_env(env: dict | None = None, libdir: str | None = None) -> dict:
    """The environment for a child process of this Python (``sys.executable``) that loads its own libpython.

    A Python built with a shared libpython finds it through its run path, but ``LD_LIBRARY_PATH`` comes first:
    an R session puts its own and the system's library folders there (``/usr/lib/R/lib:/usr/lib/<arch>`` on
    Debian) and exports it, so a Python started from R (reticulate, then a subprocess) can load the system's
    libpython of the same version instead, and its extension modules fail (``_ssl``: an undefined symbol).
    When ``LD_LIBRARY_PATH`` is set and this Python's libpython is shared, its folder is put first.

    Args:
        env: the environment to start from (default: ``os.environ``).
        libdir: the folder of this Python's shared libpython (default: read from ``sysconfig``; None when it
            is not shared).

    Returns:
        A new dict.

    Example:
        >>> python_child_env({"LD_LIBRARY_PATH": "/usr/lib/R/lib"}, libdir="/opt/py/lib")["LD_LIBRARY_PATH"]
        '/opt/py/lib:/usr/lib/R/lib'
    """
    import sysconfig

    out = dict(os.environ if env is None else env)
    if libdir is None and sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libdir = sysconfig.get_config_var("LIBDIR")
    paths = [p for p in out.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if libdir and paths:
        out["LD_LIBRARY_PATH"] = os.pathsep.join([libdir] + [p for p in paths if p != libdir])
    return out


def _download_sdist(version: str, into: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-binary",
        ":all:",
        "--no-deps",
        "--no-build-isolation",
        f"llama-cpp-python=={version}",
        "-d",
        str(into),
    ]
    subprocess.run(cmd, check=True)
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if not found:
        raise FineclassError(f"pip download gave no source package of llama-cpp-python {version} in {into}.", "sdist")
    return found[0]


def install_converter(sdist: str | Path | None = None, target: str | Path | None = None) -> Path:
    """Copy the converter, its ``conversion`` package and ``gguf-py`` out of llama-cpp-python's source package.

    Args:
        sdist: the source package (``llama_cpp_python-X.tar.gz``) of the installed version; None downloads it
            with ``pip download`` (a package registry, at setup time).
        target: where to put them; default ``<venv>/share/fineclass/llama.cpp-<version>``.

    Returns:
        The folder, which ``converter_dir()`` finds from then on.

    Raises:
        FineclassError: llama-cpp-python is not installed, or the source package is of another version or lacks
            the converter.

    Example:
        >>> install_converter("/work/wheels/llama_cpp_python-0.3.36.tar.gz")  # doctest: +SKIP
    """
    version = llama_cpp_version()
    if version is None:
        raise FineclassError(f"install llama-cpp-python first; {SETUP_HINT}.", "sdist")
    target = Path(target) if target else _converter_candidates(version)[-2]
    with tempfile.TemporaryDirectory() as tmpdir:
        if sdist is None:
            sdist = _download_sdist(version, Path(tmpdir))
        sdist = Path(sdist)
        if not sdist.is_file():
            raise FineclassError(f"`sdist` {str(sdist)!r} is not a file.", "sdist")
        with tarfile.open(sdist) as tar:
            root = tar.getnames()[0].split("/")[0]
            if root != f"llama_cpp_python-{version}":
                raise FineclassError(
                    f"`sdist` {sdist.name} is not the source package of the installed "
                    f"llama-cpp-python {version}; the converter must match the library.",
                    "sdist",
                )
            prefix = f"{root}/vendor/llama.cpp/"
            members = [
                m
                for m in tar.getmembers()
                if m.name.startswith(prefix)
                and m.name[len(prefix) :].split("/")[0] in _PIECES
                and (m.isfile() or m.isdir())
            ]
            if not any(m.name == prefix + CONVERTER for m in members):
                raise FineclassError(f"`sdist` {sdist.name} holds no vendor/llama.cpp/{CONVERTER}.", "sdist")
            with atomic_folder(target) as staging:
                for m in members:
                    m.name = m.name[len(prefix) :]
                tar.extractall(staging, members=members, filter="data")
                (staging / "VERSION").write_text(version + "\n", encoding="utf-8")
    convertible_architectures.cache_clear()
    return target
