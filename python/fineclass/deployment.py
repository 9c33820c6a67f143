"""Deployment: export a generative classifier, load it back, and check that the export labels as the model did.

``fineclass.export`` writes a generative classifier for other engines, ``fineclass.load`` reads a saved model or
a GGUF export, ``fineclass.fidelity`` checks that an exported model labels documents as the model it came from
does.

Export formats: ``"safetensors"`` (the adapter merged into the weights, with the tokenizer and the prompt, for
vLLM or llama.cpp's converter) and ``"gguf"`` (converted and quantized for llama.cpp, with a sidecar that lets
``fineclass.load()`` score the file, and a fidelity check; see ``fineclass.llamacpp``). Command line:
``fineclass export MODEL OUT --format gguf --quant q4_k_m`` and ``fineclass fidelity MODEL --against OUT --data
FILE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .classifier import load  # reads GGUF exports too: fineclass.llamacpp, imported below, registers them
from .errors import FineclassError
from .llamacpp.export import export_gguf
from .llamacpp.fidelity import FidelityReport, fidelity
from .methods.generative import export_merged

__all__ = ["export", "load", "fidelity", "FidelityReport", "FORMATS"]

FORMATS = ("gguf", "safetensors")


def export(
    classifier,
    path: str | Path,
    format: str = "safetensors",
    *,
    quant: Any = None,
    data: Any = "validation",
    overwrite: bool = False,
    **options,
) -> str:
    """Export a generative classifier to ``path`` (a folder).

    Args:
        classifier: a generative Classifier (fitted, loaded or zero-shot).
        path: the output folder; it appears only once complete.
        format: ``"safetensors"`` (merged weights; the default, as the ``export`` command always wrote) or
            ``"gguf"`` (llama.cpp, quantized).
        quant: for GGUF, one quantization or several (``"q4_k_m"``, ``["f16", "q8_0", "q4_k_m"]``); default
            ``"q4_k_m"``, the paper's.
        data: for GGUF, the fidelity check's documents: ``"validation"`` (the split train() kept), a table or
            file, or None.
        overwrite: replace an earlier export in ``path``.
        **options: for GGUF, ``text``, ``label``, ``id`` (columns of ``data``), ``name``, ``threads``,
            ``bootstrap`` (see ``fineclass.llamacpp.export.export_gguf``).

    Returns:
        The folder, as a string.

    Raises:
        FineclassError: an unknown ``format`` or ``quant``, a model that cannot be exported in that format, or
            an occupied ``path``.

    Example:
        >>> fineclass.export(clf, "deploy", format="gguf", quant=["q8_0", "q4_k_m"])  # doctest: +SKIP
        'deploy'
    """
    if format == "gguf":
        return export_gguf(
            classifier, path, "q4_k_m" if quant is None else quant, data=data, overwrite=overwrite, **options
        )
    if format == "safetensors":
        extra = sorted(options) + (["quant"] if quant is not None else [])
        if extra:
            raise FineclassError(
                f"format='safetensors' takes no {', '.join(extra)}; those are for format='gguf'.", extra[0]
            )
        return export_merged(classifier, path, overwrite=overwrite)
    raise FineclassError(f"`format` must be one of {', '.join(FORMATS)}; got {format!r}.", "format")
