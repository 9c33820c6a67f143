"""Precision of a generative model for inference: bf16 weights, with fp32 activations if asked."""

from __future__ import annotations

import torch
import torch.nn.functional as F

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LowPrecisionLinear(torch.nn.Module):
    """A linear layer whose weight is stored in bf16 (or fp16) while the model around it stays in fp32.

    The matrix product runs in the weight's dtype (bf16 tiles on AMX CPUs and tensor cores, accumulating in fp32;
    its input and output are rounded to bf16) and the result is handed back in fp32, so the residual stream, the
    norms, attention and the output layer keep fp32 precision. Half the weight memory, most of bf16's speed, and
    far less rounding than a model cast to bf16 throughout.
    """

    def __init__(self, linear: torch.nn.Linear, dtype: torch.dtype):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.nn.Parameter(linear.weight.detach().to(dtype), requires_grad=False)
        self.bias = (
            None if linear.bias is None else torch.nn.Parameter(linear.bias.detach().float(), requires_grad=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's product in the weight's dtype, handed back in fp32.

        Args:
            x: the input (any float dtype).

        Returns:
            The output, fp32.
        """
        y = F.linear(x.to(self.weight.dtype), self.weight).float()
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        """The layer's shape and weight dtype, for ``print(model)``.

        Returns:
            e.g. ``"in_features=576, out_features=576, weight=torch.bfloat16"``.
        """
        return f"in_features={self.in_features}, out_features={self.out_features}, weight={self.weight.dtype}"


def _swap_linears(module, make) -> None:
    """Replace, in place, every child linear layer (except the output layer) by ``make(child)``."""
    head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None

    def walk(parent):
        for name, child in parent.named_children():
            if child is head:
                continue
            if isinstance(child, (torch.nn.Linear, LowPrecisionLinear)):
                setattr(parent, name, make(child))
            else:
                walk(child)

    walk(module)


def _plain_linear(layer):
    if isinstance(layer, torch.nn.Linear):
        return layer
    out = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
    out.weight = torch.nn.Parameter(layer.weight.detach(), requires_grad=False)
    if layer.bias is not None:
        out.bias = torch.nn.Parameter(layer.bias.detach(), requires_grad=False)
    return out


def set_precision(module, precision: dict | None):
    """Cast ``module`` to a precision and record it for ``save()``.

    Args:
        module: the model.
        precision: ``{"dtype": ..., "activations": ...}``, or None (nothing changes).

    Returns:
        The model, cast.
    """
    if not precision:
        return module
    dtype, activations = DTYPES[precision["dtype"]], precision.get("activations")
    _swap_linears(module, _plain_linear)  # undo an earlier mixed layout first
    if activations is None or DTYPES[activations] == dtype:
        module = module.to(dtype)
    else:
        module = module.to(DTYPES[activations])
        _swap_linears(module, lambda layer: LowPrecisionLinear(layer, dtype))
    module._fineclass_precision = dict(precision)
    return module
