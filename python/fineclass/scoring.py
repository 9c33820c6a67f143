"""Scoring: documents in, label probabilities and prediction columns out.

Documents are tokenised a few thousand at a time, sorted by token length and cut into batches by a token budget
(rows x longest row), so that little compute goes to padding; results go back into input order. An
out-of-memory error halves the budget and plans the remaining batches again instead of ending the run.
:func:`decode` turns probabilities into the prediction columns of the three label shapes.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ._checks import whole_number
from .errors import FineclassError, warn_user
from .labels import LabelSpec
from .methods import Method
from .tables import ID, check_text, read_table, with_id

ENCODE_ROWS = 2_048


def default_batch_tokens(device: torch.device) -> int:
    """Tokens per batch (rows x longest row) when the user gives none.

    Args:
        device: where the model runs.

    Returns:
        65,536 on CUDA, 16,384 on Apple GPUs, 8,192 on CPUs (bigger does not help there).
    """
    if device.type == "cuda":
        return 65_536
    if device.type == "mps":
        return 16_384
    return 8_192


def check_batch_tokens(batch_tokens: Any) -> int | None:
    """The ``batch_tokens`` argument, checked.

    Args:
        batch_tokens: tokens per batch, or None for the device's default.

    Returns:
        An int, or None.

    Raises:
        FineclassError: naming ``batch_tokens`` when it is not a positive whole number.
    """
    return whole_number(batch_tokens, "batch_tokens", allow_none=True, hint=" (tokens per batch, e.g. 8192)")


@dataclass(frozen=True)
class PredictOptions:
    """How one prediction call reads its documents and what it returns.

    The public function (``Classifier.predict``, ``fineclass.classify``) builds it once from its keywords, which
    checks them, and hands it to the scorer or the engine.

    Attributes:
        text: the text column.
        id: the id column (None: a column named ``id``, else the row number).
        batch_tokens: tokens per batch (rows x longest row); None for the device's default.
        probabilities: add one probability column per output.
        progress: show a progress bar.
    """

    text: str = "text"
    id: str | None = None
    batch_tokens: int | None = None
    probabilities: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_tokens", check_batch_tokens(self.batch_tokens))


def token_budget_batches(lengths: np.ndarray, batch_tokens: int, max_rows: int = 1024) -> list[np.ndarray]:
    """Indices sorted by length (longest first), cut so that rows x longest row stays within the budget.

    Args:
        lengths: tokens per document.
        batch_tokens: the budget.
        max_rows: the most rows of one batch.

    Returns:
        One array of document indices per batch.

    Example:
        >>> [b.tolist() for b in token_budget_batches(np.array([5, 50, 10]), 60)]
        [[1], [2, 0]]
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(max_rows, batch_tokens // longest))
        batches.append(order[start : start + size])
        start += size
    return batches


def is_oom(error: BaseException) -> bool:
    """Whether an exception means the device ran out of memory.

    Args:
        error: the exception.

    Returns:
        True for MemoryError, torch's OutOfMemoryError and allocation failures by message.
    """
    if isinstance(error, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(error, oom):
        return True
    msg = str(error).lower()
    return "out of memory" in msg or "can't allocate memory" in msg or "failed to allocate" in msg


def _free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def progress_bar(total: int | None, enabled: bool, initial: int = 0, desc: str = "classifying"):
    """A progress bar on stderr counting documents, or None.

    Args:
        total: the documents to do (None: unknown).
        enabled: whether to show one.
        initial: the documents already done.
        desc: its label.

    Returns:
        A tqdm bar, or None when not ``enabled``.
    """
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="doc", desc=desc, dynamic_ncols=True, file=sys.stderr, smoothing=0.1)


def probability_names(spec: LabelSpec) -> list[str]:
    """The probability columns of a prediction table, in the order of the model's outputs.

    Args:
        spec: the label set.

    Returns:
        ``p_<class>`` per class, or ``p_<dimension>=<level>`` (with ``absent``) for the dimension->level shape.
    """
    if spec.kind == "dimlevel":
        return [f"p_{d}={lv}" for d in spec.classes for lv in ["absent", *spec.levels]]
    return [f"p_{c}" for c in spec.classes]


def presence_levels(probs: np.ndarray, spec: LabelSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """The presence probability of each class, and the most probable level of each dimension.

    Args:
        probs: (documents, ``spec.n_outputs``) in the layout of ``methods.Method`` (multi or dimlevel).
        spec: the label set.

    Returns:
        ``(presence, level)``: presence (documents, classes); level (documents, dimensions), the index of the most
        probable level (0 = the first level) for dimlevel, None for multi.
    """
    if spec.kind == "multi":
        return probs, None
    d, l1 = len(spec.classes), len(spec.levels) + 1
    p = probs.reshape(probs.shape[0], d, l1)
    return 1.0 - p[:, :, 0], p[:, :, 1:].argmax(axis=2)


def class_thresholds(thresholds: dict, spec: LabelSpec) -> np.ndarray:
    """One presence threshold per class: the class's own (``per_class``) or the shared one (``presence``).

    Args:
        thresholds: a fitted model's thresholds (see :func:`choose`).
        spec: the label set.

    Returns:
        An array (classes,).
    """
    t = float(thresholds.get("presence", 0.5))
    own = thresholds.get("per_class") or {}
    return np.array([float(own.get(c, t)) for c in spec.classes])


def choose(presence: np.ndarray, thresholds: dict, spec: LabelSpec, scores: np.ndarray | None = None) -> np.ndarray:
    """Which classes each document gets, under a fitted model's decision rule.

    The rule is ``thresholds``: ``{"presence": t}`` (one threshold, the form of older saved models), with
    optionally ``"per_class": {class: t}`` (a class's own threshold), ``"at_least_one": true`` (a document with no
    class above its threshold gets its most probable one) or ``"decoder": "expected_jaccard"`` with ``"gamma"``
    (each document gets the k most probable classes for the k that maximises its expected Jaccard
    ``sum_S r / (k + gamma * sum_all p - sum_S r)``).

    Args:
        presence: (documents, classes) presence probabilities.
        thresholds: the decision rule.
        spec: the label set (its ``max_labels`` caps the classes per document).
        scores: (documents, classes) the probability of each class's predicted answer (for dimlevel: presence x
            the probability of the best level given presence), used by the expected-Jaccard rule; None: presence.

    Returns:
        A bool array (documents, classes).
    """
    n, k = presence.shape
    if thresholds.get("decoder") == "expected_jaccard":
        r = presence if scores is None else scores
        order = np.argsort(-r, axis=1, kind="stable")
        cum = np.cumsum(np.take_along_axis(r, order, axis=1), axis=1)
        size = np.arange(1, k + 1)[None, :]
        expected = cum / (size + float(thresholds.get("gamma", 1.0)) * presence.sum(1, keepdims=True) - cum)
        best = expected.argmax(axis=1) + 1
        chosen = np.zeros((n, k), dtype=bool)
        np.put_along_axis(chosen, order, np.arange(k)[None, :] < best[:, None], axis=1)
    else:
        chosen = presence >= class_thresholds(thresholds, spec)[None, :]
        if thresholds.get("at_least_one") and n:
            empty = np.flatnonzero(~chosen.any(axis=1))
            chosen[empty, presence[empty].argmax(axis=1)] = True
    if spec.kind == "multi" and spec.max_labels:
        top = np.argsort(-presence, axis=1, kind="stable")[:, : spec.max_labels]
        keep = np.zeros_like(chosen)
        np.put_along_axis(keep, top, True, axis=1)
        chosen &= keep
    return chosen


def answer_scores(probs: np.ndarray, spec: LabelSpec) -> np.ndarray:
    """The probability of each class's predicted answer: presence (multi), P(the best level) (dimlevel).

    Args:
        probs: (documents, ``spec.n_outputs``).
        spec: the label set (multi or dimlevel).

    Returns:
        An array (documents, classes).
    """
    if spec.kind == "multi":
        return probs
    d, l1 = len(spec.classes), len(spec.levels) + 1
    return probs.reshape(probs.shape[0], d, l1)[:, :, 1:].max(axis=2)


def decode(probs: np.ndarray, spec: LabelSpec, thresholds: dict) -> dict:
    """Probabilities -> prediction columns for one of the three label shapes.

    Args:
        probs: (documents, ``spec.n_outputs``) in the layout of ``methods.Method``.
        spec: the label set.
        thresholds: the decision rule of the multi-label and dimension->level shapes (see :func:`choose`;
            ``{"presence": 0.5}`` when empty).

    Returns:
        pyarrow arrays by column: ``label``, ``confidence`` (single); ``labels``, ``n_labels`` (multi: a list of
        classes; dimlevel: a list of {dimension, level, confidence}).
    """
    n = probs.shape[0]
    if spec.kind == "single":
        idx = probs.argmax(axis=1)
        labels = [spec.decode_value(spec.classes[i]) for i in idx]
        return {
            "label": pa.array(labels, type=spec.arrow_type()),
            "confidence": pa.array(probs[np.arange(n), idx].astype(np.float64)),
        }
    presence, level = presence_levels(probs, spec)
    chosen = choose(presence, thresholds, spec, answer_scores(probs, spec))
    if spec.kind == "multi":
        labels = [[spec.decode_value(spec.classes[j]) for j in np.flatnonzero(row)] for row in chosen]
        return {
            "labels": pa.array(labels, type=pa.list_(spec.arrow_type())),
            "n_labels": pa.array(chosen.sum(axis=1).astype(np.int64)),
        }
    l1 = len(spec.levels) + 1
    p = probs.reshape(n, len(spec.classes), l1)
    rows = []
    for i in range(n):
        rows.append(
            [
                {
                    "dimension": spec.classes[j],
                    "level": spec.levels[level[i, j]],
                    "confidence": float(p[i, j, 1 + level[i, j]]),
                }
                for j in np.flatnonzero(chosen[i])
            ]
        )
    typ = pa.list_(pa.struct([("dimension", pa.string()), ("level", pa.string()), ("confidence", pa.float64())]))
    return {"labels": pa.array(rows, type=typ), "n_labels": pa.array(chosen.sum(axis=1).astype(np.int64))}


@dataclass
class Scorer:
    """The parts of a fitted model that scoring needs, and the scoring itself.

    ``Classifier.scorer()`` makes one from a fitted classifier; the training loop makes one to tune thresholds.

    Attributes:
        method: the model's method.
        module: the model.
        tokenizer: its tokenizer.
        spec: its label set.
        device: where it runs.
        max_length: the most tokens of a document the model reads (longer ones are cut, and flagged).
        thresholds: the decision rule of the multi-label shapes (see :func:`choose`).
    """

    method: Method
    module: Any
    tokenizer: Any
    spec: LabelSpec
    device: torch.device
    max_length: int
    thresholds: dict = field(default_factory=dict)

    def score_ids(self, ids_list: list, batch_tokens: int | None = None, progress: Any = None) -> np.ndarray:
        """Probabilities for pre-tokenised documents, in their original order.

        Args:
            ids_list: token ids per document, as the method's ``encode`` made them.
            batch_tokens: the token budget per batch (None: :func:`default_batch_tokens`); halved on
                out-of-memory errors.
            progress: a bar to advance by the documents done, or None.

        Returns:
            An array (documents, ``spec.n_outputs``).

        Raises:
            FineclassError: naming ``batch_tokens`` when a single document does not fit in the device's memory.
        """
        return self.map_ids(ids_list, self.method.probabilities, batch_tokens, progress, self.spec.n_outputs)

    def features_ids(self, ids_list: list, batch_tokens: int | None = None, progress: Any = None) -> np.ndarray:
        """The method's features of pre-tokenised documents (``Method.features``), in their original order.

        Args:
            ids_list: token ids per document.
            batch_tokens: see :meth:`score_ids`.
            progress: see :meth:`score_ids`.

        Returns:
            An array (documents, features).
        """
        return self.map_ids(
            ids_list, lambda module, batch, spec: self.method.features(module, batch), batch_tokens, progress
        )

    def map_ids(
        self,
        ids_list: list,
        fn: Any,
        batch_tokens: int | None = None,
        progress: Any = None,
        width: int | None = None,
    ) -> np.ndarray:
        """``fn(module, batch, spec)`` over token-budget batches of documents, rows back in input order.

        Args:
            ids_list: token ids per document.
            fn: returns an array (batch rows, width) for one collated batch.
            batch_tokens: see :meth:`score_ids`.
            progress: see :meth:`score_ids`.
            width: the columns of the result (None: those of the first batch).

        Returns:
            An array (documents, width).

        Raises:
            FineclassError: naming ``batch_tokens`` when a single document does not fit in the device's memory.
        """
        method, module, device = self.method, self.module, self.device
        budget = int(batch_tokens or default_batch_tokens(device))
        n = len(ids_list)
        out = None if width is None else np.zeros((n, width), dtype=np.float64)
        if n == 0:
            return out if out is not None else np.zeros((0, 0), dtype=np.float64)
        lengths = np.fromiter((len(x) for x in ids_list), dtype=np.int64, count=n)
        module.eval()
        pending = deque(token_budget_batches(lengths, budget))
        autocast = device.type == "cuda" and torch.cuda.is_bf16_supported()
        # a method may keep work shared by all batches of this call (the generative method: the prompt head)
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast),
            method.scoring_session(),
        ):
            while pending:
                idx = pending.popleft()
                try:
                    batch = method.collate(self.tokenizer, [ids_list[i] for i in idx], device)
                    values = np.asarray(fn(module, batch, self.spec))
                except (RuntimeError, MemoryError) as e:
                    if not is_oom(e):
                        raise
                    batch = None
                    _free_memory(device)
                    if len(idx) == 1:
                        raise FineclassError(
                            f"a single document of {int(lengths[idx[0]])} tokens does not fit in the memory of "
                            f"{device}; lower `max_length` when training, or use a device with more memory.",
                            "batch_tokens",
                        ) from e
                    # halve the budget and plan this batch and every batch still waiting again
                    budget = max(budget // 2, 1)
                    rest = np.concatenate([idx, *pending])
                    pending = deque(rest[b] for b in token_budget_batches(lengths[rest], budget))
                    warn_user(
                        f"out of memory on {device}: the token budget is now {budget} tokens per batch.", RuntimeWarning
                    )
                    continue
                if out is None:
                    out = np.zeros((n, values.shape[1]), dtype=np.float64)
                out[idx] = values
                if progress is not None:
                    progress.update(len(idx))
        return out

    def score_texts(
        self, texts: list[str], batch_tokens: int | None = None, progress: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities for texts, each cut to ``max_length`` tokens.

        Texts are tokenised a few thousand at a time: the tokenizer's per-document objects (offsets, token
        strings) are dropped as soon as their ids are taken, which keeps memory flat on large shards.

        Args:
            texts: the documents.
            batch_tokens: see :meth:`score_ids`.
            progress: see :meth:`score_ids`.

        Returns:
            ``(probabilities, truncated)``: an array (documents, outputs) and a bool per document that was cut.
        """
        ids: list = []
        truncated = []
        for s in range(0, len(texts), ENCODE_ROWS):
            enc = self.method.encode(self.tokenizer, texts[s : s + ENCODE_ROWS], self.max_length)
            ids.extend(enc.ids)
            truncated.append(np.asarray(enc.truncated, dtype=bool))
            del enc
        truncated = np.concatenate(truncated) if truncated else np.zeros(0, dtype=bool)
        return self.score_ids(ids, batch_tokens, progress), truncated

    def predict_batch(
        self, table: pa.Table, batch_tokens: int | None = None, probabilities: bool = True, progress: Any = None
    ) -> pa.Table:
        """Predictions for a table that has ``id`` and ``text`` columns; null or blank texts are flagged.

        Args:
            table: the documents (``id``, ``text``).
            batch_tokens: see :meth:`score_ids`.
            probabilities: add one probability column per output.
            progress: see :meth:`score_ids`.

        Returns:
            id, the label column(s) of :func:`decode`, truncated, status (``ok`` or ``empty_text``) and the
            probability columns; a row with an empty text has no prediction.
        """
        _, empty = check_text(table, "text", on_empty="flag")
        n = table.num_rows
        col = table.column("text")
        if empty.any():
            keep = np.flatnonzero(~empty)
            texts = col.take(pa.array(keep)).to_pylist()
        else:
            keep = None
            texts = col.to_pylist()
        probs_k, trunc_k = self.score_texts(texts, batch_tokens, progress)
        if keep is None:
            probs, truncated = probs_k, trunc_k
        else:
            probs = np.zeros((n, self.spec.n_outputs), dtype=np.float64)
            truncated = np.zeros(n, dtype=bool)
            probs[keep], truncated[keep] = probs_k, trunc_k
            if progress is not None:
                progress.update(int(empty.sum()))
        cols = {ID: table.column(ID)}
        decoded = decode(probs, self.spec, self.thresholds)
        if empty.any():  # null or blank texts keep their row, with no prediction and a status saying why
            kept = pa.array(~empty)
            decoded = {k: pc.if_else(kept, v, pa.scalar(None, v.type)) for k, v in decoded.items()}
        cols.update(decoded)
        cols["truncated"] = pa.array(truncated & ~empty)
        cols["status"] = pa.array(np.where(empty, "empty_text", "ok").tolist(), type=pa.string())
        if probabilities:
            for j, name in enumerate(probability_names(self.spec)):
                values = probs[:, j].copy()
                values[empty] = np.nan
                cols[name] = pa.array(values, mask=empty)
        return pa.table(cols)

    def predict(self, data: Any, options: PredictOptions) -> pa.Table:
        """Predictions for an in-memory input: one table out, in input order.

        Args:
            data: any table or path ``tables.read_table`` reads.
            options: the text and id columns, batch size, probability columns and progress bar.

        Returns:
            The table :meth:`predict_batch` returns.
        """
        table = with_id(read_table(data), options.id)
        table, _ = check_text(table, options.text, on_empty="flag")
        bar = progress_bar(table.num_rows, options.progress)
        try:
            return self.predict_batch(table.select([ID, "text"]), options.batch_tokens, options.probabilities, bar)
        finally:
            if bar is not None:
                bar.close()
