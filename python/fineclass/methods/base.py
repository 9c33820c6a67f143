"""Pieces shared by the methods: tokenising with a truncation count, devices, LoRA set-up, safe loading."""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import FineclassError, warn_user

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass
class Encoded:
    ids: list            # list of lists of token ids, truncated to max_length
    truncated: np.ndarray  # bool per document

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


def encode_texts(tokenizer, texts: list[str], max_length: int, add_special_tokens: bool = True) -> Encoded:
    """Token ids per text, truncated to ``max_length``; which documents were cut is recorded, never hidden."""
    if len(texts) == 0:  # tokenizers fail on an empty batch; no documents, no tokens
        return Encoded([], np.zeros(0, dtype=bool))
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=add_special_tokens)
    ids = enc["input_ids"]
    if getattr(enc, "encodings", None):
        truncated = np.array([len(e.overflowing) > 0 for e in enc.encodings], dtype=bool)
    else:  # slow tokenizers: compare with an untruncated pass
        full = tokenizer(list(texts), truncation=False, add_special_tokens=add_special_tokens)["input_ids"]
        truncated = np.array([len(f) > len(t) for f, t in zip(full, ids)], dtype=bool)
    return Encoded(ids, truncated)


def pad_batch(ids_list: list, pad_id: int, device, side: str = "right") -> dict:
    n = len(ids_list)
    width = max(len(x) for x in ids_list)
    input_ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for i, x in enumerate(ids_list):
        if side == "right":
            input_ids[i, :len(x)] = x
            mask[i, :len(x)] = 1
        else:
            input_ids[i, width - len(x):] = x
            mask[i, width - len(x):] = 1
    return {"input_ids": torch.from_numpy(input_ids).to(device), "attention_mask": torch.from_numpy(mask).to(device)}


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU; or what the user asked for."""
    if requested and requested != "auto":
        try:
            dev = torch.device(requested)
        except RuntimeError:
            raise FineclassError(f"`device` {requested!r} is not a device name (use 'auto', 'cpu', 'cuda', "
                                 f"'cuda:1' or 'mps').", "device") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise FineclassError("`device` asks for CUDA but no CUDA GPU is visible. Use device='auto'.", "device")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def inference_dtype(device: torch.device):
    """bf16 on GPUs that support it, fp32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def quiet_transformers():
    """Keep transformers' load reports out of a user's console; our own messages say what matters."""
    try:
        from transformers.utils import logging as tlog
        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except Exception:
        pass
    logging.getLogger("peft").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*were not initialized from the model checkpoint.*")


def check_no_pickle(folder: str | Path, allow_pickle: bool = False, argument: str = "path") -> None:
    """Refuse a model folder whose weights are pickle files (they can run code when loaded)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    pickles = [p.name for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES and p.is_file()]
    if pickles and not allow_pickle:
        raise FineclassError(
            f"`{argument}`: the folder {str(folder)!r} holds pickle files ({', '.join(sorted(pickles)[:5])}), which "
            f"can run code when loaded. fineclass loads safetensors only; convert the weights, or pass "
            f"allow_pickle=True if you trust their source.", argument)


def count_parameters(module: torch.nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return total, trainable


def is_decoder(config) -> bool:
    archs = getattr(config, "architectures", None) or []
    return bool(getattr(config, "is_decoder", False)) or any("CausalLM" in a for a in archs) or \
        getattr(config, "model_type", "") in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gpt2", "phi3")


def resolve_finetune(finetune: str, module, device: torch.device) -> str:
    if finetune == "qlora" and device.type != "cuda":
        warn_user("QLoRA's 4-bit base needs a CUDA GPU and bitsandbytes; on this device fineclass trains "
                  "the same LoRA adapter on the unquantized model instead.")
        return "lora"
    if finetune != "auto":
        return finetune
    total, _ = count_parameters(module)
    return "lora" if (is_decoder(module.config) or total > 300e6) else "full"


def quantization_config():
    """The paper's 4-bit NF4 base for QLoRA (CUDA + bitsandbytes only)."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise FineclassError("finetune='qlora' needs bitsandbytes on a CUDA machine: pip install bitsandbytes",
                             "finetune") from None
    from transformers import BitsAndBytesConfig
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
