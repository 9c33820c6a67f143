"""fineclass: fine-tune small open language models to code text, at scale, reproducibly.

The public API; everything else is internal.
"""

from __future__ import annotations

# first: inside R, torch must be loaded with its own BLAS before anything else imports it (see _blas.py)
from ._blas import TORCH_BLAS  # noqa: F401  (fineclass.TORCH_BLAS: what was done, for doctor)
from .errors import FineclassError
from .labels import LabelSpec

__version__ = "0.1.0"

_LAZY = {
    "TrainConfig": ".config",
    "Classifier": ".classifier",
    "train": ".classifier",
    "load": ".deployment",  # classifier.load, and GGUF exports (run by llama.cpp)
    "classify": ".infer",
    "evaluate": ".evaluation",
    "learning_curve": ".curve",
    "zero_shot": ".zeroshot",
    "propose": ".crowd",
    "Endpoint": ".client",
    "to_long": ".classifier",
    "as_table": ".tables",
    "read_output": ".ledger",
    "merge_for_inference": ".methods.generative",
    "generate": ".methods.generative",
    "zero_shot_classifier": ".zeroshot",
    "read_table": ".tables",
    "read_codebook": ".labels",
    "paired_bootstrap": ".evaluation",
    "export_review": ".crowd",
    "import_review": ".crowd",
    "acceptance_report": ".crowd",
    "assemble_training_set": ".crowd",
    "estimate": ".estimation",
    "draw_sample": ".estimation",
    "plan_budget": ".estimation",
    "export": ".deployment",
    "fidelity": ".deployment",
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
