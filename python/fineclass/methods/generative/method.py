"""The generative method: the label as text, trained on the answer tokens and predicted by scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..._checks import whole_number
from ...errors import FineclassError, warn_user
from ...labels import LabelSpec
from ...prompts import check_codebook_covers, default_template
from ..base import (
    Encoded,
    Method,
    check_complete,
    check_no_pickle,
    inference_dtype,
    load_adapter,
    quantization_config,
    quiet_transformers,
    register,
    resolve_finetune,
)
from .forward import autocast, candidate_probabilities, forward_hidden, head_cache, model_parts, row_budget, tree_arrays
from .loading import check_causal, load_causal_lm, load_tokenizer
from .plan import Plan
from .precision import DTYPES, set_precision

GEN_DEFAULTS = {
    "learning_rate_lora": 2e-4,
    "learning_rate_full": 2e-5,
    "warmup_ratio": 0.03,
    "max_grad_norm": 0.3,
    "lora_r": 64,
    "lora_alpha": 16,
}
BASE_ONLY = "fineclass_base_only.json"


@register("generative")
class GenerativeMethod(Method):
    """The label as text, scored (see the module's description)."""

    def __init__(self):
        self.plan: Plan | None = None
        self.absent_blocks: int | None = None

    # ------------------------------------------------------------------ model
    def build(self, model_path: str, spec: LabelSpec, config, device, trust_remote_code: bool = False):
        quiet_transformers()
        check_no_pickle(model_path, config.extra.get("allow_pickle", False), "model")
        check_codebook_covers(spec)
        check_causal(model_path, trust_remote_code)
        tok = load_tokenizer(model_path, trust_remote_code)
        template = config.prompt if config.prompt is not None else default_template(spec)
        plan = Plan(tok, spec, template, argument="label", scoring=config.extra.get("scoring", "prefix"))
        self.absent_blocks = whole_number(
            config.extra.get("absent_blocks"), "absent_blocks", minimum=0, allow_none=True, hint=" (in `config.extra`)"
        )
        kwargs = {}
        quantized = config.finetune == "qlora" and device.type == "cuda"
        if quantized:
            kwargs["quantization_config"] = quantization_config()
            kwargs["device_map"] = {"": device.index or 0}
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported() and config.finetune != "full"
        module = load_causal_lm(model_path, torch.bfloat16 if bf16 else torch.float32, trust_remote_code, **kwargs)
        finetune = resolve_finetune(config.finetune, module, device)
        if finetune in ("lora", "qlora"):
            from peft import LoraConfig, TaskType, get_peft_model

            if quantized:
                from peft import prepare_model_for_kbit_training

                module = prepare_model_for_kbit_training(module, use_gradient_checkpointing=False)
            lcfg = LoraConfig(
                task_type=TaskType.CAUSAL_LM,
                r=config.lora_r or GEN_DEFAULTS["lora_r"],
                lora_alpha=config.lora_alpha or GEN_DEFAULTS["lora_alpha"],
                lora_dropout=config.lora_dropout,
                target_modules=config.lora_targets or "all-linear",
            )
            module = get_peft_model(module, lcfg)
        if not quantized:
            module = module.to(device)
        self.plan = plan
        module._fineclass_generative = plan.to_dict()
        return module, tok, finetune

    def defaults(self, finetune: str) -> dict:
        lr = GEN_DEFAULTS["learning_rate_lora" if finetune in ("lora", "qlora") else "learning_rate_full"]
        out = {
            "learning_rate": lr,
            "warmup_ratio": GEN_DEFAULTS["warmup_ratio"],
            "max_grad_norm": GEN_DEFAULTS["max_grad_norm"],
            "lora_r": GEN_DEFAULTS["lora_r"],
            "lora_alpha": GEN_DEFAULTS["lora_alpha"],
        }
        if self.plan is not None:
            out["prompt"] = self.plan.template
        return out

    def _need_plan(self) -> Plan:
        if self.plan is None:
            raise RuntimeError("the generative method has no prompt plan: build() or load() it first")
        return self.plan

    # ------------------------------------------------------------------ data
    def encode(self, tokenizer, texts: list[str], max_length: int) -> Encoded:
        return self._need_plan().encode(tokenizer, texts, max_length)

    def collate(self, tokenizer, ids_list: list, device) -> dict:
        plan = self._need_plan()
        h = len(plan.head_ids)
        rests = []
        for ids in ids_list:
            if list(ids[:h]) != plan.head_ids:
                raise RuntimeError("a document was encoded with another prompt than this model's")
            rests.append(list(ids[h:]))
        return {"rest": rests, "device": device}

    # ------------------------------------------------------------------ maths
    def loss(self, module, batch, targets: torch.Tensor, spec: LabelSpec, weights=None) -> torch.Tensor:
        """Mean negative log-likelihood of the answer tokens (weighted by class when ``weights`` is given).

        The paper-form answer is trained; for the multi-label shapes the per-class blocks too (see the package's
        description), each attending to the prompt only.

        Args:
            module: the model.
            batch: from :meth:`collate`.
            targets: the encoded labels.
            spec: the label set.
            weights: class weights, or None.

        Returns:
            A scalar tensor.
        """
        plan = self._need_plan()
        tok_lists, seg_lists, off_lists, sup_lists, w_lists = [], [], [], [], []
        tnp = targets.detach().cpu().numpy()
        wnp = weights.detach().cpu().numpy() if weights is not None else None
        for i in range(len(batch["rest"])):
            segments = []  # (tokens, first supervised offset, weight)
            target = tnp[i]
            w_answer = float(wnp[int(target)]) if (wnp is not None and spec.kind == "single") else 1.0
            segments.append((plan.answer_ids(target) + [plan.end_id], 0, w_answer))
            if spec.kind != "single":
                options = (target > 0.5).astype(int) if spec.kind == "multi" else target.astype(int)
                groups, scale = self._blocks_to_train(options, module.training)
                for g in groups:
                    opt = int(options[g])
                    if wnp is None:
                        w = 1.0
                    elif spec.kind == "multi":
                        w = float(wnp[g]) if opt == 1 else 1.0
                    else:
                        w = float(wnp[opt])
                    w *= scale if opt == 0 else 1.0
                    segments.append((plan.cand_tokens[g][opt] + [plan.end_id], plan.common[g], w))
            toks, segs, offs, sup, ws = [], [], [], [], []
            for k, (seq, first, w) in enumerate(segments):
                toks += seq
                segs += [k] * len(seq)
                offs += list(range(len(seq)))
                sup += [j >= first for j in range(len(seq))]
                ws += [w] * len(seq)
            tok_lists.append(toks)
            seg_lists.append(segs)
            off_lists.append(offs)
            sup_lists.append(sup)
            w_lists.append(ws)
        n = len(tok_lists)
        t = max(len(x) for x in tok_lists)
        tokens = np.full((n, t), plan.pad_id, dtype=np.int64)
        segs = np.full((n, t), -1, dtype=np.int64)
        offs = np.zeros((n, t), dtype=np.int64)
        sup = np.zeros((n, t), dtype=bool)
        ws = np.zeros((n, t), dtype=np.float32)
        for i in range(n):
            k = len(tok_lists[i])
            tokens[i, :k], segs[i, :k], offs[i, :k] = tok_lists[i], seg_lists[i], off_lists[i]
            sup[i, :k], ws[i, :k] = sup_lists[i], w_lists[i]
        valid = segs >= 0
        anc = (segs[:, :, None] == segs[:, None, :]) & (offs[:, None, :] <= offs[:, :, None]) & valid[:, None, :]
        device = batch["device"]
        rows, nodes = np.nonzero(sup)
        with autocast(device):
            hidden, r = forward_hidden(module, plan, batch["rest"], (tokens, offs, valid, anc), device)
            # a node's distribution comes from its predecessor: the end of the prompt for a segment's first token
            pred_col = np.where(offs[rows, nodes] == 0, r - 1, r + nodes - 1)
            h = hidden[torch.from_numpy(rows).to(device), torch.from_numpy(pred_col).to(device)]
            _, _, head = model_parts(module)
            logits = head(h).float()
        nll = F.cross_entropy(logits, torch.from_numpy(tokens[rows, nodes]).to(device), reduction="none")
        w = torch.from_numpy(ws[rows, nodes]).to(device)
        return (nll * w).sum() / w.sum().clamp_min(1e-8)

    def _blocks_to_train(self, options: np.ndarray, training: bool) -> tuple[list[int], float]:
        """Which per-class blocks one document trains on, and the weight of each absent one.

        All blocks by default. With ``absent_blocks=k`` (TrainConfig.extra) and in training mode: every present
        class plus k absent ones drawn at random (torch's generator, so seeded like the rest of the run), each
        weighted (number absent) / k, which keeps the expected loss equal to the loss over all blocks. Validation
        and scoring always use all blocks.
        """
        every = list(range(len(options)))
        k = self.absent_blocks
        absent = [g for g in every if options[g] == 0]
        if not training or k is None or k >= len(absent):
            return every, 1.0
        chosen = [absent[int(i)] for i in torch.randperm(len(absent))[:k]] if k > 0 else []
        keep = sorted([g for g in every if options[g] != 0] + chosen)
        return keep, (len(absent) / k if k > 0 else 0.0)

    def scoring_session(self):
        """Within it (one classify or predict call), the prompt head's keys and values are computed once."""
        return head_cache()

    @torch.no_grad()
    def probabilities(self, module, batch, spec: LabelSpec) -> np.ndarray:
        """Scores of every candidate continuation -> probabilities, in one forward pass per chunk of rows.

        Args:
            module: the model.
            batch: from :meth:`collate`.
            spec: the label set.

        Returns:
            (documents, outputs) probabilities in the layout of ``Method.probabilities``.
        """
        plan = self._need_plan()
        rests = batch["rest"]
        device = batch["device"]
        t = len(plan.tree_tokens)
        per_row = max(len(x) for x in rests) + t
        step = max(1, row_budget(device) // per_row)
        out = []
        for s in range(0, len(rests), step):
            chunk = rests[s : s + step]
            with autocast(device):
                hidden, r = forward_hidden(module, plan, chunk, tree_arrays(plan, len(chunk)), device)
                out.append(candidate_probabilities(module, plan, hidden, r))
        return np.concatenate(out, axis=0)

    # ------------------------------------------------------------------ persistence
    def save(self, module, tokenizer, folder: Path) -> dict:
        """Write the LoRA adapter (or full weights) with the tokenizer; the prompt plan goes into the manifest.

        A zero-shot model saves its tokenizer and a note only: its base is referenced, not copied.

        Args:
            module: the model.
            tokenizer: its tokenizer.
            folder: the model folder being written.

        Returns:
            Manifest entries: ``weights``, ``generative`` (the plan) and ``precision`` (from ``merge_for_inference``).
        """
        plan = getattr(module, "_fineclass_generative", None)
        if hasattr(module, "peft_config"):
            module.save_pretrained(str(folder / "adapter"), safe_serialization=True)
            tokenizer.save_pretrained(str(folder / "adapter"))
            weights = "adapter"
        elif getattr(module, "_fineclass_zero_shot", False):
            # zero-shot: nothing was trained, so only the tokenizer and a note are saved; the base is referenced
            (folder / "adapter").mkdir(parents=True, exist_ok=True)
            tokenizer.save_pretrained(str(folder / "adapter"))
            (folder / "adapter" / BASE_ONLY).write_text(json.dumps({"zero_shot": True}), encoding="utf-8")
            weights = "adapter"
        else:
            module.save_pretrained(str(folder / "model"), safe_serialization=True)
            tokenizer.save_pretrained(str(folder / "model"))
            weights = "model"
        # the precision merge_for_inference() chose (None: the device's default), restored by load()
        return {"weights": weights, "generative": plan, "precision": getattr(module, "_fineclass_precision", None)}

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
        quiet_transformers()
        check_no_pickle(folder, allow_pickle, "path")
        dtype = inference_dtype(device)
        if manifest["weights"] == "model":
            tok = load_tokenizer(str(folder / "model"), trust_remote_code)
            module, info = load_causal_lm(
                str(folder / "model"), dtype, trust_remote_code, "path", output_loading_info=True
            )
            check_complete(info["missing_keys"], folder / "model")
        else:
            if base_path is None:
                raise FineclassError(
                    "this model is a LoRA adapter (or a zero-shot prompt) and its base model could "
                    "not be found; pass `base_model=` with the base model's folder or hub id.",
                    "base_model",
                )
            check_no_pickle(base_path, allow_pickle, "base_model")
            tok = load_tokenizer(str(folder / "adapter"), trust_remote_code)
            kwargs = {}
            if manifest.get("finetune") == "qlora":  # the adapter was trained on the 4-bit base: use it again
                if device.type == "cuda":
                    kwargs = {"quantization_config": quantization_config(), "device_map": {"": device.index or 0}}
                else:
                    warn_user(
                        "this adapter was trained with QLoRA on a 4-bit base; without a CUDA GPU it is "
                        "applied to the unquantized base, so predictions can differ slightly."
                    )
            if manifest.get("base_revision"):
                kwargs["revision"] = manifest["base_revision"]
            base = load_causal_lm(base_path, dtype, trust_remote_code, "base_model", **kwargs)
            if (folder / "adapter" / "adapter_config.json").exists():
                module = load_adapter(base, folder / "adapter")
            else:
                module = base
                module._fineclass_zero_shot = True
        info = manifest.get("generative") or {"template": (manifest.get("config") or {}).get("prompt"), "chat": None}
        if not info.get("template"):
            raise FineclassError(
                f"`path` {str(folder)!r}: the manifest records no prompt for this generative model; it cannot be used.",
                "path",
            )
        self.plan = Plan(tok, spec, info["template"], chat=info.get("chat"), scoring=info.get("scoring", "full"))
        precision = manifest.get("precision")
        if precision and not hasattr(module, "peft_config"):
            if precision.get("dtype") not in DTYPES or precision.get("activations") not in (None, *DTYPES):
                raise FineclassError(
                    f"`path` {str(folder)!r}: the manifest's precision {precision!r} is not one "
                    f"fineclass knows; save the model again.",
                    "path",
                )
            module = set_precision(module, precision)
        module._fineclass_generative = self.plan.to_dict()
        if not getattr(module, "is_loaded_in_4bit", False) and not getattr(module, "hf_device_map", None):
            module = module.to(device)
        return module.eval(), tok
