"""Evaluation for social science: metrics, agreement with coders, bootstrap intervals, shares, curves.

- :func:`evaluate` scores predictions against human codes in any of the three label shapes
  (single, multi, dimension->level) and returns an :class:`Evaluation` of tidy tables, with
  percentile bootstrap intervals for every headline metric (documents, or clusters, resampled).
- :func:`paired_bootstrap` compares two models on the same documents.
- :func:`agreement` and :func:`model_vs_coders`: Cohen's kappa per pair of coders and
  Krippendorff's alpha overall (the ``krippendorff`` package does the arithmetic).
- :func:`label_shares`: the share of documents per label by group, with intervals.
- :func:`fit_curve` and :func:`labels_needed`: the arithmetic behind learning curves.

Inputs are anything :func:`fineclass.tables.read_table` accepts. Predictions and truth may be
document-level tables (``id, label`` / ``id, labels``, as ``Classifier.predict`` returns them) or
long tables (``id, label`` one row per label, or ``id, dimension, level[, confidence]``).

Rules worth knowing (they are also stated in the notes of each result):

- The scored documents are ``ids=`` when given, else the ids of ``truth``.
- A long table cannot hold a document without labels, so for multi and dimlevel a scored document
  without rows in a long ``predictions`` (or ``truth``) table counts as an empty set of labels.
- Labels outside the label set are kept as wrong predictions and reported in a warning.
- Duplicated cells in ``predictions`` (the same id, or the same id and dimension, with different
  values): the row with the highest ``confidence`` wins; without a confidence, or on a tie, the
  first row in table order wins. A warning gives the count. In ``truth`` such conflicts are errors.
- accD counts the cells of the label set's dimensions (the spec's, or the union of the dimensions in
  ``truth``); a predicted dimension outside that set is not a cell of accD, but it counts against
  Jaccard and the presence F1 scores.
- A metric that is undefined for the data is reported as null (never NaN) with a warning.

The modules: ``coded`` (reading coded tables), ``align`` (predictions and truth on the scored documents),
``stats`` (per-document statistics, the bootstrap engine), ``report`` (the Evaluation, ``evaluate``,
``paired_bootstrap``), ``coders`` (agreement), ``shares`` (label shares by group), ``curve_fit`` (learning-curve
arithmetic), ``common`` (what they share).
"""

from __future__ import annotations

from .coders import LEVELS_OF_MEASUREMENT, agreement, model_vs_coders
from .common import EvaluationWarning
from .curve_fit import CurveFit, fit_curve, labels_needed
from .report import Evaluation, evaluate, paired_bootstrap
from .shares import label_shares
from .stats import bootstrap_ci

__all__ = [
    "evaluate",
    "Evaluation",
    "paired_bootstrap",
    "bootstrap_ci",
    "agreement",
    "model_vs_coders",
    "label_shares",
    "fit_curve",
    "CurveFit",
    "labels_needed",
    "EvaluationWarning",
    "LEVELS_OF_MEASUREMENT",
]
