"""The description method: a fine-tuned sentence encoder whose class vectors start at the codebook's definitions.

Each class has a vector, initialised from the embedding of its text ("name: description", or its name; see
``methods.encoder``). A document's score for a class is a scaled cosine between its embedding and the class
vector, plus a per-class bias; for the dimension->level shape a linear level head gives each present
dimension's level. Before the first step the model already ranks the classes by their similarity to the
definitions (a zero-shot start), so few labels do not collapse it to the majority class, and every class
shares what the encoder learns about matching a text to a definition.

- single: cross-entropy over the scaled cosines (class weights against imbalance), plus 0.3 x SetFit's pair
  objective inside each batch (every pair's cosine pulled to 1 within a class, to 0 across; ``extra["pair_weight"]``,
  0 for none), which was better on six validation samples of 256 movie reviews and level at 64;
- multi: binary cross-entropy per class, positive weights sqrt((1 - p) / p) clipped to [1, 10];
- dimlevel: that presence loss, plus 0.1 x the cross-entropy of the level of each present dimension.

The encoder trains at ``learning_rate``, the class vectors, scale, biases and level head at
``extra["head_learning_rate"]``; a run takes at least ``min_steps`` (100) optimiser steps however few the
documents; for the multi-label shapes the best epoch is the one with the best validation Jaccard. With
single-label data a validation split of fewer than ``min_validation`` (100) documents is folded back into
training and the last epoch is kept: the loss of a few dozen documents cannot choose an epoch (on 256 movie
reviews it kept epoch 1 of 7; BENCHMARKS.md, "few-label settings").
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import number
from ..labels import LabelSpec
from .base import Encoded, Method, SavedModel, check_complete, encode_texts, pad_batch, register
from .encoder import (
    check_full,
    class_texts,
    embed,
    embed_texts,
    level_shares,
    load_backbone,
    load_encoder,
    save_encoder,
)

HEAD_FILE = "description.safetensors"
SCALE = 20.0  # the initial scale of the cosines (a cosine difference of 0.1 is a logit difference of 2)
LEVEL_WEIGHT = 0.1
PAIR_WEIGHT = 0.3  # single-label: SetFit's pair objective beside the cross-entropy (BENCHMARKS.md)
# single: few labels, gentle rates, the class vectors kept near their definitions (head 1e-4 rather than 1e-3 was
# better on all six validation samples of 64 reviews, level at 256: BENCHMARKS.md, "few-label settings");
# multi-label: many classes to move (issue 19, phase 1)
DEFAULTS = {
    "single": {"learning_rate": 2e-5, "head_learning_rate": 1e-4, "warmup_ratio": 0.1},
    "multi": {"learning_rate": 5e-5, "head_learning_rate": 2e-3, "warmup_ratio": 0.06},
}


class DescriptionModel(torch.nn.Module):
    """An encoder, one vector per class, a learnable scale and per-class biases (and a level head for dimlevel).

    Args:
        backbone: a transformers backbone.
        class_init: (classes, hidden) the class vectors' start.
        kind: the label shape.
        n_levels: the levels of the dimension->level shape (0 otherwise).
    """

    def __init__(self, backbone: torch.nn.Module, class_init: torch.Tensor, kind: str, n_levels: int = 0):
        super().__init__()
        k, hidden = class_init.shape
        self.backbone = backbone
        self.classes = torch.nn.Parameter(class_init.float().clone())
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(SCALE)))
        self.bias = torch.nn.Parameter(torch.zeros(k))
        self.kind = kind
        self.level = None
        if kind == "dimlevel":
            self.level = torch.nn.Linear(hidden, k * n_levels)
            torch.nn.init.zeros_(self.level.weight)
            torch.nn.init.zeros_(self.level.bias)
        self.register_buffer("pos_weight", torch.ones(k), persistent=False)

    def cosines(self, e: torch.Tensor) -> torch.Tensor:
        """Cosines between document embeddings and the class vectors.

        Args:
            e: (documents, hidden) unit-length embeddings.

        Returns:
            (documents, classes).
        """
        return e @ F.normalize(self.classes, dim=-1).T

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits and, for dimlevel, level logits.

        Args:
            batch: ``input_ids`` and ``attention_mask``.

        Returns:
            ``(logits, levels)``: (documents, classes) and (documents, dimensions, levels) or None.
        """
        return self.scores(embed(self.backbone, batch))

    def scores(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits and, for dimlevel, level logits, from document embeddings.

        Args:
            e: (documents, hidden) unit-length embeddings.

        Returns:
            ``(logits, levels)`` as :meth:`forward`.
        """
        logits = self.log_scale.exp() * self.cosines(e) + self.bias
        levels = None
        if self.level is not None:
            levels = self.level(e).view(e.shape[0], self.classes.shape[0], -1)
        return logits, levels

    def head_state(self) -> dict:
        """The tensors besides the backbone's.

        Returns:
            ``{name: tensor}``.
        """
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}


def new_description_model(backbone: torch.nn.Module, tokenizer, spec: LabelSpec) -> DescriptionModel:
    """An untrained description model: one class vector per class, at the embedding of its text.

    Args:
        backbone: a transformers backbone.
        tokenizer: its tokenizer.
        spec: the label set.

    Returns:
        The model.
    """
    described, _ = class_texts(spec)
    return DescriptionModel(backbone, embed_texts(backbone, tokenizer, described), spec.kind, len(spec.levels or []))


@register("description")
class DescriptionMethod(Method):
    """A fine-tuned encoder with class vectors that start at the class descriptions (see the module's description)."""

    min_steps = 100
    min_validation = 100

    def __init__(self):
        self.kind = "single"
        self.pair_weight = 0.0

    def build(self, model_path: str, spec: LabelSpec, config, device, trust_remote_code: bool = False):
        finetune = check_full(config.finetune, "description")
        self.pair_weight = pair_weight(config, spec)
        backbone, tok = load_backbone(model_path, trust_remote_code, config.extra.get("allow_pickle", False))
        backbone = backbone.to(device)
        self.kind = spec.kind
        return new_description_model(backbone, tok, spec).to(device), tok, finetune

    def defaults(self, finetune: str) -> dict:
        d = DEFAULTS["single" if self.kind == "single" else "multi"]
        return {"learning_rate": d["learning_rate"], "warmup_ratio": d["warmup_ratio"], "max_grad_norm": 1.0}

    @torch.no_grad()
    def prepare(self, module, tokenizer, ids_list: list, targets: np.ndarray, spec: LabelSpec) -> None:
        """Start the biases, positive weights and level head from the training documents.

        The biases are the class shares' logits, centred on the mean cosine of up to 256 training documents (so
        that the start predicts the shares on average); the level head starts at each dimension's level shares.

        Args:
            module: the model.
            tokenizer: its tokenizer.
            ids_list: the training documents' token ids.
            targets: their encoded labels.
            spec: the label set.
        """
        if not len(ids_list):
            return
        was = module.training
        module.eval()
        device = module.bias.device
        pick = np.random.default_rng(0).permutation(len(ids_list))[:256]
        cos = []
        for s in range(0, len(pick), 64):
            batch = pad_batch([ids_list[i] for i in pick[s : s + 64]], tokenizer.pad_token_id, device)
            cos.append(module.cosines(embed(module.backbone, batch)))
        mean_cos = torch.cat(cos).mean(0).double().cpu().numpy()
        scale = float(module.log_scale.exp())
        if spec.kind == "single":
            counts = np.bincount(targets, minlength=len(spec.classes)) + 0.5
            bias = np.log(counts / counts.sum()) - scale * (mean_cos - mean_cos.mean())
        else:
            present = np.clip((np.asarray(targets) > 0.5).mean(0), 1e-3, 1 - 1e-3)
            bias = np.log(present / (1 - present)) - scale * mean_cos
            module.pos_weight.copy_(torch.from_numpy(np.clip(np.sqrt((1 - present) / present), 1.0, 10.0)))
        module.bias.copy_(torch.from_numpy(bias))
        if module.level is not None:
            module.level.bias.copy_(torch.from_numpy(np.log(level_shares(targets, spec)).reshape(-1)))
        module.train(was)

    def param_groups(self, module, config) -> list[dict]:
        head_lr = config.extra.get("head_learning_rate")
        if head_lr is None:
            head_lr = DEFAULTS["single" if self.kind == "single" else "multi"]["head_learning_rate"]
        backbone = [p for p in module.backbone.parameters() if p.requires_grad]
        head = [p for n, p in module.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
        return [{"params": backbone, "lr": config.learning_rate}, {"params": head, "lr": float(head_lr)}]

    def monitor(self, spec: LabelSpec) -> str:
        return "loss" if spec.kind == "single" else "jaccard"

    def encode(self, tokenizer, texts: list[str], max_length: int) -> Encoded:
        return encode_texts(tokenizer, texts, max_length)

    def collate(self, tokenizer, ids_list: list, device) -> dict:
        return pad_batch(ids_list, tokenizer.pad_token_id, device, side="right")

    def loss(self, module, batch, targets: torch.Tensor, spec: LabelSpec, weights=None) -> torch.Tensor:
        e = embed(module.backbone, batch)
        logits, levels = module.scores(e)
        if spec.kind == "single":
            loss = F.cross_entropy(logits, targets, weight=weights)
            if self.pair_weight > 0:
                loss = loss + self.pair_weight * pair_loss(e, targets)
            return loss
        present = (targets > 0.5).float() if spec.kind == "multi" else (targets > 0).float()
        loss = F.binary_cross_entropy_with_logits(logits, present, pos_weight=module.pos_weight)
        if levels is not None:
            mask = targets > 0
            if mask.any():
                loss = loss + LEVEL_WEIGHT * F.cross_entropy(levels[mask], targets[mask] - 1)
        return loss

    @torch.no_grad()
    def probabilities(self, module, batch, spec: LabelSpec) -> np.ndarray:
        logits, levels = module(batch)
        logits = logits.float()
        if spec.kind == "single":
            return torch.softmax(logits, dim=-1).cpu().numpy()
        p = torch.sigmoid(logits)
        if levels is None:
            return p.cpu().numpy()
        p = p.unsqueeze(-1)
        out = torch.cat([1 - p, p * torch.softmax(levels.float(), dim=-1)], dim=-1)
        return out.reshape(out.shape[0], -1).cpu().numpy()

    def save(self, module, tokenizer, folder: Path) -> dict:
        return save_encoder(module.backbone, tokenizer, folder, module.head_state(), HEAD_FILE)

    def read(self, saved: SavedModel):
        folder, manifest, spec = saved.folder, saved.manifest, saved.spec
        trust_remote_code, allow_pickle = saved.trust_remote_code, saved.allow_pickle
        backbone, tok, head = load_encoder(folder, manifest, trust_remote_code, allow_pickle, ("classes",))
        self.kind = spec.kind
        return description_model(backbone, head, spec, folder / HEAD_FILE).to(saved.device).eval(), tok


def description_model(backbone: torch.nn.Module, head: dict, spec: LabelSpec, head_file: Path) -> DescriptionModel:
    """A saved description model from its backbone and tensors.

    Args:
        backbone: the fine-tuned backbone.
        head: the tensors besides the backbone's (:meth:`DescriptionModel.head_state`).
        spec: the label set.
        head_file: the file they were read from, for errors.

    Returns:
        The model.

    Raises:
        FineclassError: naming ``path`` when a tensor is missing.
        ValueError: when the file holds tensors the model does not have.
    """
    module = DescriptionModel(backbone, head["classes"], spec.kind, len(spec.levels or []))
    missing, unexpected = module.load_state_dict(head, strict=False)
    check_complete([k for k in missing if not k.startswith("backbone.")], head_file)
    if unexpected:
        raise ValueError(f"{head_file.name} does not fit {spec!r} (unexpected {unexpected})")
    return module


def pair_weight(config, spec: LabelSpec) -> float:
    """The weight of the pair term (:func:`pair_loss`) for single-label data: ``extra["pair_weight"]`` or 0.3.

    Args:
        config: the resolved ``TrainConfig``.
        spec: the label set (the term applies to single-label data only).

    Returns:
        The weight (0 for the other shapes).

    Raises:
        FineclassError: naming ``config`` when it is not a number of at least 0.
    """
    w = config.extra.get("pair_weight", PAIR_WEIGHT)
    w = number(w, "config", minimum=0, finite=True, hint=" in its extra['pair_weight']")
    return w if spec.kind == "single" else 0.0


def pair_loss(e: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """SetFit's pair objective inside one batch: each pair's cosine should be 1 within a class and 0 across.

    Args:
        e: (documents, hidden) unit-length embeddings.
        targets: (documents,) class indices.

    Returns:
        The mean squared error over the batch's pairs (0 for a batch of one document).
    """
    n = e.shape[0]
    if n < 2:
        return e.sum() * 0.0
    i, j = torch.triu_indices(n, n, offset=1, device=e.device)
    cos = (e[i] * e[j]).sum(-1)
    same = (targets[i] == targets[j]).to(cos.dtype)
    return F.mse_loss(cos, same)
