"""The head method: a sequence-classification head on an encoder or decoder backbone.

Trained fully or with LoRA (peft). For the dimension->level shape the head has D * (L + 1) outputs: for each
dimension a softmax over (absent, level 1, ..., level L).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FineclassError
from ..labels import LabelSpec
from ..models import load_error
from .base import (
    Encoded,
    Method,
    check_complete,
    check_no_pickle,
    encode_texts,
    load_adapter,
    pad_batch,
    quantization_config,
    quiet_transformers,
    register,
    resolve_finetune,
)

HEAD_DEFAULTS = {
    "learning_rate_full": 5e-5,
    "learning_rate_lora": 2e-4,
    "warmup_ratio": 0.06,
    "max_grad_norm": 1.0,
    "lora_r": 16,
    "lora_alpha": 32,
}


@register("head")
class HeadMethod(Method):
    """A sequence-classification head on the backbone (see the module's description)."""

    # ------------------------------------------------------------------ model
    def build(self, model_path: str, spec: LabelSpec, config, device, trust_remote_code: bool = False):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        quiet_transformers()
        check_no_pickle(model_path, config.extra.get("allow_pickle", False), "model")
        kwargs = {}
        if config.finetune == "qlora" and device.type == "cuda":
            kwargs["quantization_config"] = quantization_config()
        try:
            tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
            module = AutoModelForSequenceClassification.from_pretrained(
                model_path,
                num_labels=spec.n_outputs,
                trust_remote_code=trust_remote_code,
                ignore_mismatched_sizes=True,
                **kwargs,
            )
        except (OSError, ValueError) as e:
            raise load_error(model_path, e) from None
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        module.config.pad_token_id = tok.pad_token_id
        finetune = resolve_finetune(config.finetune, module, device)
        if finetune in ("lora", "qlora"):
            module = self._lora(module, config)
        return module.to(device) if "quantization_config" not in kwargs else module, tok, finetune

    def _lora(self, module, config):
        from peft import LoraConfig, TaskType, get_peft_model

        save = [n for n in ("pooler",) if any(name.endswith(n) for name, _ in module.named_modules())]
        lcfg = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=config.lora_r or HEAD_DEFAULTS["lora_r"],
            lora_alpha=config.lora_alpha or HEAD_DEFAULTS["lora_alpha"],
            lora_dropout=config.lora_dropout,
            target_modules=config.lora_targets or "all-linear",
            modules_to_save=save or None,
        )
        return get_peft_model(module, lcfg)

    def defaults(self, finetune: str) -> dict:
        lr = HEAD_DEFAULTS["learning_rate_lora" if finetune in ("lora", "qlora") else "learning_rate_full"]
        return {
            "learning_rate": lr,
            "warmup_ratio": HEAD_DEFAULTS["warmup_ratio"],
            "max_grad_norm": HEAD_DEFAULTS["max_grad_norm"],
            "lora_r": HEAD_DEFAULTS["lora_r"],
            "lora_alpha": HEAD_DEFAULTS["lora_alpha"],
        }

    # ------------------------------------------------------------------ data
    def encode(self, tokenizer, texts: list[str], max_length: int) -> Encoded:
        return encode_texts(tokenizer, texts, max_length)

    def collate(self, tokenizer, ids_list: list, device) -> dict:
        return pad_batch(ids_list, tokenizer.pad_token_id, device, side="right")

    # ------------------------------------------------------------------ maths
    def logits(self, module, batch) -> torch.Tensor:
        """The head's raw outputs for one batch, in fp32.

        Args:
            module: the model.
            batch: from :meth:`collate`.

        Returns:
            (documents, outputs) logits.
        """
        return module(**batch).logits.float()

    def loss(self, module, batch, targets: torch.Tensor, spec: LabelSpec, weights=None) -> torch.Tensor:
        logits = self.logits(module, batch)
        return head_loss(logits, targets, spec, weights)

    @torch.no_grad()
    def probabilities(self, module, batch, spec: LabelSpec) -> np.ndarray:
        return head_probabilities(self.logits(module, batch), spec).cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, module, tokenizer, folder: Path) -> dict:
        from peft import PeftModel

        if isinstance(module, PeftModel):
            module.save_pretrained(str(folder / "adapter"), safe_serialization=True)
            tokenizer.save_pretrained(str(folder / "adapter"))
            return {"weights": "adapter"}
        module.save_pretrained(str(folder / "model"), safe_serialization=True)
        tokenizer.save_pretrained(str(folder / "model"))
        return {"weights": "model"}

    def load(
        self,
        folder: Path,
        manifest: dict,
        spec: LabelSpec,
        device,
        base_path: str | None,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
    ):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        quiet_transformers()
        check_no_pickle(folder, allow_pickle, "path")
        revision = manifest.get("base_revision")
        if manifest["weights"] == "model":
            tok = AutoTokenizer.from_pretrained(str(folder / "model"))
            module, info = AutoModelForSequenceClassification.from_pretrained(
                str(folder / "model"),
                use_safetensors=True,
                trust_remote_code=trust_remote_code,
                output_loading_info=True,
            )
            check_complete(info["missing_keys"], folder / "model")
        else:
            if base_path is None:
                raise FineclassError(
                    "this model is a LoRA adapter and its base model could not be found; pass "
                    "`base_model=` with the base model's folder or hub id.",
                    "base_model",
                )
            check_no_pickle(base_path, allow_pickle, "base_model")
            tok = AutoTokenizer.from_pretrained(str(folder / "adapter"))
            base = AutoModelForSequenceClassification.from_pretrained(
                base_path,
                num_labels=spec.n_outputs,
                trust_remote_code=trust_remote_code,
                ignore_mismatched_sizes=True,
                **({"revision": revision} if revision else {}),
            )
            base.config.pad_token_id = tok.pad_token_id
            module = load_adapter(base, folder / "adapter")
        module.config.pad_token_id = tok.pad_token_id
        return module.to(device).eval(), tok


def head_loss(logits: torch.Tensor, targets: torch.Tensor, spec: LabelSpec, weights=None) -> torch.Tensor:
    """The loss of the head method for one batch.

    Args:
        logits: (documents, outputs).
        targets: the encoded labels.
        spec: the label set.
        weights: class weights, or None.

    Returns:
        Cross-entropy (single; per dimension over absent and the levels, dimlevel) or binary cross-entropy
        (multi).
    """
    if spec.kind == "single":
        return F.cross_entropy(logits, targets, weight=weights)
    if spec.kind == "multi":
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights)
    d, l1 = len(spec.classes), len(spec.levels) + 1
    return F.cross_entropy(logits.view(-1, d, l1).reshape(-1, l1), targets.reshape(-1), weight=weights)


def head_probabilities(logits: torch.Tensor, spec: LabelSpec) -> torch.Tensor:
    """The head's logits as probabilities in the layout of ``Method.probabilities``.

    Args:
        logits: (documents, outputs).
        spec: the label set.

    Returns:
        Softmax (single; per dimension, dimlevel) or sigmoid (multi) probabilities.
    """
    if spec.kind == "single":
        return torch.softmax(logits, dim=-1)
    if spec.kind == "multi":
        return torch.sigmoid(logits)
    d, l1 = len(spec.classes), len(spec.levels) + 1
    return torch.softmax(logits.view(-1, d, l1), dim=-1).reshape(logits.shape[0], d * l1)
