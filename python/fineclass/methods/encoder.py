"""Sentence-encoder pieces shared by the codebook-aware methods (``codebook``, ``description``).

A backbone (``transformers.AutoModel``) reads a document once; its last layer, mean-pooled over the document's
tokens and scaled to unit length, is the document's embedding (the recipe of sentence encoders such as MiniLM).
The classes are read the same way: each class's text is its codebook name and description ("name:
description"), or its name (its code when it has none).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FineclassError
from ..labels import LabelSpec
from ..models import load_error
from .base import check_complete, check_no_pickle, encode_texts, pad_batch, quiet_transformers


def class_texts(spec: LabelSpec) -> tuple[list[str], list[str]]:
    """What the model reads for each class.

    Args:
        spec: the label set (its ``names`` and ``descriptions`` come from ``codebook=``).

    Returns:
        ``(described, names)``: per class, "name: description" (its name alone when it has no description), and
        its name (its code when it has none).
    """
    names = [spec.label_name(c) for c in spec.classes]
    described = [f"{n}: {spec.descriptions[c]}" if spec.descriptions.get(c) else n for c, n in zip(spec.classes, names)]
    return described, names


def load_backbone(
    path: str, trust_remote_code: bool = False, allow_pickle: bool = False, argument: str = "model", complete=False
):
    """A transformers backbone without a head, and its tokenizer.

    Args:
        path: a local folder or hub id.
        trust_remote_code: let transformers run the model's own code.
        allow_pickle: accept pickle weight files.
        argument: the argument that named the model, for errors.
        complete: refuse weights that lack a tensor of the architecture (a saved model's backbone must be whole).

    Returns:
        ``(backbone, tokenizer)``; the tokenizer has a padding token.

    Raises:
        FineclassError: naming ``argument`` when the model cannot be loaded, holds pickle files, or (``complete``)
            lacks tensors.
    """
    from transformers import AutoModel, AutoTokenizer

    quiet_transformers()
    check_no_pickle(path, allow_pickle, argument)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        backbone, info = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code, output_loading_info=True)
    except (OSError, ValueError) as e:
        raise load_error(path, e) from None
    if complete:
        check_complete(info["missing_keys"], path, argument)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    backbone.config.pad_token_id = tok.pad_token_id
    return backbone, tok


def embed(backbone: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Unit-length document embeddings: the last layer mean-pooled over each document's tokens.

    Args:
        backbone: a transformers backbone.
        batch: ``input_ids`` and ``attention_mask``.

    Returns:
        (documents, hidden) in fp32.
    """
    hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return pool(hidden, batch["attention_mask"])


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One layer's hidden states mean-pooled over each document's tokens and scaled to unit length.

    Args:
        hidden: (documents, tokens, hidden).
        attention_mask: (documents, tokens), 1 for a document's tokens.

    Returns:
        (documents, hidden) in fp32.
    """
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return F.normalize(pooled.float(), dim=-1)


def middle_layer(backbone: torch.nn.Module) -> int:
    """The index of the encoder's middle layer among its hidden states (0 is the embeddings).

    Args:
        backbone: a transformers backbone.

    Returns:
        ``n_layers // 2`` (3 of MiniLM's 6), at least 1.
    """
    n = getattr(backbone.config, "num_hidden_layers", None) or getattr(backbone.config, "n_layer", None) or 2
    return max(1, int(n) // 2)


def embed_layers(backbone: torch.nn.Module, batch: dict, layers: tuple) -> list[torch.Tensor]:
    """Unit-length document embeddings from several layers of one pass, each mean-pooled as :func:`embed`.

    Args:
        backbone: a transformers backbone.
        batch: ``input_ids`` and ``attention_mask``.
        layers: hidden-state indices; -1 is the last layer (``last_hidden_state``).

    Returns:
        One (documents, hidden) fp32 tensor per layer, in the order of ``layers``.
    """
    if tuple(layers) == (-1,):
        return [embed(backbone, batch)]
    out = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    return [
        pool(out.last_hidden_state if layer == -1 else out.hidden_states[layer], batch["attention_mask"])
        for layer in layers
    ]


@torch.no_grad()
def embed_texts(
    backbone: torch.nn.Module, tokenizer, texts: list[str], max_length: int = 256, layers: tuple | None = None
) -> torch.Tensor:
    """Embeddings of a few texts (class descriptions), in one pass without gradients.

    Args:
        backbone: a transformers backbone.
        tokenizer: its tokenizer.
        texts: the texts.
        max_length: the most tokens read per text.
        layers: None: the last layer; else hidden-state indices (see :func:`embed_layers`).

    Returns:
        (texts, hidden) in fp32, on the backbone's device; (layers, texts, hidden) when ``layers`` is given.
    """
    was = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    out = []
    for s in range(0, len(texts), 64):
        enc = encode_texts(tokenizer, texts[s : s + 64], max_length)
        batch = pad_batch(enc.ids, tokenizer.pad_token_id, device)
        out.append(embed(backbone, batch) if layers is None else torch.stack(embed_layers(backbone, batch, layers)))
    backbone.train(was)
    return torch.cat(out, dim=0 if layers is None else 1)


def save_encoder(backbone, tokenizer, folder: Path, head: dict, head_file: str, sub: str = "model") -> dict:
    """Write the backbone and tokenizer (``model/``) and the method's own tensors (one safetensors file).

    Args:
        backbone: the backbone.
        tokenizer: its tokenizer.
        folder: the model folder being written.
        head: the method's tensors by name.
        head_file: their file's name inside ``folder``.
        sub: the backbone's folder inside ``folder``.

    Returns:
        The manifest entries ``{"weights": "model", "head_file": head_file}``.
    """
    from safetensors.torch import save_file

    backbone.save_pretrained(str(folder / sub), safe_serialization=True)
    tokenizer.save_pretrained(str(folder / sub))
    save_file({k: v.detach().cpu().contiguous() for k, v in head.items()}, str(folder / head_file))
    return {"weights": "model", "head_file": head_file}


def load_encoder(folder: Path, manifest: dict, trust_remote_code: bool, allow_pickle: bool, needs=(), sub="model"):
    """Read back what :func:`save_encoder` wrote.

    Args:
        folder: the saved model's folder.
        manifest: its ``fineclass.json``.
        trust_remote_code: let transformers run the model's own code.
        allow_pickle: accept pickle weight files.
        needs: the names of the method's tensors that the file must hold.
        sub: the backbone's folder inside ``folder``.

    Returns:
        ``(backbone, tokenizer, head)``: the method's tensors by name.

    Raises:
        FineclassError: naming ``path`` when the method's tensor file is missing or lacks a tensor of ``needs``,
            or the backbone's weights lack a tensor.
    """
    from safetensors.torch import load_file

    check_no_pickle(folder, allow_pickle, "path")
    head_file = folder / str(manifest.get("head_file", ""))
    if not manifest.get("head_file") or not head_file.is_file():
        raise FineclassError(
            f"`path` {str(folder)!r}: the {manifest.get('method')} method's tensors "
            f"({manifest.get('head_file')!r}) are missing. Save the model again.",
            "path",
        )
    head = load_file(str(head_file))
    check_complete([k for k in needs if k not in head], head_file)
    backbone, tok = load_backbone(str(folder / sub), trust_remote_code, allow_pickle, "path", complete=True)
    return backbone, tok, head


def check_full(finetune: str, method: str) -> str:
    """The fine-tuning mode of the encoder methods: the whole encoder (``full``) only.

    Args:
        finetune: ``TrainConfig.finetune``.
        method: the method's name, for the error.

    Returns:
        ``"full"``.

    Raises:
        FineclassError: naming ``finetune`` for LoRA or QLoRA.
    """
    if finetune not in ("auto", "full"):
        raise FineclassError(
            f"the {method} method trains a small encoder whole; finetune={finetune!r} is not available for it "
            f"(use finetune='auto' or 'full', or method='head' for LoRA).",
            "finetune",
        )
    return "full"


def level_shares(targets: np.ndarray, spec: LabelSpec) -> np.ndarray:
    """Each dimension's shares of its levels among the documents where it is present (smoothed by 0.5).

    Args:
        targets: (documents, dimensions) level indices, 0 = absent.
        spec: the label set (dimlevel).

    Returns:
        An array (dimensions, levels), rows summing to one.
    """
    n_levels = len(spec.levels)
    counts = np.stack([np.bincount(targets[:, j], minlength=n_levels + 1)[1:] for j in range(targets.shape[1])])
    counts = counts.astype(np.float64) + 0.5
    return counts / counts.sum(1, keepdims=True)
