"""From codes to findings: valid estimates from model codes plus a human-coded random sample.

- :func:`estimate`: label shares (overall and by group) and linear or logistic regression coefficients whose
  outcome or covariate is a coded label, by prediction-powered inference (PPI, PPI++) or design-based supervised
  learning (DSL), beside the naive model-only and the human-only estimates.
- :func:`draw_sample`: draw the human sample (simple random, stratified, or by model uncertainty) with the
  inclusion probability of every drawn document, reproducibly.
- :func:`plan_budget`: labels and coder-hours to reach a target by hybrid review or by coding from scratch.
"""

from __future__ import annotations

from .budget import plan_budget
from .core import estimate
from .sampling import draw_sample

__all__ = ["estimate", "draw_sample", "plan_budget"]
