"""TrainConfig: every setting of a fine-tuning run in one validated dataclass.

Settings left at ``None`` take the method's default (the head method's, or the paper's for the generative
method: LoRA r=64, learning rate 2e-4, warmup 0.03, max grad norm 0.3); the resolved values are recorded in
the model's manifest. R passes a named list through ``TrainConfig.from_dict``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional

from ._checks import whole_number
from .errors import FineclassError

FINETUNE = ("auto", "full", "lora", "qlora")


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 16
    learning_rate: Optional[float] = None
    weight_decay: float = 0.01
    warmup_ratio: Optional[float] = None
    max_grad_norm: Optional[float] = None
    max_length: int = 128
    finetune: str = "auto"
    lora_r: Optional[int] = None
    lora_alpha: Optional[int] = None
    lora_dropout: float = 0.05
    lora_targets: Optional[list] = None
    class_weights: Optional[str] = "balanced"
    validation: float = 0.1
    early_stopping: Optional[int] = 2
    threshold: Any = "tune"
    seed: int = 0
    device: str = "auto"
    gradient_accumulation: int = 1
    checkpoint_dir: Optional[str] = None
    prompt: Optional[str] = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "max_length", "gradient_accumulation"):
            setattr(self, name, whole_number(getattr(self, name), name))
        for name in ("lora_r", "lora_alpha", "early_stopping"):
            setattr(self, name, whole_number(getattr(self, name), name, allow_none=True))
        self.seed = whole_number(self.seed, "seed", minimum=None)
        if self.learning_rate is not None and not (0 < float(self.learning_rate) < 1):
            raise FineclassError(f"`learning_rate` must be between 0 and 1; got {self.learning_rate!r}.",
                                 "learning_rate")
        if self.warmup_ratio is not None and not (0 <= float(self.warmup_ratio) < 1):
            raise FineclassError(f"`warmup_ratio` must be in [0, 1); got {self.warmup_ratio!r}.", "warmup_ratio")
        if not (0 <= float(self.validation) < 0.9):
            raise FineclassError(f"`validation` is the share of training rows held out for early stopping and "
                                 f"must be in [0, 0.9); got {self.validation!r}.", "validation")
        if self.finetune not in FINETUNE:
            raise FineclassError(f"`finetune` must be one of {', '.join(FINETUNE)}; got {self.finetune!r}.",
                                 "finetune")
        if self.class_weights not in (None, "balanced", "none"):
            raise FineclassError(f"`class_weights` must be 'balanced' or None; got {self.class_weights!r}.",
                                 "class_weights")
        if self.class_weights == "none":
            self.class_weights = None
        if not (self.threshold == "tune" or isinstance(self.threshold, (int, float))):
            raise FineclassError(f"`threshold` must be 'tune' or a number in (0, 1); got {self.threshold!r}.",
                                 "threshold")
        if self.prompt is not None and "{text}" not in self.prompt:
            raise FineclassError("`prompt` must contain the slot {text}, where each document goes.", "prompt")
        if isinstance(self.lora_targets, str):
            self.lora_targets = [self.lora_targets]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "TrainConfig":
        if d is None:
            return cls()
        if isinstance(d, TrainConfig):
            return d
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise FineclassError(f"`config` has unknown settings: {', '.join(unknown)}. Known settings: "
                                 f"{', '.join(sorted(known))}.", "config")
        return cls(**dict(d))

    def resolved(self, **defaults) -> "TrainConfig":
        """A copy with the ``None`` settings filled in from a method's defaults."""
        values = self.to_dict()
        for k, v in defaults.items():
            if values.get(k) is None:
                values[k] = v
        return TrainConfig(**values)
