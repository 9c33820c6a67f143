"""The ensemble method: the description method and the codebook method, their probabilities averaged.

Two members read every document: a fine-tuned encoder whose class vectors start at the codebook's definitions
(``methods.description``), trained by the epoch loop on the training split, and a frozen encoder with cosines to
the definitions and logistic regressions (``methods.codebook``), fitted in closed form after the loop. A
document's probabilities are ``w * description + (1 - w) * codebook``.

The weight ``w`` and the decision rule are chosen on the validation split: the codebook member is first fitted
on the training split alone, so that its probabilities of the validation documents are held out like the
description member's; ``w`` is the one of 0, 1/4, 1/2, 3/4 and 1 whose mixture scores best there (mean
per-document Jaccard with tuned thresholds for the multi-label shapes, accuracy for single-label data; 1/2 on
ties); then the codebook member is fitted again on every training document, starting from the first fit.
``extra["description_weight"]`` fixes ``w`` instead. Without a validation split ``w`` is 1/2.

A weight other than 1/2 is kept only if it carries over between two halves of the validation split
(:func:`check_weight`), and never with fewer than ``MIN_CHECK`` validation documents: with a few dozen held-out
documents a weight that scores best by a fraction of a document is noise (rule 14 in
bench/PREREGISTRATION.md; BENCHMARKS.md, "the ensemble's weight on small validation splits").

The description members train without the description method's pair term (SetFit's objective, single-label
data only) unless ``extra["pair_weight"]`` sets its weight; the ensemble's measurements were made without it.

``extra["description_members"]`` (2 by default) trains that many description members side by side in the same
epochs, from the same start and batches but independent dropout draws; the description share is their mean
probability. Two rather than one scored higher on the flourishing validation tweets (Jaccard 0.244 against
0.238) and were adopted by a rule set before the run; on the test tweets Jaccard stayed at 0.248 and presence
micro-F1 rose from 0.406 to 0.415, for 1.8 times the training time (BENCHMARKS.md, "Accuracy on a laptop").
The loss is the mean of the members' and the gradient is clipped at ``1 / sqrt(members)`` of the usual norm,
so that each member is clipped about as a lone run would be. Each member adds an encoder's training and an
encoder pass per predicted document.

Once the epoch, the weight and the decision rule are chosen, the description members are trained again from their
start on every training document up to the chosen epoch (``training.fit``'s refit; ``extra["refit"] = False``
turns it off): on 400 held-out flourishing tweets, three runs of 1,200 tweets scored a mean Jaccard of 0.229
with the refit against 0.228 without (rule 15 in bench/PREREGISTRATION.md), for about 1.8 times the training;
on the 400 test tweets, trained on 1,600, Jaccard stayed at 0.248 and presence micro-F1 went from 0.415 to 0.408.
Since the refit learns from the held-out documents too, the ensemble holds out a fifth of them rather than a tenth
(``validation_share``; a ``validation`` given in the config wins): the epoch, the weight and the decision rule are
chosen on twice as many documents at no cost in training data. On the same 400 dev tweets, three runs of 1,200
scored a mean Jaccard of 0.237 against 0.229 with a tenth (rule 16; one of the three lower).

On the flourishing tweets this combination was the strongest of the candidates of issue 19 (BENCHMARKS.md,
"Accuracy on a laptop"). It costs its members' training and, by default, three encoder passes per document
when predicting (two description members and the codebook's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._checks import number, whole_number
from ..labels import LabelSpec
from .base import Encoded, Method, SavedModel, encode_texts, pad_batch, register
from .codebook import (
    HEAD_TENSORS,
    CodebookMethod,
    as_probabilities,
    codebook_model,
    fit_logistic,
    group_targets,
    head_tensors,
    layout,
    middle_read,
    middle_setting,
    new_codebook_model,
    regression_c,
)
from .description import DescriptionMethod, description_model, new_description_model, pair_weight
from .encoder import check_full, load_backbone, load_encoder, save_encoder

DESCRIPTION_FILE = "description.safetensors"
MEMBER_FILE = "description-{k}.safetensors"  # the second description member on: k = 2, 3, ...
MEMBER_FOLDER = "description-{k}-model"
CODEBOOK_FILE = "codebook.safetensors"
CODEBOOK_FOLDER = "codebook-model"
DESCRIPTION_MEMBERS = 2  # chosen on the flourishing validation tweets (see the module)
WEIGHTS = (0.5, 0.25, 0.75, 0.0, 1.0)  # tried in this order; a later one must score strictly better
MIN_CHECK = 20  # the fewest validation documents for the split-half check of a weight other than 1/2


class EnsembleModel(torch.nn.Module):
    """The two members and the description member's share of the mixture.

    Args:
        description: a ``DescriptionModel`` (trained by gradient).
        codebook: a ``CodebookModel`` (frozen encoder, regressions fitted in closed form).
        others: further description members (``extra["description_members"]`` above 1), trained beside the first.
    """

    def __init__(self, description: torch.nn.Module, codebook: torch.nn.Module, others=()):
        super().__init__()
        self.description = description
        self.codebook = codebook
        self.others = torch.nn.ModuleList(others)
        #: the description member's weight; below 0 until the codebook member is fitted (description alone)
        self.register_buffer("mix", torch.tensor(-1.0))


def mix(description: np.ndarray | None, codebook: np.ndarray | None, w: float) -> np.ndarray:
    """The ensemble's probabilities from its members'.

    Args:
        description: the description member's probabilities (documents, outputs); unused (may be None) when w = 0.
        codebook: the codebook member's; unused (may be None) when w = 1.
        w: the description member's weight in [0, 1].

    Returns:
        ``w * description + (1 - w) * codebook``.
    """
    if w >= 1.0:
        return description
    if w <= 0.0:
        return codebook
    return w * description + (1.0 - w) * codebook


@register("ensemble")
class EnsembleMethod(Method):
    """The description and codebook methods averaged, their weight chosen on validation (see the module)."""

    min_steps = DescriptionMethod.min_steps
    finishes_in_closed_form = True
    refits = True  # the description members learn from the validation tweets too (rule 15; see the module)
    # a fifth held out: it costs the refitted model no data and doubles the tweets behind the epoch, the weight and
    # the decision rule (rule 16, bench/PREREGISTRATION.md)
    validation_share = 0.2

    def __init__(self):
        self.desc = DescriptionMethod()
        self.cb = CodebookMethod()
        self.n_members = DESCRIPTION_MEMBERS

    def build(self, model_path: str, spec: LabelSpec, config, device, trust_remote_code: bool = False):
        finetune = check_full(config.finetune, "ensemble")
        regression_c(config), fixed_weight(config)  # bad settings are refused before the encoder is trained
        self.n_members = description_members(config)
        self.desc.kind = spec.kind
        # the pair term only where asked for: the ensemble's measurements were made without it
        self.desc.pair_weight = pair_weight(config, spec) if "pair_weight" in config.extra else 0.0
        allow_pickle = config.extra.get("allow_pickle", False)
        middle = middle_setting(config)
        backbone, tok = load_backbone(model_path, trust_remote_code, allow_pickle)
        codebook = new_codebook_model(backbone.to(device), tok, spec, middle)
        group = []
        for _ in range(self.n_members):
            backbone, tok = load_backbone(model_path, trust_remote_code, allow_pickle)
            group.append(new_description_model(backbone.to(device), tok, spec))
        description, *others = group
        return EnsembleModel(description, codebook, others).to(device), tok, finetune

    def defaults(self, finetune: str) -> dict:
        d = self.desc.defaults(finetune)
        return dict(d, max_grad_norm=d["max_grad_norm"] / np.sqrt(self.n_members))

    def prepare(self, module, tokenizer, ids_list: list, targets: np.ndarray, spec: LabelSpec) -> None:
        for member in members(module):
            self.desc.prepare(member, tokenizer, ids_list, targets, spec)

    def param_groups(self, module, config) -> list[dict]:
        groups = [self.desc.param_groups(member, config) for member in members(module)]
        return [{**g, "params": [p for m in groups for p in m[i]["params"]]} for i, g in enumerate(groups[0])]

    def monitor(self, spec: LabelSpec) -> str:
        return self.desc.monitor(spec)

    def encode(self, tokenizer, texts: list[str], max_length: int) -> Encoded:
        return encode_texts(tokenizer, texts, max_length)

    def collate(self, tokenizer, ids_list: list, device) -> dict:
        return pad_batch(ids_list, tokenizer.pad_token_id, device, side="right")

    def loss(self, module, batch, targets: torch.Tensor, spec: LabelSpec, weights=None) -> torch.Tensor:
        group = members(module)
        return sum(self.desc.loss(m, batch, targets, spec, weights) for m in group) / len(group)

    @torch.no_grad()
    def probabilities(self, module, batch, spec: LabelSpec) -> np.ndarray:
        w = float(module.mix)
        if w < 0:  # during the epoch loop: the description members alone
            w = 1.0
        d = None
        if w > 0:
            group = members(module)
            d = sum(self.desc.probabilities(m, batch, spec) for m in group) / len(group)
        c = self.cb.probabilities(module.codebook, batch, spec) if w < 1 else None
        return mix(d, c, w)

    def features(self, module, batch) -> np.ndarray:
        return self.cb.features(module.codebook, batch)

    def finish(self, module, features, targets, spec, config, val_idx, val_probs, score):
        c = regression_c(config)
        fixed = fixed_weight(config)
        _, outputs = layout(spec)
        y = group_targets(targets, spec)
        info: dict = {"C": c}
        start, held = None, None
        if len(val_idx) and val_probs is not None:
            train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
            w0, b0, _ = fit_logistic(features[train_idx], y[train_idx], outputs, c)
            start = (w0, b0)
            logits = torch.einsum("nf,gcf->ngc", torch.from_numpy(features[val_idx]).float(), w0) + b0
            cb_val = as_probabilities(logits, spec).numpy()
            w, scores = (float(fixed), {}) if fixed is not None else choose_weight(val_probs, cb_val, score)
            if fixed is None and w != WEIGHTS[0]:
                w, info["weight_check"] = check_weight(val_probs, cb_val, w, score)
            held = mix(val_probs, cb_val, w)
            info["validation_by_weight"] = scores
        else:
            w = 0.5 if fixed is None else float(fixed)
        weight, bias, loss = fit_logistic(features, y, outputs, c, start=start)
        with torch.no_grad():
            module.codebook.weight.copy_(weight.to(module.codebook.weight.device))
            module.codebook.bias.copy_(bias.to(module.codebook.bias.device))
            module.mix.fill_(w)
        info.update({"codebook_train_loss": loss, "description_weight": w})
        info["codebook_middle_layer"] = middle_read(module.codebook)
        return held, info

    def save(self, module, tokenizer, folder: Path) -> dict:
        cb = module.codebook
        head = dict(head_tensors(cb), mix=module.mix.reshape(1))
        save_encoder(cb.backbone, tokenizer, folder, head, CODEBOOK_FILE, sub=CODEBOOK_FOLDER)
        group = members(module)
        entries = [
            save_encoder(m.backbone, tokenizer, folder, m.head_state(), *member_place(k))
            for k, m in enumerate(group, start=1)
        ]
        extra = {"description_members": len(group)} if len(group) > 1 else {}
        return dict(entries[0], codebook_file=CODEBOOK_FILE, codebook_folder=CODEBOOK_FOLDER, **extra)

    def read(self, saved: SavedModel):
        folder, manifest, spec = saved.folder, saved.manifest, saved.spec
        trust_remote_code, allow_pickle = saved.trust_remote_code, saved.allow_pickle
        self.desc.kind = spec.kind
        group = []
        for k in range(1, int(manifest.get("description_members", 1)) + 1):
            head_file, sub = member_place(k)
            member_manifest = {**manifest, "head_file": head_file}
            backbone, tok, head = load_encoder(
                folder, member_manifest, trust_remote_code, allow_pickle, ("classes",), sub=sub
            )
            group.append(description_model(backbone, head, spec, folder / head_file))
        cb_manifest = {**manifest, "head_file": manifest.get("codebook_file")}
        backbone, _, head = load_encoder(
            folder,
            cb_manifest,
            trust_remote_code,
            allow_pickle,
            (*HEAD_TENSORS, "mix"),
            sub=str(manifest.get("codebook_folder", CODEBOOK_FOLDER)),
        )
        description, *others = group
        module = EnsembleModel(description, codebook_model(backbone, head, spec), others)
        module.mix.fill_(float(head["mix"].reshape(-1)[0]))
        return module.to(saved.device).eval(), tok


def member_place(k: int) -> tuple[str, str]:
    """Where description member ``k`` (1, 2, ...) is saved: its tensors' file and its backbone's folder.

    Args:
        k: the member's number; the first member keeps the files of a one-member ensemble.

    Returns:
        ``(head_file, folder)`` inside the model folder.
    """
    return (DESCRIPTION_FILE, "model") if k == 1 else (MEMBER_FILE.format(k=k), MEMBER_FOLDER.format(k=k))


def members(module: EnsembleModel) -> list:
    """The description members of an ensemble.

    Args:
        module: the ensemble.

    Returns:
        Its ``DescriptionModel``s, the first one first.
    """
    return [module.description, *module.others]


def description_members(config) -> int:
    """How many description members to train: ``extra["description_members"]``, ``DESCRIPTION_MEMBERS`` by default.

    Args:
        config: the resolved ``TrainConfig``.

    Returns:
        The number.

    Raises:
        FineclassError: naming ``config`` when it is not a positive whole number.
    """
    n = config.extra.get("description_members", DESCRIPTION_MEMBERS)
    return whole_number(n, "config", minimum=1, hint=" in its extra['description_members']")


def fixed_weight(config) -> float | None:
    """The description member's weight as set in ``extra["description_weight"]``, or None (chosen on validation).

    Args:
        config: the resolved ``TrainConfig``.

    Returns:
        The weight, or None.

    Raises:
        FineclassError: naming ``config`` when it is not a number from 0 to 1.
    """
    fixed = config.extra.get("description_weight")
    if fixed is None:
        return None
    return number(fixed, "config", minimum=0, maximum=1, hint=" in its extra['description_weight']")


def check_weight(description: np.ndarray, codebook: np.ndarray, best: float, score) -> tuple[float, dict]:
    """Keep a weight other than 1/2 only if a split-half check of the held-out documents agrees.

    The held-out documents are split in two (``score.halves()``); on each half the weight is chosen as by
    :func:`choose_weight` and scored on the other half, the decision rule tuned on the first half. ``best`` is kept
    only if that cross-fitted score beats the even mixture's under the same protocol; with fewer than
    ``MIN_CHECK`` held-out documents the even mixture is kept.

    Args:
        description: the description members' probabilities of the held-out documents.
        codebook: the codebook member's (fitted without them).
        best: the weight that scored best on all of them.
        score: a ``training.HeldOutScore`` of these documents.

    Returns:
        ``(w, record)``: the weight kept, and the halves' choices and the check's gain per document.
    """
    n = len(description)
    if n < MIN_CHECK:
        return WEIGHTS[0], {"kept": WEIGHTS[0], "reason": f"fewer than {MIN_CHECK} validation documents"}
    gain, chosen = 0.0, []
    for fit, held in score.halves():
        pick = first_best({w: score.split(mix(description, codebook, w), fit, fit) for w in WEIGHTS})
        chosen.append(pick)
        if pick != WEIGHTS[0]:
            on_held = score.split(mix(description, codebook, pick), fit, held)
            gain += len(held) * (on_held - score.split(mix(description, codebook, WEIGHTS[0]), fit, held))
    kept = best if gain > 1e-9 else WEIGHTS[0]
    return kept, {"kept": kept, "halves_chose": chosen, "split_half_gain": round(gain / n, 4)}


def first_best(scores: dict) -> float:
    """The first key (in insertion order) among those with the highest score; a later one must be strictly better.

    Args:
        scores: ``{choice: score}``.

    Returns:
        The choice.
    """
    keys = list(scores)
    best = keys[0]
    for k in keys[1:]:
        if scores[k] > scores[best] + 1e-12:
            best = k
    return best


def choose_weight(description: np.ndarray, codebook: np.ndarray, score) -> tuple[float, dict]:
    """The description member's weight whose mixture scores best on held-out documents.

    Args:
        description: the description member's probabilities of the held-out documents.
        codebook: the codebook member's (fitted without them).
        score: held-out probabilities -> a score, higher is better.

    Returns:
        ``(w, scores)``: the weight (the first of ``WEIGHTS`` among the best), and each weight's score.
    """
    scores = {w: float(score(mix(description, codebook, w))) for w in WEIGHTS}
    return first_best(scores), {str(w): round(v, 4) for w, v in scores.items()}
