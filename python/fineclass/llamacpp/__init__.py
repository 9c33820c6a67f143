"""The paper's deployment path: generative classifiers as GGUF files, scored by llama.cpp.

- ``export_gguf`` (``fineclass.export(clf, path, format="gguf", quant=...)``): merge, convert with llama.cpp's own
  converter, quantize with its ``llama_model_quantize``, write a JSON sidecar per file and check fidelity;
- ``load_gguf`` (``fineclass.load("x.gguf")``; the engine ``classify(..., engine="llamacpp")``): a Classifier
  that scores with llama.cpp by the same constrained label scoring as the torch path (every allowed answer's
  log-probability, the shared prompt head evaluated once), so the same prediction table comes out;
  ``fineclass.generate`` generates freely with it;
- ``zero_shot_gguf`` (``zero_shot_classifier(model, engine="llamacpp")``): any GGUF model with a codebook;
- ``fidelity`` (``fineclass.fidelity``): agreement and metric change between the torch model and each export.

llama-cpp-python is an optional dependency (``pip install fineclass[gguf]``; ``scripts/setup.sh --with-gguf``
builds it once and caches the wheel); see ``tools`` for where the converter comes from.
"""

from __future__ import annotations

from .classifier import GGUFClassifier, load_gguf, zero_shot_gguf
from .export import QUANTS, export_gguf
from .fidelity import FidelityReport, fidelity

__all__ = ["GGUFClassifier", "load_gguf", "zero_shot_gguf", "export_gguf", "QUANTS", "fidelity", "FidelityReport"]
