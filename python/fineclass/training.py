"""One training loop for every method.

Seeds, a validation split, early stopping, class weights, a checkpoint per epoch (resumable after a crash) and
threshold tuning for the multi-label shapes. ``fit`` returns a ``Trained`` record; ``classifier.train()`` makes a
Classifier of it (this module never imports ``classifier``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._checks import flag, whole_number
from ._fs import atomic_folder
from .config import MAX_LENGTH_CAP, TrainConfig
from .data import Labelled, labelled
from .errors import FineclassError, preview, warn_user
from .labels import LabelSpec
from .manifest import hash_model_folder, hash_rows, now, versions, write_json_atomic
from .methods import Method, get_method
from .methods.base import pick_device
from .models import base_record, resolve
from .scoring import Scorer, answer_scores, choose, presence_levels, progress_bar


# ---------------------------------------------------------------------- splits
def split(ds: Labelled, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation documents: a seeded split, stratified by class for single-label tasks.

    Args:
        ds: the training set.
        share: the share held out (0: none).
        seed: the seed.

    Returns:
        ``(train_idx, val_idx)``.

    Raises:
        FineclassError: naming ``label`` when a class has fewer than two documents, ``validation`` when no document
            is left for training.
    """
    n = len(ds)
    idx = np.arange(n)
    if share <= 0:
        return idx, idx[:0]
    n_val = max(1, int(round(n * share)))
    rng = np.random.default_rng(seed)
    if ds.spec.kind == "single":
        strata = ds.targets
        counts = np.bincount(strata, minlength=len(ds.spec.classes))
        too_few = [ds.spec.decode_value(ds.spec.classes[c]) for c in np.flatnonzero(counts < 2)]
        if too_few:
            raise FineclassError(
                f"classes {preview(too_few)} have fewer than 2 examples, too few for a validation split "
                f"(validation={share}). Add examples, merge these classes, or pass validation=0 in `config`.",
                "label",
            )
        val = []
        for c in np.flatnonzero(counts):
            members = rng.permutation(np.flatnonzero(strata == c))
            k = int(round(len(members) * share))
            k = min(max(k, 1), len(members) - 1)
            val.extend(members[:k].tolist())
        val = np.array(sorted(val))
    else:
        val = np.sort(rng.permutation(n)[:n_val])
    train_idx = np.setdiff1d(idx, val)
    if len(train_idx) == 0:
        raise FineclassError(
            "no documents are left for training after the validation split; lower `validation` or add documents.",
            "validation",
        )
    return train_idx, val


def fold_small_validation(
    method: Method, ds: Labelled, cfg: TrainConfig, train_idx: np.ndarray, val_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Fold a single-label validation split too small to choose an epoch back into training.

    The method's ``min_validation`` (or ``cfg.extra["min_validation"]``) is the fewest held-out documents that
    may choose the epoch of single-label data; a smaller split trains instead, and the last epoch is kept.

    Args:
        method: the method.
        ds: the training set.
        cfg: the resolved settings.
        train_idx: the training documents of the split.
        val_idx: its validation documents.

    Returns:
        ``(train_idx, val_idx, note)``: unchanged with ``note`` None, or every document, none and a note saying why.

    Raises:
        FineclassError: naming ``config`` when ``extra["min_validation"]`` is not a whole number of at least 0.
    """
    least = whole_number(
        cfg.extra.get("min_validation", method.min_validation),
        "config",
        minimum=0,
        hint=" in its extra['min_validation'] (held-out documents; 0 keeps every validation split)",
    )
    if ds.spec.kind != "single" or not len(val_idx) or len(val_idx) >= least:
        return train_idx, val_idx, None
    note = (
        f"a validation split of {len(val_idx)} documents is too small to choose an epoch (the {method.name} "
        f"method wants at least {least}): all {len(ds)} documents train and the last epoch is kept; "
        "extra min_validation=0 keeps the split"
    )
    return np.arange(len(ds)), val_idx[:0], note


def _group_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (less padding), in a shuffled order: fast and still random."""
    order = rng.permutation(len(lengths))
    group = batch_size * 50
    batches = []
    for s in range(0, len(order), group):
        g = order[s : s + group]
        g = g[np.argsort(-lengths[g], kind="stable")]
        batches.extend(g[i : i + batch_size] for i in range(0, len(g), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def class_weights(targets: np.ndarray, spec) -> torch.Tensor:
    """Weights against class imbalance in the loss.

    Args:
        targets: the encoded labels of the training documents.
        spec: the label set.

    Returns:
        Balanced class weights (single); pos_weight per class, capped at 50 (multi); square-root balanced weights
        of absent and the levels, relative to absent (dimlevel).
    """
    if spec.kind == "single":
        counts = np.bincount(targets, minlength=len(spec.classes)).astype(np.float64)
        w = len(targets) / (len(counts) * np.maximum(counts, 1))
    elif spec.kind == "multi":
        pos = targets.sum(axis=0)
        w = np.clip((len(targets) - pos) / np.maximum(pos, 1), 1.0, 50.0)
    else:
        l1 = len(spec.levels) + 1
        counts = np.bincount(targets.reshape(-1), minlength=l1).astype(np.float64)
        w = np.sqrt(counts.sum() / (l1 * np.maximum(counts, 1)))
        w = w / w[0]
    return torch.tensor(w, dtype=torch.float32)


# ---------------------------------------------------------------------- thresholds
GRID = np.round(np.arange(0.025, 0.951, 0.025), 3)
GAMMAS = np.round(np.arange(0.3, 2.51, 0.1), 2)
MIN_SUPPORT = 5  # a class gets its own threshold only where it occurs this often in the held-out documents


def _truth(targets: np.ndarray, spec) -> np.ndarray:
    """Held-out labels as (documents, classes) answers: 0 absent, else 1 (multi) or the level index (dimlevel)."""
    return (targets > 0.5).astype(np.int64) if spec.kind == "multi" else np.asarray(targets, dtype=np.int64)


def _jaccards(chosen: np.ndarray, level: np.ndarray | None, truth: np.ndarray) -> float:
    """Mean per-document Jaccard of the chosen (class, answer) pairs against the truth."""
    pred = np.where(chosen, 1 if level is None else level + 1, 0)
    inter = ((pred == truth) & (truth > 0)).sum(1)
    union = (pred > 0).sum(1) + (truth > 0).sum(1) - inter
    return float(np.where(union == 0, 1.0, inter / np.maximum(union, 1)).mean())


def tune_thresholds(
    probs: np.ndarray, targets: np.ndarray, spec, per_class: bool | str = "checked"
) -> tuple[dict, float]:
    """The decision rule that maximises mean per-document Jaccard on held-out documents.

    First one presence threshold and whether every document gets at least one label (grid search); then, with
    per-class thresholds, one pass over the classes, most frequent first, moving a class's own threshold where the
    class occurs at least ``MIN_SUPPORT`` times among the held-out documents (rarer classes keep the shared
    threshold: their own optimum would be noise). The expected-Jaccard rule (see ``scoring.choose``) is tried
    too, with its ``gamma`` on a grid; the best rule is kept.

    Per-class thresholds fitted on a few hundred documents can fit their noise, so by default (``"checked"``)
    they are kept only where they carry over: the held-out documents are split in two halves (seeded), each
    kind of rule is tuned on one half and scored on the other, both ways, and per-class thresholds are tuned on
    all the documents only if their cross-fitted Jaccard beats the shared rule's.

    Args:
        probs: the held-out documents' probabilities (validation split, or out of fold).
        targets: their encoded labels.
        spec: the label set (multi or dimlevel).
        per_class: True (tune a threshold per class), False (one shared threshold), or ``"checked"`` (per
            class only where that carries over between two halves of the documents).

    Returns:
        ``(thresholds, jaccard)``: the rule ``scoring.decode`` reads (``{"presence": t, "per_class": {...},
        "at_least_one": bool}`` or ``{"decoder": "expected_jaccard", "gamma": g, "presence": t}``) and its mean
        Jaccard on these documents.

    Example:
        >>> rule, jaccard = tune_thresholds(val_probs, val_targets, spec)  # doctest: +SKIP
    """
    if per_class == "checked":
        per_class = _per_class_carries_over(probs, targets, spec)
    presence, level = presence_levels(probs, spec)
    truth = _truth(targets, spec)
    scores = answer_scores(probs, spec)

    def score(rule: dict) -> float:
        return _jaccards(choose(presence, rule, spec, scores), level, truth)

    best, best_score = {"presence": 0.5, "at_least_one": False}, -1.0
    for alo in (False, True):
        for t in GRID:
            rule = {"presence": float(t), "at_least_one": alo}
            v = score(rule)
            if v > best_score + 1e-12:
                best, best_score = rule, v
    if per_class:
        support = (truth > 0).sum(0)
        own: dict = {}
        for j in np.argsort(-support, kind="stable"):
            if support[j] < MIN_SUPPORT:
                break
            code = spec.classes[j]
            for t in GRID:
                rule = dict(best, per_class={**own, code: float(t)})
                v = score(rule)
                if v > best_score + 1e-12:
                    best_score, own = v, rule["per_class"]
            best = dict(best, per_class=own) if own else best
    for g in GAMMAS:
        rule = {"decoder": "expected_jaccard", "gamma": float(g), "presence": best["presence"]}
        v = score(rule)
        if v > best_score + 1e-12:
            best, best_score = rule, v
    return best, float(best_score)


def split_halves(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Held-out documents in two seeded halves, for checks that tune on one half and score on the other.

    Args:
        n: the number of held-out documents.
        seed: the seed of the split.

    Returns:
        ``[(first, second), (second, first)]``: (rows tuned on, rows scored), both ways.
    """
    first, second = np.array_split(np.random.default_rng(seed).permutation(n), 2)
    return [(first, second), (second, first)]


def rule_jaccard(probs: np.ndarray, targets: np.ndarray, spec, rule: dict) -> float:
    """Mean per-document Jaccard of a decision rule applied to documents' probabilities.

    Args:
        probs: the documents' probabilities.
        targets: their encoded labels.
        spec: the label set (multi or dimlevel).
        rule: a rule from :func:`tune_thresholds`.

    Returns:
        The mean Jaccard.
    """
    presence, level = presence_levels(probs, spec)
    return _jaccards(choose(presence, rule, spec, answer_scores(probs, spec)), level, _truth(targets, spec))


class HeldOutScore:
    """How well held-out probabilities score: accuracy (single-label) or Jaccard with tuned thresholds.

    ``Method.finish`` receives one to choose its settings on the validation documents.

    Args:
        targets: the held-out documents' encoded labels.
        spec: the label set.
    """

    def __init__(self, targets: np.ndarray, spec):
        self.targets, self.spec = targets, spec

    def __call__(self, probs: np.ndarray) -> float:
        """The score of every held-out document, the shared decision rule tuned on them all.

        Args:
            probs: their probabilities.

        Returns:
            Accuracy, or mean Jaccard.
        """
        return self.split(probs, np.arange(len(probs)), np.arange(len(probs)))

    def halves(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The held-out documents in two seeded halves, both ways (:func:`split_halves`).

        Returns:
            ``[(rows tuned on, rows scored), ...]``.
        """
        return split_halves(len(self.targets))

    def split(self, probs: np.ndarray, fit: np.ndarray, held: np.ndarray) -> float:
        """The score of some held-out documents under the shared decision rule tuned on others.

        Args:
            probs: the probabilities of every held-out document.
            fit: the rows the rule is tuned on (unused for single-label data).
            held: the rows scored.

        Returns:
            Accuracy, or mean Jaccard, on ``held``.
        """
        if self.spec.kind == "single":
            return float((probs[held].argmax(1) == self.targets[held]).mean())
        rule, _ = tune_thresholds(probs[fit], self.targets[fit], self.spec, per_class=False)
        return rule_jaccard(probs[held], self.targets[held], self.spec, rule)


def _per_class_carries_over(probs: np.ndarray, targets: np.ndarray, spec, seed: int = 0) -> bool:
    """Whether per-class thresholds tuned on one half of the documents beat the shared rule on the other half."""
    n = len(probs)
    if n < 4 * MIN_SUPPORT:
        return False
    gains = 0.0
    for fit, held in split_halves(n, seed):
        for own, sign in ((True, 1.0), (False, -1.0)):
            rule, _ = tune_thresholds(probs[fit], targets[fit], spec, per_class=own)
            gains += sign * len(held) * rule_jaccard(probs[held], targets[held], spec, rule)
    return gains > 1e-9


# ---------------------------------------------------------------------- max_length
def choose_max_length(tokenizer, module, texts: list[str], setting) -> tuple[int, dict]:
    """The tokens per document a run reads: ``max_length`` as given, or chosen from the data for ``"auto"``.

    ``"auto"``: the 95th percentile of the documents' token lengths, rounded up to a multiple of 8, at least 16,
    at most ``config.MAX_LENGTH_CAP`` and the model's own limit.

    Args:
        tokenizer: the model's tokenizer.
        module: the model (its config's ``max_position_embeddings`` bounds the choice).
        texts: the training documents.
        setting: ``TrainConfig.max_length``.

    Returns:
        ``(max_length, report)``: the report holds the rule, the length percentiles and the documents cut.
    """
    lengths = np.fromiter(
        (len(x) for x in tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]),
        dtype=np.int64,
        count=len(texts),
    )
    if setting == "auto":
        limit = MAX_LENGTH_CAP
        for obj in (getattr(module, "config", None), getattr(getattr(module, "backbone", None), "config", None)):
            limit = min(limit, int(getattr(obj, "max_position_embeddings", None) or limit))
        model_max = getattr(tokenizer, "model_max_length", None)
        if model_max and model_max < 10**6:
            limit = min(limit, int(model_max))
        p95 = float(np.percentile(lengths, 95)) if len(lengths) else 16.0
        chosen = int(min(limit, max(16, int(np.ceil(p95 / 8) * 8))))
    else:
        chosen = int(setting)
    report = {
        "rule": "auto: the 95th percentile of the training documents' token lengths" if setting == "auto" else "given",
        "max_length": chosen,
        "length_p50": int(np.median(lengths)) if len(lengths) else 0,
        "length_p95": int(np.ceil(np.percentile(lengths, 95))) if len(lengths) else 0,
        "length_max": int(lengths.max()) if len(lengths) else 0,
        "n_truncated": int((lengths > chosen).sum()),
    }
    return chosen, report


# ---------------------------------------------------------------------- checkpoints
def _trainable_state(module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.named_parameters() if v.requires_grad}


def _load_trainable(module, state: dict) -> None:
    params = dict(module.named_parameters())
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v.to(params[k].device))


def _optimizer_tensors(opt) -> tuple[dict, dict]:
    tensors, scalars = {}, {}
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for key, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{key}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = v
    return tensors, {"scalars": scalars, "param_groups": sd["param_groups"]}


def _restore_optimizer(opt, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for name, v in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = v
    for name, v in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(folder: Path, epoch: int, module, opt, sched, best_state, info: dict) -> None:
    """Write an epoch's checkpoint atomically and point ``latest.json`` at it (the newest two are kept).

    Args:
        folder: the checkpoint folder.
        epoch: the epoch just finished (0-based).
        module: the model (its trainable parameters are saved).
        opt: the optimiser.
        sched: the learning-rate schedule.
        best_state: the best epoch's trainable parameters.
        info: the run's fingerprint, history and best-epoch record.
    """
    from safetensors.torch import save_file

    final = folder / f"epoch-{epoch}"
    with atomic_folder(final) as tmp:
        save_file(_trainable_state(module), str(tmp / "trainable.safetensors"))
        save_file(best_state, str(tmp / "best.safetensors"))
        tensors, meta = _optimizer_tensors(opt)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        write_json_atomic(tmp / "state.json", dict(info, epoch=epoch, optimizer=meta, scheduler=sched.state_dict()))
    write_json_atomic(folder / "latest.json", {"epoch": epoch, "folder": final.name})
    keep = {final.name, f"epoch-{epoch - 1}"}  # the newest two only, so checkpoints take bounded space
    for old in folder.glob("epoch-*"):
        if old.name not in keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path, fingerprint: str):
    """The newest checkpoint of a run, if there is one.

    Args:
        folder: the checkpoint folder.
        fingerprint: this run's fingerprint; a checkpoint of another run is refused.

    Returns:
        ``(info, tensors)``, or None when the folder holds no checkpoint.

    Raises:
        FineclassError: naming ``checkpoint_dir`` when the checkpoint is damaged or belongs to another run.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    latest = folder / "latest.json"
    if not latest.exists():
        return None
    current = latest  # the file being read, named in the error if it is damaged
    try:
        pointer = json.loads(latest.read_text(encoding="utf-8"))
        name = pointer["folder"]
        if not isinstance(name, str) or os.path.basename(name) != name or not name.startswith("epoch-"):
            raise ValueError(f"it names the checkpoint {name!r}, which is not a folder inside {str(folder)!r}")
        ck = folder / name
        current = ck / "state.json"
        info = json.loads(current.read_text(encoding="utf-8"))
        tensors = {}
        for part in ("trainable", "best", "optimizer"):
            current = ck / f"{part}.safetensors"
            tensors[part] = load_file(str(current))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
        raise FineclassError(
            f"`checkpoint_dir`: the checkpoint file {str(current)!r} is damaged or missing ({e}). "
            f"Delete the folder {str(folder)!r} to train from the start.",
            "checkpoint_dir",
        ) from None
    if not isinstance(info, dict) or info.get("fingerprint") != fingerprint:
        raise FineclassError(
            f"`checkpoint_dir` {str(folder)!r} holds a checkpoint of another run (different data, "
            f"model or settings). Use another folder, or delete it to start over.",
            "checkpoint_dir",
        )
    return info, tensors


def _check_state(module, state: dict) -> None:
    """A checkpoint's tensors must be exactly the trainable parameters, shape for shape."""
    expected = {k: tuple(v.shape) for k, v in module.named_parameters() if v.requires_grad}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != expected:
        odd = sorted(set(expected) ^ set(found)) or sorted(k for k in expected if expected[k] != found[k])
        raise ValueError(f"its tensors do not match the model's parameters ({preview(odd, 3)})")


# ---------------------------------------------------------------------- the loop
@dataclass
class Trained:
    """What a training run produces: the fitted parts of a Classifier, and its manifest."""

    method: Method
    module: Any
    tokenizer: Any
    spec: LabelSpec
    device: torch.device
    config: TrainConfig
    thresholds: dict
    history: list
    manifest: dict
    validation: Any = None  # the validation documents with their codes (export's fidelity check reads them)


def fit(
    data: Any,
    *,
    model: str,
    method: str,
    config: Any,
    trust_remote_code: bool,
    text: str,
    label: Any,
    id: str | None,
    labels: Any,
    codebook: Any,
    kind: str | None,
    levels: Any,
    spec: LabelSpec | None,
    progress: bool,
    resume: bool,
) -> Trained:
    """Fine-tune ``model`` with ``method`` on ``data``: the one training loop of every method.

    Args:
        data: the training table (any input ``tables.read_table`` reads).
        model: a built-in alias, a local folder or a hub id.
        method: a registered method's name.
        config: a ``TrainConfig``, its dict, or None (the defaults).
        trust_remote_code: let transformers run the model's own code.
        text: the text column.
        label: the label column, or a (dimension, level) pair with ``labels``.
        id: the id column (None: a column named ``id``, else the row number).
        labels: a long label table (see ``data.labelled``), or None.
        codebook: names and descriptions of the classes, or None.
        kind: ``"single"``, ``"multi"`` or ``"dimlevel"``; inferred when None.
        levels: the ordered levels of the dimension->level shape.
        spec: a fixed label set, or None (inferred from the data).
        progress: show a progress bar and a closing line.
        resume: continue from the checkpoint in ``config.checkpoint_dir``.

    Returns:
        A :class:`Trained`: the best epoch's model (on the validation split), tuned thresholds, the history and
        the manifest.

    Raises:
        FineclassError: naming the argument at fault.
    """
    name = method
    t_start = time.time()
    cfg = TrainConfig.from_dict(config)
    ds = labelled(
        data, text=text, label=label, id=id, labels=labels, spec=spec, kind=kind, codebook=codebook, levels=levels
    )
    if ds.spec.kind == "single" and len(ds.spec.classes) < 2:
        raise FineclassError("the label column holds a single class; a classifier needs at least two.", "label")
    method = get_method(name)
    model_path = resolve(model)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    module, tok, finetune = method.build(model_path, ds.spec, cfg, device, trust_remote_code)
    cfg = cfg.resolved(**{"validation": method.validation_share, **method.defaults(finetune)})
    refit = refit_setting(cfg, method)
    start_state = _trainable_state(module) if refit else None  # the refit starts where the first run did
    max_length, lengths_report = choose_max_length(tok, module, ds.texts, cfg.max_length)
    cfg = TrainConfig(**dict(cfg.to_dict(), max_length=max_length))
    _report_length(lengths_report, len(ds), progress)

    if method.trains_by_gradient:
        train_idx, val_idx = split(ds, cfg.validation, cfg.seed)
        train_idx, val_idx, validation_note = fold_small_validation(method, ds, cfg, train_idx, val_idx)
        if validation_note and progress:
            print(f"fineclass: {validation_note}", file=sys.stderr)
    else:  # fitted in closed form on every document; thresholds come out of fold
        train_idx, val_idx, validation_note = np.arange(len(ds)), np.arange(0), None
    enc = method.encode(tok, ds.texts, cfg.max_length)
    n_truncated = int(enc.truncated.sum())
    scorer = Scorer(method, module, tok, ds.spec, device, cfg.max_length)
    settings = {k: v for k, v in cfg.to_dict().items() if k != "checkpoint_dir"}  # a moved folder still resumes
    fingerprint = (
        hash_rows(ds.ids, ds.texts, [t.tolist() for t in ds.targets])
        + ":"
        + json.dumps({"model": str(model), "method": name, "config": settings}, sort_keys=True, default=str)
    )
    fingerprint = hashlib.sha256(fingerprint.encode()).hexdigest()
    if method.trains_by_gradient:
        loop = _epochs(
            method, module, tok, ds, enc, train_idx, val_idx, cfg, device, scorer, fingerprint, progress, resume
        )
        if refit:
            loop = _refit(
                method,
                module,
                tok,
                ds,
                enc,
                val_idx,
                start_state,
                cfg,
                device,
                scorer,
                fingerprint,
                progress,
                resume,
                loop,
            )
        if method.finishes_in_closed_form:
            loop = _finish(method, module, ds, enc, val_idx, cfg, scorer, progress, loop)
    else:
        loop = _closed_form(method, module, ds, enc, cfg, scorer, progress)
    module.eval()

    thresholds = {}
    val_score = None
    if ds.spec.kind in ("multi", "dimlevel"):
        if isinstance(cfg.threshold, (int, float)) and not isinstance(cfg.threshold, bool):
            thresholds = {"presence": float(cfg.threshold)}
        elif loop["held_out"] is not None:
            held_probs, held_idx = loop["held_out"]
            thresholds, val_score = tune_thresholds(held_probs, ds.targets[held_idx], ds.spec)
        else:
            thresholds = {"presence": 0.5}
    manifest = {
        "method": name,
        "model": str(model),
        **base_record(model_path, getattr(module, "config", None)),
        "model_hash": hash_model_folder(model_path),
        "finetune": finetune,
        "spec": ds.spec.to_dict(),
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "thresholds": thresholds,
        "threshold_source": loop["threshold_source"] if thresholds and cfg.threshold == "tune" else None,
        "history": loop["history"],
        "best_epoch": loop["best_epoch"],
        "epochs_run": loop["epochs_run"],
        "stopped_early": loop["stopped_early"],
        "closed_form": loop.get("closed_form"),
        "refit": loop.get("refit"),
        "n_train": int(len(train_idx)),
        "n_validation": int(len(val_idx)),
        "validation_note": validation_note,
        "n_truncated": n_truncated,
        "lengths": lengths_report,
        "data_hash": hash_rows(ds.ids, ds.texts),
        "validation_jaccard": val_score,
        "device": str(device),
        "trained_at": now(),
        "seconds": round(time.time() - t_start, 1),
        "versions": versions(),
        "fingerprint": fingerprint,
    }
    if progress:
        refitted = loop.get("refit") or {}
        again = f", then again on all {refitted['documents']} up to it" if refitted.get("done") else ""
        print(
            f"fineclass: trained {name} on {model} ({finetune}) with {len(train_idx)} documents in "
            f"{manifest['seconds']} s; best epoch {loop['best_epoch']}{again}",
            file=sys.stderr,
        )
    return Trained(method, module, tok, ds.spec, device, cfg, thresholds, loop["history"], manifest, ds.table(val_idx))


def refit_setting(cfg: TrainConfig, method: Method) -> bool:
    """Whether to refit on every document after the epoch loop: ``extra["refit"]``, else the method's default.

    Args:
        cfg: the resolved ``TrainConfig``.
        method: the method (its ``refits`` is the default).

    Returns:
        True to refit (only methods trained by gradient refit).

    Raises:
        FineclassError: naming ``config`` when ``extra["refit"]`` is not True or False.
    """
    value = flag(
        cfg.extra.get("refit", method.refits),
        "config",
        setting="extra['refit']",
        why="True trains the model again on every document up to the epoch the validation split chose.",
    )
    return value and method.trains_by_gradient


def _refit(
    method, module, tok, ds, enc, val_idx, start_state, cfg, device, scorer, fingerprint, progress, resume, loop
):
    """Train the trainable parts again from their start on every document, up to the epoch the first run chose.

    The first run's held-out probabilities stay in the record (the weight and the decision rule are chosen on
    them, as without refit); its history stays the run's history. With no validation split there is nothing to
    add and the first run is kept. Checkpoints go to ``checkpoint_dir/refit``.
    """
    best = int(loop["best_epoch"])
    if not len(val_idx):
        return dict(loop, refit={"done": False, "reason": "no validation split to add"})
    if best < 1:  # no epoch ever scored better than the start (a validation loss of NaN, say)
        return dict(loop, refit={"done": False, "reason": "the validation split chose no epoch"})
    t0 = time.time()
    _load_trainable(module, start_state)
    own_folder = str(Path(cfg.checkpoint_dir) / "refit") if cfg.checkpoint_dir else None
    ck_cfg = TrainConfig(**dict(cfg.to_dict(), checkpoint_dir=own_folder))
    everything = np.arange(len(ds))
    again = _epochs(
        method,
        module,
        tok,
        ds,
        enc,
        everything,
        np.arange(0),
        ck_cfg,
        device,
        scorer,
        fingerprint + ":refit",
        progress,
        resume,
        stop_after=best,
        desc="refitting",
    )
    record = {
        "done": True,
        "chosen_epoch": best,
        "epochs": len(again["history"]),  # fewer where the larger set reaches the method's min_steps sooner
        "documents": len(everything),
        "history": again["history"],
        "seconds": round(time.time() - t0, 1),
    }
    return dict(loop, refit=record)


def _report_length(report: dict, n: int, progress: bool) -> None:
    """Say how long documents are and how many are cut: a message for "auto", a warning for a given length."""
    cut = report["n_truncated"]
    if report["rule"] == "given":
        if cut:
            warn_user(
                f"{cut} of {n} training documents are longer than max_length={report['max_length']} "
                f"tokens and were truncated (the same rule applies when classifying)."
            )
        return
    if progress:
        print(
            f"fineclass: max_length='auto' chose {report['max_length']} tokens (the training documents' median "
            f"length is {report['length_p50']}, their 95th percentile {report['length_p95']}, the longest "
            f"{report['length_max']}); {cut} of {n} documents are longer and are cut, here and when classifying. "
            f"Pass max_length= to choose another length.",
            file=sys.stderr,
        )


def _closed_form(method: Method, module, ds: Labelled, enc, cfg: TrainConfig, scorer: Scorer, progress: bool) -> dict:
    """A method fitted without gradient steps: its features of every document, then ``Method.fit_direct``."""
    t0 = time.time()
    features = _all_features(scorer, enc, progress)
    t1 = time.time()
    oof, info = method.fit_direct(module, features, ds.targets, ds.spec, cfg)
    row = {"epoch": 1, **info, "seconds_features": round(t1 - t0, 1), "seconds_fit": round(time.time() - t1, 1)}
    return {
        "history": [row],
        "best_epoch": 1,
        "epochs_run": 1,
        "stopped_early": False,
        "held_out": None if oof is None else (oof, np.arange(len(ds))),
        "threshold_source": f"out of fold ({info.get('folds')} folds of the training documents)",
    }


def _finish(method: Method, module, ds: Labelled, enc, val_idx, cfg: TrainConfig, scorer: Scorer, progress, loop):
    """After the epoch loop, the closed-form part of a method (``Method.finish``).

    Returns the loop's record with ``closed_form`` (for the manifest) and the whole model's held-out probabilities.
    """
    t0 = time.time()
    val_probs = loop["held_out"][0] if loop["held_out"] is not None else None
    if val_probs is None and len(val_idx):
        val_probs = scorer.score_ids([enc.ids[i] for i in val_idx])
    score = HeldOutScore(ds.targets[val_idx], ds.spec)
    features = _all_features(scorer, enc, progress)
    t1 = time.time()
    held, info = method.finish(module, features, ds.targets, ds.spec, cfg, val_idx, val_probs, score)
    module.eval()
    record = {**info, "seconds_features": round(t1 - t0, 1), "seconds_fit": round(time.time() - t1, 1)}
    return dict(
        loop,
        closed_form=record,
        held_out=(held, val_idx) if loop["held_out"] is not None and held is not None else None,
    )


def _all_features(scorer: Scorer, enc, progress: bool) -> np.ndarray:
    """The method's features of every document, with an "encoding" bar."""
    bar = progress_bar(len(enc.ids), progress, desc="encoding")
    try:
        return scorer.features_ids(enc.ids, progress=bar)
    finally:
        if bar is not None:
            bar.close()


def _epochs(
    method: Method,
    module,
    tok,
    ds: Labelled,
    enc,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: TrainConfig,
    device,
    scorer: Scorer,
    fingerprint: str,
    progress: bool,
    resume: bool,
    stop_after: int | None = None,
    desc: str = "training",
) -> dict:
    """The epoch loop of a gradient-trained method; the best epoch's weights are left in ``module``.

    ``stop_after`` ends the loop after that many epochs of the schedule laid out for all of them (a refit).
    """
    from transformers import get_linear_schedule_with_warmup

    method.prepare(module, tok, [enc.ids[i] for i in train_idx], ds.targets[train_idx], ds.spec)
    lengths = enc.lengths()
    targets = torch.from_numpy(ds.targets)
    weights = None
    if cfg.class_weights == "balanced":
        weights = class_weights(ds.targets[train_idx], ds.spec).to(device)

    trainable = [p for p in module.parameters() if p.requires_grad]
    groups = method.param_groups(module, cfg) or [{"params": trainable}]
    opt = torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(math.ceil(len(train_idx) / cfg.batch_size) / cfg.gradient_accumulation)
    min_steps = int(cfg.extra.get("min_steps", method.min_steps) or 0)
    n_epochs = max(cfg.epochs, math.ceil(min_steps / steps_per_epoch))
    total_steps = steps_per_epoch * n_epochs
    last_epoch = n_epochs if stop_after is None else min(n_epochs, stop_after)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total_steps), total_steps)
    monitor = method.monitor(ds.spec) if len(val_idx) else "loss"

    ck_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    start_epoch, history, best = 0, [], {"loss": float("inf"), "epoch": -1, "bad_epochs": 0}
    best_state = _trainable_state(module)
    if ck_dir is not None and resume:
        found = load_checkpoint(ck_dir, fingerprint)
        if found is not None:
            info, tensors = found
            try:
                for part in ("trainable", "best"):
                    _check_state(module, tensors[part])
                _load_trainable(module, tensors["trainable"])
                _restore_optimizer(opt, tensors["optimizer"], info["optimizer"])
                sched.load_state_dict(info["scheduler"])
                start_epoch, history, best = info["epoch"] + 1, info["history"], info["best"]
            except (KeyError, ValueError, TypeError, RuntimeError) as e:
                raise FineclassError(
                    f"`checkpoint_dir`: the checkpoint in {str(ck_dir)!r} does not fit this model "
                    f"({e}). Delete it to train from the start.",
                    "checkpoint_dir",
                ) from None
            best_state = tensors["best"]
            if progress:
                print(
                    f"fineclass: resuming from the checkpoint of epoch {info['epoch'] + 1} in {ck_dir}", file=sys.stderr
                )
    elif ck_dir is not None and (ck_dir / "latest.json").exists():
        raise FineclassError(
            f"`checkpoint_dir` {str(ck_dir)!r} already holds a checkpoint; pass resume=True to "
            f"continue it, or use an empty folder.",
            "checkpoint_dir",
        )

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=steps_per_epoch * cfg.gradient_accumulation * max(last_epoch - start_epoch, 0),
            unit="batch",
            desc=desc,
            dynamic_ncols=True,
            file=sys.stderr,
        )
    stopped_early = False
    epochs_run = start_epoch
    for epoch in range(start_epoch, last_epoch):
        # early stopping never cuts a run below its minimum number of steps
        if best["bad_epochs"] >= (cfg.early_stopping or 10**9) and epoch * steps_per_epoch >= min_steps:
            stopped_early = True
            break
        t_epoch = time.time()
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout: the same per epoch, so a resumed run matches
        module.train()
        total, count = 0.0, 0
        batches = _group_batches(lengths[train_idx], cfg.batch_size, rng)
        opt.zero_grad(set_to_none=True)
        for b, rel in enumerate(batches):
            idx = train_idx[rel]
            batch = method.collate(tok, [enc.ids[i] for i in idx], device)
            loss = method.loss(module, batch, targets[idx].to(device), ds.spec, weights)
            (loss / cfg.gradient_accumulation).backward()
            if (b + 1) % cfg.gradient_accumulation == 0 or b == len(batches) - 1:
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            total += loss.item() * len(idx)
            count += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{total / count:.4f}")
        row = {"epoch": epoch + 1, "train_loss": total / max(count, 1), "seconds": round(time.time() - t_epoch, 1)}
        epochs_run = epoch + 1
        if len(val_idx):
            module.eval()
            row["val_loss"] = _validation_loss(
                method, module, tok, enc, val_idx, targets, ds.spec, weights, device, cfg.batch_size
            )
            value = row["val_loss"]
            if monitor == "jaccard":  # higher is better: compared as its negative
                probs = scorer.score_ids([enc.ids[i] for i in val_idx])
                row["val_jaccard"] = tune_thresholds(probs, ds.targets[val_idx], ds.spec, per_class=False)[1]
                value = -row["val_jaccard"]
            if value < best["loss"] - 1e-6:
                best = {"loss": value, "epoch": epoch + 1, "bad_epochs": 0}
                best_state = _trainable_state(module)
            else:
                best["bad_epochs"] += 1
        else:
            best = {"loss": row["train_loss"], "epoch": epoch + 1, "bad_epochs": 0}
            best_state = _trainable_state(module)
        history.append(row)
        if ck_dir is not None:
            save_checkpoint(
                ck_dir,
                epoch,
                module,
                opt,
                sched,
                best_state,
                {"fingerprint": fingerprint, "history": history, "best": best},
            )
    if bar is not None:
        bar.close()
    _load_trainable(module, best_state)
    module.eval()
    held_out = None
    if len(val_idx) and ds.spec.kind != "single" and cfg.threshold == "tune":
        held_out = (scorer.score_ids([enc.ids[i] for i in val_idx]), val_idx)
    return {
        "history": history,
        "best_epoch": best["epoch"],
        "epochs_run": epochs_run,
        "stopped_early": stopped_early,
        "held_out": held_out,
        "threshold_source": f"the validation split ({len(val_idx)} documents)",
    }


@torch.no_grad()
def _validation_loss(method, module, tok, enc, val_idx, targets, spec, weights, device, batch_size) -> float:
    total = 0.0
    for s in range(0, len(val_idx), batch_size * 2):
        idx = val_idx[s : s + batch_size * 2]
        batch = method.collate(tok, [enc.ids[i] for i in idx], device)
        total += float(method.loss(module, batch, targets[idx].to(device), spec, weights)) * len(idx)
    return total / len(val_idx)
