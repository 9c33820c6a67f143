"""Import torch so that, inside R, its matrix products keep torch's own BLAS (done once, when fineclass loads)."""

from __future__ import annotations

import os
import sys

from .errors import warn_user


def keep_torch_blas() -> str:
    """Import torch so that it keeps calling its own BLAS when the host process already exported one.

    R loads its BLAS into the process's global symbol scope (on Debian and Ubuntu the reference netlib BLAS),
    and the CPU builds of torch export the Fortran name ``sgemm_`` too: loaded normally inside R, libtorch's
    own matrix products resolve to R's copy and run 50 times slower (5.6 against 311 GFLOP/s measured here).
    Loaded with RTLD_DEEPBIND, libtorch looks up its own symbols first. This runs only when such a symbol is
    already in the process and torch is not imported yet; plain Python is left alone.

    Returns:
        What was done, in words (``fineclass.TORCH_BLAS``; ``ft_doctor()`` shows it).

    Example:
        >>> keep_torch_blas()  # in plain Python  # doctest: +SKIP
        'not needed (no BLAS in the host process)'
    """
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
        warn_user(
            "torch was imported before fineclass in a process that holds another BLAS (R's, for example): "
            "its matrix products may run many times slower. Restart the session and load fineclass before "
            "anything imports torch.",
            RuntimeWarning,
        )
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


TORCH_BLAS = keep_torch_blas()
