"""Methods: how a backbone turns text into label probabilities.

Every method offers the same small interface, used by the one training loop (train.py) and the one
inference engine (infer.py):

- ``build(model_path, spec, config, device) -> (module, tokenizer)``: a fresh trainable model;
- ``encode(tokenizer, texts, max_length) -> Encoded``: token ids per document and a truncation flag;
- ``collate(ids_list, device) -> batch``: padded tensors;
- ``loss(module, batch, targets) -> tensor`` and ``probabilities(module, batch) -> numpy (n, n_outputs)``;
- ``save(module, tokenizer, folder)`` and ``load(folder, manifest, spec, device, ...)``.

Probabilities share one layout for every method: single (n, K) summing to one per row; multi (n, K) per-class
probabilities; dimlevel (n, D * (L + 1)): for each dimension, P(absent), P(level 1), ..., P(level L).
"""
from __future__ import annotations

from ..errors import FineclassError

METHODS = ("head", "generative")


def get_method(name: str):
    if name == "head":
        from .head import HeadMethod
        return HeadMethod()
    if name == "generative":
        from .generative import GenerativeMethod
        return GenerativeMethod()
    raise FineclassError(f"`method` must be one of {', '.join(METHODS)}; got {name!r}.", "method")
