"""fineclass: fine-tune small open language models to code text, at scale, reproducibly.

The public API; everything else is internal.
"""
from __future__ import annotations

__version__ = "0.1.0"


def _keep_torch_blas() -> str:
    """Import torch so that it keeps calling its own BLAS when the host process already exported one.

    R loads its BLAS into the process's global symbol scope (on Debian and Ubuntu the reference netlib BLAS),
    and the CPU builds of torch export the Fortran name ``sgemm_`` too: loaded normally inside R, libtorch's
    own matrix products resolve to R's copy and run 50 times slower (5.6 against 311 GFLOP/s measured here).
    Loaded with RTLD_DEEPBIND, libtorch looks up its own symbols first. This runs only when such a symbol is
    already in the process and torch is not imported yet; plain Python is left alone. Returns what was done.
    """
    import os
    import sys
    if not hasattr(os, "RTLD_DEEPBIND"):
        return "not needed (no RTLD_DEEPBIND on this platform)"
    try:
        import ctypes
        host_blas = hasattr(ctypes.CDLL(None), "sgemm_")
    except OSError:
        return "not checked"
    if not host_blas:
        return "not needed (no BLAS in the host process)"
    if "torch" in sys.modules:
        import warnings
        warnings.warn("torch was imported before fineclass in a process that holds another BLAS (R's, for "
                      "example): its matrix products may run many times slower. Restart the session and load "
                      "fineclass before anything imports torch.", RuntimeWarning, stacklevel=3)
        return "torch was imported first: it may use the host's BLAS"
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed"
    finally:
        sys.setdlopenflags(flags)
    return "torch loaded with its own BLAS (RTLD_DEEPBIND), the host process has another"


TORCH_BLAS = _keep_torch_blas()

from .errors import FineclassError  # noqa: E402
from .labels import LabelSpec  # noqa: E402

_LAZY = {
    "TrainConfig": ".config",
    "Classifier": ".classifier",
    "train": ".training",
    "load": ".classifier",
    "classify": ".infer",
    "evaluate": ".evaluation",
    "learning_curve": ".curve",
    "zero_shot": ".methods.generative",
    "propose": ".crowd",
    "Endpoint": ".client",
    "to_long": ".classifier",
    "as_table": ".data",
    "read_output": ".infer",
    "merge_for_inference": ".methods.generative",
    "generate": ".methods.generative",
    "export": ".deployment",    # [gguf hook]
    "fidelity": ".deployment",  # [gguf hook]
}

__all__ = ["FineclassError", "LabelSpec", *_LAZY]


def __getattr__(name: str):
    # heavy modules (torch, transformers) load on first use, so `import fineclass` stays fast
    if name in _LAZY:
        import importlib
        module = importlib.import_module(_LAZY[name], __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fineclass' has no attribute {name!r}")
