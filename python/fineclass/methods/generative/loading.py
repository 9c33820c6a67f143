"""Loading causal language models and their tokenizers for the generative method."""

from __future__ import annotations

from ...errors import FineclassError
from ...models import load_error
from ..base import is_decoder


def load_causal_lm(path: str, dtype, trust_remote_code: bool, argument: str = "model", **kwargs):
    """A causal language model, with sdpa attention where the model has it.

    Args:
        path: a folder or hub id.
        dtype: the torch dtype of its weights.
        trust_remote_code: let transformers run the model's own code.
        argument: the argument that named it, for errors.
        **kwargs: more ``from_pretrained`` arguments (a quantization config, a device map).

    Returns:
        The model.

    Raises:
        FineclassError: naming ``argument`` when it is not a causal LM or cannot be loaded.
    """
    from transformers import AutoModelForCausalLM

    try:
        try:
            return AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, attn_implementation="sdpa", trust_remote_code=trust_remote_code, **kwargs
            )
        except ValueError as e:
            if "sdpa" not in str(e).lower() and "scaled" not in str(e).lower():
                raise
            return AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, attn_implementation="eager", trust_remote_code=trust_remote_code, **kwargs
            )
    except (OSError, ValueError) as e:
        if "Unrecognized configuration class" in str(e) or "does not recognize" in str(e):
            raise FineclassError(
                f"`{argument}`: {path!r} is not a causal (decoder) language model, which the "
                f"generative method needs; use method='head' for encoders such as BERT.",
                argument,
            ) from None
        raise load_error(path, e) from None


def check_causal(path: str, trust_remote_code: bool, argument: str = "model") -> None:
    """Refuse an encoder (BERT and the like) before anything else is loaded.

    Args:
        path: a folder or hub id.
        trust_remote_code: let transformers run the model's own code.
        argument: the argument that named it, for errors.

    Raises:
        FineclassError: naming ``argument`` when the model is not a causal (decoder) language model.
    """
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise load_error(path, e) from None
    if not is_decoder(config):
        raise FineclassError(
            f"`{argument}`: {path!r} is not a causal (decoder) language model "
            f"({config.model_type}), which the generative method needs; use method='head' for "
            f"encoders such as BERT.",
            argument,
        )


def load_tokenizer(path: str, trust_remote_code: bool):
    """A model's tokenizer, with a padding token (its EOS or UNK when it has none).

    Args:
        path: a folder or hub id.
        trust_remote_code: let transformers run the model's own code.

    Returns:
        The tokenizer.

    Raises:
        FineclassError: naming ``model`` when it cannot be loaded.
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise load_error(path, e) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok
