"""The hybrid workflow: models propose labels, people accept or reject them, accepted labels train a model.

1. :func:`propose` asks several proposers - fitted fineclass classifiers and OpenAI-compatible chat
   endpoints (:class:`fineclass.client.Endpoint`) - for labels; one long table of proposals.
2. :func:`export_review` writes one review sheet (CSV or XLSX) per coder: one row per proposal, empty
   ``accept``, ``correction`` (the coder's own code for a rejected proposal), ``addition`` (codes no proposer
   gave) and ``started``/``finished`` columns, a share of the documents given to two coders for reliability.
3. :func:`import_review` reads the filled sheets back and validates them: unknown items, edited
   proposals or texts, missing, invalid or duplicate decisions, codes outside the label set and formulas are
   reported by sheet row, never guessed; with any problem nothing is imported.
4. :func:`acceptance_report`: acceptance, correction rates and seconds per decision per proposer, label and
   coder; additions per coder; agreement on the overlap.
5. :func:`assemble_training_set`: the accepted, corrected and added codes as a long training table (with
   their source and coders), with explicit rules for disagreement between coders and for conflicting codes.

Tables are long. For the dimension->level shape: ``id, dimension, level``; for single- and multi-label
tasks: ``id, label``. A decisions table adds ``proposer, coder, accepted`` (``"Y"``/``"N"``), the shape of
the paper's record of its own workflow.

The modules: ``proposals`` (1), ``review`` (2, 3), ``acceptance`` (4, 5), ``items`` (what they share).
"""

from __future__ import annotations

from .acceptance import CONFLICTS, RULES, acceptance_report, assemble_training_set
from .proposals import proposal_stats, propose
from .review import export_review, import_review

__all__ = [
    "propose",
    "proposal_stats",
    "export_review",
    "import_review",
    "acceptance_report",
    "assemble_training_set",
    "RULES",
    "CONFLICTS",
]
