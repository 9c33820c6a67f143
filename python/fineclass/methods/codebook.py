"""The codebook method: a frozen sentence encoder that reads the codebook, and logistic regressions on top.

No gradient step touches the encoder. Each document is read once; its features are its embedding and the cosine
between it and each class's text ("name: description", and the name alone; see ``methods.encoder``), taken from
the last layer and from the middle one (``n_layers // 2``, the class texts embedded at that layer too;
``extra["middle_layer"] = False`` reads the last alone). The middle layer raised the ensemble's mean dev Jaccard
on the flourishing tweets from 0.237 to 0.246 and the codebook method's from 0.229 to 0.234 (rule 17 in
bench/PREREGISTRATION.md). Then, in
closed form on the cached features, one multinomial logistic regression per class (dimlevel: absent and the
levels of each dimension; multi: absent or present per class) or one over all classes (single), L2-penalised
(``TrainConfig.extra["C"]``, default 1), all fitted together by L-BFGS. The regressions' weights are tensors,
saved as safetensors with the encoder. Presence thresholds are tuned on out-of-fold probabilities of the
training documents (``extra["folds"]``, default 5), so no document is held out from the fit.

On the flourishing tweets it was the strongest method without fine-tuning (BENCHMARKS.md, "Accuracy on a
laptop"), at the cost of one encoder pass per document.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import flag, number
from ..labels import LabelSpec
from .base import Encoded, Method, SavedModel, encode_texts, pad_batch, register
from .encoder import class_texts, embed_layers, embed_texts, load_backbone, load_encoder, middle_layer, save_encoder

HEAD_FILE = "codebook.safetensors"
MIDDLE_LAYER = True  # read the middle layer beside the last (rule 17, bench/PREREGISTRATION.md)


class CodebookModel(torch.nn.Module):
    """A frozen backbone, the embeddings of the class texts, and the logistic regressions' weights.

    Args:
        backbone: a transformers backbone (frozen here).
        anchors: unit-length embeddings of the class texts: (layers, texts, hidden), one block per layer read, or
            (texts, hidden) for the last layer alone (models saved before the middle layer was read).
        groups: the regressions (1 for single; one per class otherwise).
        outputs: the answers of each regression (the classes; absent/present; absent and the levels).
        layers: the hidden states read (-1: the last layer), in the order of ``anchors``.
    """

    def __init__(
        self, backbone: torch.nn.Module, anchors: torch.Tensor, groups: int, outputs: int, layers: tuple = (-1,)
    ):
        super().__init__()
        self.backbone = backbone.eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        anchors = anchors.float().reshape(-1, *anchors.shape[-2:])
        if anchors.shape[0] != len(layers):
            raise ValueError(f"{anchors.shape[0]} blocks of class embeddings for the layers {tuple(layers)}")
        width = anchors.shape[0] * (anchors.shape[2] + anchors.shape[1])
        self.register_buffer("anchors", anchors.clone())
        self.register_buffer("layers", torch.tensor([int(x) for x in layers], dtype=torch.int64))
        self.register_buffer("weight", torch.zeros(groups, outputs, width))
        self.register_buffer("bias", torch.zeros(groups, outputs))

    def train(self, mode: bool = True) -> "CodebookModel":
        """Set the training mode; the frozen backbone stays in evaluation mode (no dropout).

        Args:
            mode: training (True) or evaluation.

        Returns:
            This module.
        """
        super().train(mode)
        self.backbone.eval()
        return self

    def features(self, batch: dict) -> torch.Tensor:
        """Per layer read, the embedding and its cosines to the class texts embedded at that layer.

        Args:
            batch: ``input_ids`` and ``attention_mask``.

        Returns:
            (documents, layers x (hidden + texts)).
        """
        parts = []
        for e, anchors in zip(embed_layers(self.backbone, batch, tuple(self.layers.tolist())), self.anchors):
            parts += [e, e @ anchors.T]
        return torch.cat(parts, dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The regressions' logits.

        Args:
            x: (documents, features).

        Returns:
            (documents, groups, outputs).
        """
        return torch.einsum("nf,gcf->ngc", x.to(self.weight.dtype), self.weight) + self.bias


def layout(spec: LabelSpec) -> tuple[int, int]:
    """The regressions of a label set.

    Args:
        spec: the label set.

    Returns:
        ``(groups, outputs)``: (1, classes) single; (classes, 2) multi; (dimensions, levels + 1) dimlevel.
    """
    k = len(spec.classes)
    if spec.kind == "single":
        return 1, k
    if spec.kind == "multi":
        return k, 2
    return k, len(spec.levels) + 1


def group_targets(targets: np.ndarray, spec: LabelSpec) -> np.ndarray:
    """Encoded labels as one answer index per regression.

    Args:
        targets: ``LabelSpec.encode``'s output.
        spec: the label set.

    Returns:
        An int64 array (documents, groups).
    """
    if spec.kind == "single":
        return np.asarray(targets, dtype=np.int64)[:, None]
    return (np.asarray(targets) > 0.5).astype(np.int64) if spec.kind == "multi" else np.asarray(targets, np.int64)


def as_probabilities(logits: torch.Tensor, spec: LabelSpec) -> torch.Tensor:
    """The regressions' logits in the layout of ``Method.probabilities``.

    Args:
        logits: (documents, groups, outputs).
        spec: the label set.

    Returns:
        (documents, ``spec.n_outputs``).
    """
    p = torch.softmax(logits, dim=-1)
    if spec.kind == "single":
        return p[:, 0, :]
    if spec.kind == "multi":
        return p[:, :, 1]
    return p.reshape(p.shape[0], -1)


def fit_logistic(
    x: np.ndarray, y: np.ndarray, outputs: int, c: float = 1.0, max_iter: int = 500, start=None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Multinomial logistic regressions, one per column of ``y``, fitted together by L-BFGS.

    Each minimises ``C * sum_i CE_i + ||W||^2 / 2`` (the bias is not penalised): scikit-learn's
    ``LogisticRegression(C=C)`` for three answers or more; for two, the penalty falls on both rows of the softmax,
    which is scikit-learn's binary regression at ``2 C``. Their sum has the same optimum as each alone, and one
    L-BFGS run over all of them is faster than one each.

    Args:
        x: (documents, features).
        y: (documents, groups) answer indices in ``[0, outputs)``.
        outputs: the answers of each regression.
        c: the inverse L2 penalty.
        max_iter: L-BFGS iterations at most.
        start: ``(weight, bias)`` to start from (a fit on part of the same documents converges sooner), or None:
            zero weights and each answer's share as bias.

    Returns:
        ``(weight, bias, loss)``: (groups, outputs, features) and (groups, outputs) float32 tensors, and the mean
        cross-entropy per document and group at the end.
    """
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    n, width = xt.shape
    groups = yt.shape[1]
    counts = F.one_hot(yt, outputs).sum(0).double() + 0.5  # start at each answer's share
    if start is None:
        weight = torch.zeros(groups, outputs, width, dtype=torch.float64, requires_grad=True)
        bias = torch.log(counts / counts.sum(1, keepdim=True)).requires_grad_(True)
    else:
        weight = start[0].detach().double().clone().requires_grad_(True)
        bias = start[1].detach().double().clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        logits = torch.einsum("nf,gcf->ngc", xt, weight) + bias
        ce = F.cross_entropy(logits.reshape(-1, outputs), yt.reshape(-1), reduction="sum")
        loss = (ce + 0.5 / c * (weight**2).sum()) / n
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
        with torch.no_grad():
            logits = torch.einsum("nf,gcf->ngc", xt, weight) + bias
            ce = float(F.cross_entropy(logits.reshape(-1, outputs), yt.reshape(-1))) if n else 0.0
    return weight.detach().float(), bias.detach().float(), ce


def new_codebook_model(backbone: torch.nn.Module, tokenizer, spec: LabelSpec, middle: bool = True) -> CodebookModel:
    """An unfitted codebook model: the backbone frozen, the class texts embedded (described and by name).

    Args:
        backbone: a transformers backbone.
        tokenizer: its tokenizer.
        spec: the label set.
        middle: read the middle layer beside the last (see the module's description).

    Returns:
        The model, its regressions at zero.
    """
    described, names = class_texts(spec)
    texts = described + names if described != names else names
    layers = (-1, middle_layer(backbone)) if middle else (-1,)
    anchors = embed_texts(backbone, tokenizer, texts, layers=layers)
    return CodebookModel(backbone, anchors, *layout(spec), layers=layers)


def middle_setting(config) -> bool:
    """Whether the codebook's regressions read the middle layer too: ``extra["middle_layer"]``, default True.

    Args:
        config: the resolved ``TrainConfig``.

    Returns:
        True or False.

    Raises:
        FineclassError: naming ``config`` when it is not True or False.
    """
    return flag(
        config.extra.get("middle_layer", MIDDLE_LAYER),
        "config",
        setting="extra['middle_layer']",
        why="True lets the codebook's regressions read the encoder's middle layer beside its last.",
    )


def middle_read(module: CodebookModel) -> int | None:
    """The middle layer a codebook model reads beside the last, for its record (one number, as R reads it).

    Args:
        module: a codebook model.

    Returns:
        The hidden-state index, or None when it reads the last layer alone.
    """
    middle = [x for x in module.layers.tolist() if x != -1]
    return int(middle[0]) if middle else None


def regression_c(config) -> float:
    """The inverse L2 penalty of the regressions, ``extra["C"]`` (default 1).

    Args:
        config: the resolved ``TrainConfig``.

    Returns:
        C.

    Raises:
        FineclassError: naming ``config`` when it is not a positive number.
    """
    return number(config.extra.get("C", 1.0), "config", positive=True, hint=" in its extra['C']")


def fold_index(n: int, folds: int, seed: int) -> np.ndarray:
    """A seeded fold number per document.

    Args:
        n: documents.
        folds: folds.
        seed: the seed.

    Returns:
        An int array (n,) with values in ``[0, folds)``.
    """
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    return fold


@register("codebook")
class CodebookMethod(Method):
    """A frozen encoder's features and the codebook, then logistic regressions (see the module's description)."""

    trains_by_gradient = False

    def build(self, model_path: str, spec: LabelSpec, config, device, trust_remote_code: bool = False):
        middle = middle_setting(config)
        backbone, tok = load_backbone(model_path, trust_remote_code, config.extra.get("allow_pickle", False))
        return new_codebook_model(backbone.to(device), tok, spec, middle).to(device), tok, "frozen"

    def defaults(self, finetune: str) -> dict:
        return {}

    def encode(self, tokenizer, texts: list[str], max_length: int) -> Encoded:
        return encode_texts(tokenizer, texts, max_length)

    def collate(self, tokenizer, ids_list: list, device) -> dict:
        return pad_batch(ids_list, tokenizer.pad_token_id, device, side="right")

    def features(self, module, batch) -> np.ndarray:
        return module.features(batch).cpu().numpy()

    def fit_direct(self, module, features: np.ndarray, targets: np.ndarray, spec: LabelSpec, config):
        c = regression_c(config)
        folds = int(config.extra.get("folds", 5))
        groups, outputs = layout(spec)
        y = group_targets(targets, spec)
        w_all, b_all, loss = fit_logistic(features, y, outputs, c)
        oof = None
        if spec.kind != "single" and folds >= 2 and len(y) >= 2 * folds:
            oof = np.zeros((len(y), spec.n_outputs))
            fold = fold_index(len(y), folds, config.seed)
            for k in range(folds):  # each fold starts at the fit on all documents: the same optimum, sooner
                w, b, _ = fit_logistic(features[fold != k], y[fold != k], outputs, c, start=(w_all, b_all))
                x = torch.from_numpy(features[fold == k])
                logits = torch.einsum("nf,gcf->ngc", x.float(), w) + b
                oof[fold == k] = as_probabilities(logits, spec).numpy()
        with torch.no_grad():
            module.weight.copy_(w_all.to(module.weight.device))
            module.bias.copy_(b_all.to(module.bias.device))
        info = {"train_loss": loss, "C": c, "folds": folds if oof is not None else 0}
        return oof, dict(info, middle_layer=middle_read(module))

    def loss(self, module, batch, targets: torch.Tensor, spec: LabelSpec, weights=None) -> torch.Tensor:
        logits = module.logits(module.features(batch))
        y = torch.from_numpy(group_targets(targets.cpu().numpy(), spec)).to(logits.device)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    @torch.no_grad()
    def probabilities(self, module, batch, spec: LabelSpec) -> np.ndarray:
        return as_probabilities(module.logits(module.features(batch)), spec).cpu().numpy()

    def save(self, module, tokenizer, folder: Path) -> dict:
        return save_encoder(module.backbone, tokenizer, folder, head_tensors(module), HEAD_FILE)

    def read(self, saved: SavedModel):
        folder, manifest, spec = saved.folder, saved.manifest, saved.spec
        trust_remote_code, allow_pickle = saved.trust_remote_code, saved.allow_pickle
        backbone, tok, head = load_encoder(folder, manifest, trust_remote_code, allow_pickle, HEAD_TENSORS)
        return codebook_model(backbone, head, spec).to(saved.device).eval(), tok


HEAD_TENSORS = ("anchors", "weight", "bias")  # required; ``layers`` is absent from models saved before it


def head_tensors(module: CodebookModel) -> dict:
    """The tensors a saved codebook model keeps beside its backbone (read back by :func:`codebook_model`).

    Args:
        module: a codebook model.

    Returns:
        ``{name: tensor}``: the class texts' embeddings, the layers read, the regressions' weights and biases.
    """
    return {"anchors": module.anchors, "layers": module.layers, "weight": module.weight, "bias": module.bias}


def codebook_model(backbone: torch.nn.Module, head: dict, spec: LabelSpec) -> CodebookModel:
    """A saved codebook model from its backbone and tensors.

    Args:
        backbone: the (frozen) backbone.
        head: the tensors :meth:`CodebookMethod.save` wrote (``anchors``, ``weight``, ``bias``, and ``layers``
            since the middle layer is read; without it, the last layer alone).
        spec: the label set.

    Returns:
        The model.

    Raises:
        ValueError: when the regressions do not fit the label set.
    """
    groups, outputs = layout(spec)
    if tuple(head["weight"].shape[:2]) != (groups, outputs):
        raise ValueError(f"{HEAD_FILE} holds regressions of shape {tuple(head['weight'].shape)} for {spec!r}")
    layers = tuple(head["layers"].tolist()) if "layers" in head else (-1,)  # older models: the last layer alone
    module = CodebookModel(backbone, head["anchors"], groups, outputs, layers)
    with torch.no_grad():
        module.weight.copy_(head["weight"])
        module.bias.copy_(head["bias"])
    return module
