"""The generative method of "Rethinking Scale": the label as text, scored instead of generated.

Training follows the paper: a causal language model reads a prompt (instruction, codebook, text; through the
chat template when the tokenizer has one) and learns to answer ``Answer = [5]`` (single-label), ``Answer = [3,
7]`` (multi-label) or a JSON dictionary ``{"happiness": "high"}`` (dimension->level); the loss covers the answer
tokens only. LoRA by default (the paper's r=64, alpha 16, learning rate 2e-4, warmup 0.03, max grad norm 0.3);
QLoRA's 4-bit NF4 base on CUDA.

Prediction does not generate. Every allowed continuation is scored in one forward pass per batch:

- the prompt part that all documents share (instruction and codebook) is run once and its keys and values are
  reused by every row: on CPU, for Llama-type decoders, once per call, with a shared-prefix attention that reads
  one copy of them (``_shared_prefix_attention``); elsewhere once per batch, as a cache expanded over the rows;
- each row then holds its own text, and after it a *tree* of all candidate continuations (common prefixes
  merged, e.g. ``Answer = [`` once), with a 4-D attention mask so that each candidate sees the prompt and its
  own earlier tokens only, and position ids that restart after the prompt for every candidate;
- a candidate's score is the sum of its tokens' log-probabilities up to the token that tells it apart from the
  other candidates of its group (from there on constrained decoding would force the rest; ``scoring="full"`` in
  ``config.extra`` scores whole answers instead); a softmax within each group gives the probabilities.
  Single-label: one group over the classes. Multi-label: one group per class (``name: no`` / ``name: yes``).
  Dimension->level: one group per dimension (``dimension: absent`` / ``dimension: low`` ...). For these two
  shapes training adds the per-class blocks (each attending to the prompt only) next to the paper-form answer,
  so the model learns both: the paper's answer for free generation, and a distribution per class for scoring.
  ``absent_blocks=k`` in ``config.extra`` trains on the present classes plus k absent ones per document,
  reweighted (for long codebooks on small budgets).

Free generation (``generate()``) remains, to match the paper: answers are parsed strictly, and unparseable
answers or labels outside the label set are counted and reported, never mapped to a nearby label.

Also here: ``merge_for_inference()`` (LoRA merged, optionally bf16 weights) and ``export_merged()``
(safetensors for vLLM or llama.cpp). Prompting without training (``zero_shot()``) is ``fineclass.zeroshot``.

The modules: ``plan`` (the prompt pieces and the candidate tree, tokenised once), ``forward`` (one forward pass
over every candidate, the shared-prefix attention), ``loading`` (causal LMs and tokenizers), ``method`` (the
Method), ``generation`` (free generation), ``precision`` and ``deploy`` (faster inference, export).
"""

from __future__ import annotations

from .deploy import export_merged, merge_for_inference
from .forward import forward_hidden
from .generation import generate, generation_summary, generative_plan
from .method import GEN_DEFAULTS, GenerativeMethod
from .plan import Plan
from .precision import LowPrecisionLinear

__all__ = [
    "GenerativeMethod",
    "Plan",
    "GEN_DEFAULTS",
    "generate",
    "generation_summary",
    "generative_plan",
    "merge_for_inference",
    "export_merged",
    "LowPrecisionLinear",
    "forward_hidden",
]


def __getattr__(name: str):
    """The old path of zero-shot, ``fineclass.methods.generative.zero_shot_classifier``, still works.

    Zero-shot lives in ``fineclass.zeroshot`` (layer 6: it makes a Classifier). The R package's tests and older
    scripts reach it here; it is imported on first use, so this package does not depend on it
    (tests/test_layers.py lists this one lazy edge in ``COMPAT``).
    """
    if name in ("zero_shot", "zero_shot_classifier"):
        import importlib

        return getattr(importlib.import_module("fineclass.zeroshot"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
