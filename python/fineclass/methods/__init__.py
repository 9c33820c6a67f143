"""Methods: how a backbone turns text into label probabilities, registered by name.

Each method is a :class:`~fineclass.methods.base.Method` that registers itself with
:func:`~fineclass.methods.base.register`; importing this package registers the built-in ones (``head``, a
classification head; ``generative``, the label as text; ``codebook``, a frozen encoder that reads the codebook, with
logistic regressions; ``description``, a fine-tuned encoder whose class vectors start at the codebook's
definitions; ``ensemble``, the last two averaged). The training loop and the scorer call a method only
through the Method interface.
"""

from __future__ import annotations

from . import codebook, description, ensemble, generative, head  # noqa: F401  (importing registers them)
from .base import Method, get_method, method_names, register

__all__ = ["Method", "get_method", "method_names", "register"]
