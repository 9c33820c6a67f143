"""One forward pass of the generative method: every candidate answer of every document, scored at once.

Each row holds [left padding | text + tail | candidate tree]; the prompt head that all documents share is run
once and reused by every row, on CPU through a shared-prefix attention that reads one copy of its keys and
values (see below), elsewhere as a cache expanded over the rows.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import threading
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .plan import Plan

_LOGIT_ELEMENTS = 1 << 25  # at most this many logits (rows x vocabulary) in memory at once
_CPU_ROW_TOKENS = 24_576  # at most this many tokens (rows x row length) per forward pass on CPU
_GPU_ROW_TOKENS = 262_144


def model_parts(module):
    """The parts of a causal LM scoring uses (through a LoRA wrapper when there is one).

    Args:
        module: the model, with or without a peft wrapper.

    Returns:
        ``(lm, decoder, output_layer)``.
    """
    lm = module.get_base_model() if hasattr(module, "peft_config") else module
    return lm, lm.get_decoder(), lm.get_output_embeddings()


def _cache_keyword(decoder) -> str:
    params = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _kv_pairs(out) -> list:
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return [(x[0], x[1]) for x in cache]


def _expanded_cache(pairs: list, n: int):
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in pairs])


def tree_arrays(plan: Plan, n: int):
    """The candidate tree of a plan, as the arrays :func:`forward_hidden` takes for ``n`` rows.

    Args:
        plan: the prompt plan.
        n: the rows of the batch.

    Returns:
        ``(tokens, depths, valid, ancestors)``: (n, T), (n, T), (n, T) and (1, T, T).
    """
    t = len(plan.tree_tokens)
    return (
        np.broadcast_to(plan.tree_tokens, (n, t)),
        np.broadcast_to(plan.tree_depths, (n, t)),
        np.ones((n, t), dtype=bool),
        plan.tree_anc[None],
    )


# ---------------------------------------------------------------------- shared-prefix attention
# Scoring attends every row to the same prompt head. Handing the head's keys and values to the model as a cache
# copies them into every row of the batch (and attention then reads each copy), which on a CPU costs as much as a
# good part of the linear layers and caps the batch size. The shared-prefix attention below keeps one copy: the
# queries of all rows attend to the head in one matrix product per key-value head, each row attends to its own
# tokens separately, and the two parts are merged exactly through their log-sum-exps. It is used for inference
# on CPU with the decoder families whose attention is plain (RoPE, grouped-query heads, no sliding window or
# soft-capping); everything else keeps the cache.
_PREFIX_KV: contextvars.ContextVar = contextvars.ContextVar("fineclass_prefix_kv", default=None)
_HEAD_KV: contextvars.ContextVar = contextvars.ContextVar("fineclass_head_kv", default=None)  # one scoring call
_PREFIX_NAME = "fineclass_shared_prefix"
_PREFIX_MODELS = ("llama", "mistral", "qwen2", "qwen3")
_PREFIX_LOCK = threading.Lock()
_PREFIX_USERS: dict = {}  # id(config) -> [scoring passes now using the switch, the name it replaced]


def _attend(q, k, v, mask, scale):
    """softmax(q k^T scale, where ``mask``) v and the log-sum-exp of each query's scores; (B, H, L, d) tensors.

    torch's CPU flash-attention kernel, which returns the log-sum-exp beside the output (see _prefix_attention_ok).
    """
    if mask is not None:  # this kernel takes an additive mask of the query's dtype
        mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, False, attn_mask=mask, scale=scale
    )
    return out.float(), lse.float().unsqueeze(-1)


def _shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention over [shared head | the row's own tokens]; the head's keys and values come from _PREFIX_KV.

    query (n, heads, s, d); key, value (n, kv heads, s, d) of the rows' own tokens; attention_mask (n, 1, s, s),
    boolean, over the own tokens only (every row sees the whole head). Outside a scoring pass (no head set, e.g.
    another thread generating with the same model) it is the model's own attention function.
    """
    state = _PREFIX_KV.get()
    if state is None:  # the switch is only made for models whose own attention is sdpa
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        return ALL_ATTENTION_FUNCTIONS["sdpa"](
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    kh, vh = state[module.layer_idx]  # (1, kv heads, h, d)
    n, heads, s, d = query.shape
    kvh = key.shape[1]
    g = heads // kvh  # query head j reads key-value head j // g
    scale = d**-0.5 if scaling is None else scaling
    # the rows' own tokens (candidate tree and padding rules are in the mask)
    k_own = key.repeat_interleave(g, dim=1) if g > 1 else key
    v_own = value.repeat_interleave(g, dim=1) if g > 1 else value
    out_own, lse_own = _attend(query, k_own, v_own, attention_mask, scale)  # (n, heads, s, d|1)
    # the shared head: the queries of all rows, as one sequence per key-value head, against one copy of its keys
    q_head = query.reshape(n, kvh, g, s, d).permute(1, 0, 2, 3, 4).reshape(1, kvh, n * g * s, d)
    out_head, lse_head = _attend(q_head, kh.to(query.dtype), vh.to(query.dtype), None, scale)

    def rows(x):  # (1, kvh, n g s, e) -> (n, heads, s, e)
        return x.reshape(kvh, n, g, s, -1).permute(1, 0, 2, 3, 4).reshape(n, heads, s, -1)

    out_head, lse_head = rows(out_head), rows(lse_head)
    total = torch.logaddexp(lse_head, lse_own)
    out = out_head * torch.exp(lse_head - total) + out_own * torch.exp(lse_own - total)
    return out.transpose(1, 2).contiguous().to(query.dtype), None


def _prefix_attention_ok(lm, device, total_length: int) -> bool:
    config = lm.config
    if device.type != "cpu" or getattr(config, "model_type", None) not in _PREFIX_MODELS:
        return False
    if not hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):  # older torch: keep the cache
        return False
    if getattr(config, "_attn_implementation", None) not in ("sdpa", _PREFIX_NAME):
        return False
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True) and window < total_length:
        return False
    layers = getattr(lm.get_decoder(), "layers", None)
    return bool(layers) and all(hasattr(layer.self_attn, "layer_idx") for layer in layers)


@contextlib.contextmanager
def _prefix_attention(lm, pairs: list):
    """Route the model's attention through _shared_prefix_attention, with the head's ``pairs``, for one pass."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    config = lm.config
    with _PREFIX_LOCK:
        if _PREFIX_NAME not in ALL_ATTENTION_FUNCTIONS:
            ALL_ATTENTION_FUNCTIONS.register(_PREFIX_NAME, _shared_prefix_attention)
            ALL_MASK_ATTENTION_FUNCTIONS.register(_PREFIX_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
        users = _PREFIX_USERS.get(id(config))
        if users is None:  # the first pass on this model: make the switch
            users = _PREFIX_USERS[id(config)] = [0, config._attn_implementation]
            config._attn_implementation = _PREFIX_NAME
        users[0] += 1
    token = _PREFIX_KV.set(pairs)
    try:
        yield
    finally:
        _PREFIX_KV.reset(token)
        with _PREFIX_LOCK:
            users[0] -= 1
            if users[0] == 0:
                config._attn_implementation = users[1]
                del _PREFIX_USERS[id(config)]


def forward_hidden(module, plan: Plan, rests: list, tree, device) -> tuple[torch.Tensor, int]:
    """Hidden states for rows laid out as [left padding | text + tail | candidate tree].

    The shared prompt head is run once: on CPU for Llama-type decoders through the shared-prefix attention (once
    per scoring session), elsewhere as a cache expanded over the rows.

    Args:
        module: the model.
        plan: the prompt plan (its head ids).
        rests: per row, the token ids after the head (text and tail).
        tree: ``(tokens, depths, valid, anc)``: arrays (n, T), (n, T), (n, T) and (n or 1, T, T), with
            ``anc[i, t, u]`` true when node u is t or an ancestor of t.
        device: where the model runs.

    Returns:
        ``(hidden, r)``: hidden states (n, R + T, d), and R, the width of the text part (the prompt ends at
        column R - 1).
    """
    lm, decoder, _ = model_parts(module)
    tree_tokens, tree_depths, tree_valid, tree_anc = tree
    n = len(rests)
    h = len(plan.head_ids)
    lengths = np.array([len(r) for r in rests], dtype=np.int64)
    r = int(lengths.max())
    t = tree_tokens.shape[1]
    s = r + t
    ids = np.full((n, s), plan.pad_id, dtype=np.int64)
    pos = np.full((n, s), h, dtype=np.int64)
    cols = np.arange(r)
    start = r - lengths  # first real column of each row's text
    for i, row in enumerate(rests):
        ids[i, start[i] : r] = row
    ids[:, r:] = tree_tokens
    pos[:, :r] = h + np.maximum(cols[None, :] - start[:, None], 0)
    pos[:, r:] = h + lengths[:, None] + tree_depths
    valid_rest = cols[None, :] >= start[:, None]  # (n, R)
    mask = np.zeros((n, s, h + s), dtype=bool)
    mask[:, :, :h] = True
    causal = np.tril(np.ones((r, r), dtype=bool))
    mask[:, :r, h : h + r] = causal[None] & valid_rest[:, None, :]
    mask[:, np.arange(r), h + np.arange(r)] = True  # padding sees itself: no empty row
    mask[:, r:, h : h + r] = valid_rest[:, None, :] & tree_valid[:, :, None]
    mask[:, r:, h + r :] = tree_anc & tree_valid[:, None, :]
    mask[:, r + np.arange(t), h + r + np.arange(t)] = True
    if h and not torch.is_grad_enabled() and _prefix_attention_ok(lm, device, h + s):
        store = _HEAD_KV.get()
        key = (id(module), tuple(plan.head_ids))
        pairs = store.get(key) if store is not None else None
        if pairs is None:
            head = torch.tensor([plan.head_ids], dtype=torch.long, device=device)
            pairs = _kv_pairs(decoder(input_ids=head, use_cache=True))
            if store is not None:
                store[key] = pairs
        with _prefix_attention(lm, pairs):
            out = decoder(
                input_ids=torch.from_numpy(ids).to(device),
                attention_mask=torch.from_numpy(np.ascontiguousarray(mask[:, None, :, h:])).to(device),
                position_ids=torch.from_numpy(pos).to(device),
                use_cache=False,
            )
        return out.last_hidden_state, r
    mask_t = torch.from_numpy(mask).to(device)
    impl = getattr(lm.config, "_attn_implementation", "sdpa")
    if impl != "sdpa":
        dtype = next(decoder.parameters()).dtype
        if not dtype.is_floating_point:
            dtype = torch.float32
        mask_t = torch.zeros(mask_t.shape, dtype=dtype, device=device).masked_fill_(~mask_t, torch.finfo(dtype).min)
    kwargs = {}
    if h:
        head = torch.tensor([plan.head_ids], dtype=torch.long, device=device)
        head_out = decoder(input_ids=head, use_cache=True)
        kwargs[_cache_keyword(decoder)] = _expanded_cache(_kv_pairs(head_out), n)
    out = decoder(
        input_ids=torch.from_numpy(ids).to(device),
        attention_mask=mask_t[:, None],
        position_ids=torch.from_numpy(pos).to(device),
        use_cache=bool(h),
        **kwargs,
    )
    return out.last_hidden_state, r


def autocast(device):
    """bf16 autocast on GPUs that have it (a bf16 base with fp32 LoRA weights then runs in bf16), else nothing.

    Args:
        device: where the model runs.

    Returns:
        A ``torch.autocast`` context.
    """
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def row_budget(device) -> int:
    """The most tokens (rows x row length) of one forward pass.

    Args:
        device: where the model runs.

    Returns:
        A larger budget on CUDA than on CPUs.
    """
    return _GPU_ROW_TOKENS if device.type == "cuda" else _CPU_ROW_TOKENS


def candidate_probabilities(module, plan: Plan, hidden: torch.Tensor, r: int) -> np.ndarray:
    """The probabilities of the candidates, from the hidden states of one forward pass.

    A candidate's score is the sum of its scored tokens' log-probabilities (the output layer in fp32); a softmax
    within each group gives the probabilities.

    Args:
        module: the model.
        plan: the prompt plan (its tree and groups).
        hidden: from :func:`forward_hidden`.
        r: the width of the text part (see :func:`forward_hidden`).

    Returns:
        (rows, outputs) probabilities in the layout of ``Method.probabilities``.
    """
    _, _, head = model_parts(module)
    device = hidden.device
    cols = np.where(plan.pred_nodes < 0, r - 1, r + plan.pred_nodes)
    h = hidden[:, torch.from_numpy(cols).to(device)]  # (n, P, d)
    n, p, _ = h.shape
    vocab = head.weight.shape[0]
    per_doc = max(1, _LOGIT_ELEMENTS // max(1, p * vocab))
    pred_index = torch.from_numpy(plan.pred_index).to(device)
    node_tokens = torch.from_numpy(plan.tree_tokens[plan.scored_nodes]).to(device)
    # the output layer in fp32 even for a bf16 model: bf16 logits are coarse enough to tie two labels exactly
    weight = head.weight if head.weight.dtype == torch.float32 else head.weight.float()
    bias = None if getattr(head, "bias", None) is None else head.bias.float()
    lps = []
    for s in range(0, n, per_doc):
        with torch.autocast(device.type, enabled=False):
            logits = F.linear(h[s : s + per_doc].float(), weight, bias)  # (b, P, V)
        lse = torch.logsumexp(logits, dim=-1)  # (b, P)
        lp = logits[:, pred_index, node_tokens] - lse[:, pred_index]  # (b, scored nodes)
        lps.append(lp)
    lp = torch.cat(lps, 0)
    scores = lp @ torch.from_numpy(plan.member).to(device)  # (n, candidates)
    groups = scores.view(n, -1, plan.group_size)
    probs = torch.softmax(groups, dim=-1)
    if plan.spec.kind == "single":
        return probs.reshape(n, -1).double().cpu().numpy()
    if plan.spec.kind == "multi":
        return probs[:, :, 1].double().cpu().numpy()
    return probs.reshape(n, -1).double().cpu().numpy()


@contextlib.contextmanager
def head_cache() -> Iterator[None]:
    """Within it (one classify or predict call), the prompt head's keys and values are computed once.

    Yields:
        Nothing; :func:`forward_hidden` keeps the head's keys and values for the span of the ``with`` block.
    """
    token = _HEAD_KV.set({})
    try:
        yield
    finally:
        _HEAD_KV.reset(token)
