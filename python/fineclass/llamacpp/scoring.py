"""Constrained label scoring and free generation on a llama.cpp Runtime, with the torch path's prompt plan.

Scoring reads the same ``Plan`` as the torch path (methods/generative.py): the same token ids for the prompt
head, each document and the tail, and the same tree of candidate answers. What changes is how the tree is laid
out. In llama.cpp every candidate answer is a sequence of its own: the document's tokens belong to all the
candidates' sequences, each node of the tree to the sequences of the candidates that pass through it, and the
head sits once in sequence 0, shared by all of them (``Runtime.copy_seq``). A node then sees the head, its
document and its own ancestors, at the positions the torch path gives it, and the log-probabilities of the
scored nodes give each candidate's score; probabilities come out in the layout of methods/__init__.py.

Many documents go into one batch (llama.cpp allows 255 sequences next to the head). A document whose label set
has more candidates than that is scored in several chunks of candidates, its text evaluated again for each.
"""

from __future__ import annotations

import numpy as np

from .runtime import MAX_SEQ

OUTPUT_ROWS = (
    MAX_SEQ  # logits rows one batch may ask for (llama.cpp reserves that many rows, at least one per sequence)
)


class _TreeScorer:
    """The candidate tree of a ``Plan`` as sequences: which nodes each candidate answer runs through."""

    def __init__(self, plan):
        self.plan = plan
        member = plan.member > 0  # (scored nodes, candidates)
        depths = plan.tree_depths[plan.scored_nodes]
        self.n_cand = member.shape[1]
        leaves = [
            plan.scored_nodes[np.flatnonzero(member[:, c])[np.argmax(depths[member[:, c]])]] for c in range(self.n_cand)
        ]
        self.on_path = plan.tree_anc[leaves].T  # (tree nodes, candidates)
        self.scored_pred = plan.tree_parents[plan.scored_nodes]  # -1: the end of the prompt
        self.scored_token = plan.tree_tokens[plan.scored_nodes]
        self.member = plan.member
        self.chunk = MAX_SEQ - 1  # candidates per unit (sequence 0: the head)

    def units(self, n_docs: int) -> list[tuple[int, int, int]]:
        """(document, first candidate, end) for every document and chunk of candidates."""
        return [
            (i, c0, min(c0 + self.chunk, self.n_cand))
            for i in range(n_docs)
            for c0 in range(0, self.n_cand, self.chunk)
        ]

    def unit_layout(self, c0: int, c1: int):
        """The tree nodes a chunk needs, and how they are laid out.

        Returns the nodes, their sequence ids (0-based within the chunk), the scored nodes of the chunk and the
        node whose logits each of them needs (-1: the end of the prompt).
        """
        paths = self.on_path[:, c0:c1]
        nodes = np.flatnonzero(paths.any(axis=1))
        scored = np.flatnonzero((self.member[:, c0:c1] > 0).any(axis=1))
        preds = self.scored_pred[scored]
        return nodes, paths[nodes], scored, preds


def score(runtime, plan, rests: list, batch_tokens: int = 1024) -> np.ndarray:
    """Probabilities (n, outputs) for documents given as their token ids after the head (text + tail).

    Args:
        runtime: the llama.cpp ``Runtime``.
        plan: the generative prompt plan.
        rests: each document's token ids after the head.
        batch_tokens: tokens per llama.cpp batch.

    Returns:
        An array (documents, outputs).
    """
    scorer = _scorer(plan)
    h = len(plan.head_ids)
    n = len(rests)
    longest = max((len(r) for r in rests), default=0) + len(plan.tree_tokens)
    n_batch = max(int(batch_tokens), longest)
    runtime.ensure(n_ctx=h + n_batch + 8, n_batch=n_batch, n_outputs=OUTPUT_ROWS)
    runtime.set_head(plan.head_ids)
    lp = np.zeros((n, len(plan.scored_nodes)), dtype=np.float64)
    layouts: dict = {}
    pending = scorer.units(n)
    while pending:
        taken, tokens_used, seqs_used, outputs_used = [], 0, 0, 0
        while pending:
            i, c0, c1 = pending[0]
            if (c0, c1) not in layouts:
                layouts[(c0, c1)] = scorer.unit_layout(c0, c1)
            nodes, _, _, preds = layouts[(c0, c1)]
            need_tokens = len(rests[i]) + len(nodes)
            need_outputs = len(np.unique(preds))
            if taken and (
                tokens_used + need_tokens > n_batch
                or seqs_used + (c1 - c0) > MAX_SEQ - 1
                or outputs_used + need_outputs > OUTPUT_ROWS
            ):
                break
            taken.append(pending.pop(0))
            tokens_used += need_tokens
            seqs_used += c1 - c0
            outputs_used += need_outputs
        _score_batch(runtime, plan, rests, taken, layouts, lp, tokens_used, seqs_used, h)
    return _probabilities(plan, lp)


def _scorer(plan) -> _TreeScorer:
    got = getattr(plan, "_llamacpp_scorer", None)
    if got is None:
        got = plan._llamacpp_scorer = _TreeScorer(plan)
    return got


def _score_batch(runtime, plan, rests, units, layouts, lp, n_tokens, n_seqs, h) -> None:
    width = max(c1 - c0 for _, c0, c1 in units)
    tokens = np.empty(n_tokens, dtype=np.int32)
    pos = np.empty(n_tokens, dtype=np.int32)
    seqs = np.zeros((n_tokens, width), dtype=np.int32)
    counts = np.empty(n_tokens, dtype=np.int32)
    flags = np.zeros(n_tokens, dtype=bool)
    wanted = []  # (document, scored node indices, the batch index of each one's logits row)
    at, seq = 0, 1
    for i, c0, c1 in units:
        nodes, paths, scored, preds = layouts[(c0, c1)]
        k = c1 - c0
        ids = np.arange(seq, seq + k, dtype=np.int32)
        for s in ids:
            runtime.copy_seq(0, int(s))
        rest = rests[i]
        r = len(rest)
        tokens[at : at + r] = rest
        pos[at : at + r] = h + np.arange(r)
        seqs[at : at + r, :k] = ids
        counts[at : at + r] = k
        prompt_end = at + r - 1
        t0 = at + r
        m = len(nodes)
        tokens[t0 : t0 + m] = plan.tree_tokens[nodes]
        pos[t0 : t0 + m] = h + r + plan.tree_depths[nodes]
        for j in range(m):  # a node belongs to the sequences of the candidates that run through it
            member = ids[paths[j]]
            seqs[t0 + j, : len(member)] = member
            counts[t0 + j] = len(member)
        where = np.where(preds < 0, prompt_end, t0 + np.searchsorted(nodes, np.maximum(preds, 0)))
        flags[where] = True
        wanted.append((i, scored, where))
        at += r + m
        seq += k
    logits = runtime.decode(tokens, pos, seqs, counts, flags)
    for s in range(1, seq):
        runtime.remove_seq(s)
    row_of = np.full(n_tokens, -1, dtype=np.int64)
    row_of[np.flatnonzero(flags)] = np.arange(int(flags.sum()))
    lse = _logsumexp(logits)
    token = plan.tree_tokens[plan.scored_nodes]
    for i, scored, where in wanted:
        rows = row_of[where]
        lp[i, scored] = logits[rows, token[scored]] - lse[rows]


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1)
    return m + np.log(np.exp(x - m[:, None]).sum(axis=1, dtype=np.float64))


def _probabilities(plan, lp: np.ndarray) -> np.ndarray:
    """Candidate log-probabilities -> a softmax within each group, in the layout of methods/__init__.py."""
    scores = lp @ plan.member.astype(np.float64)  # (n, candidates)
    n = len(scores)
    groups = scores.reshape(n, -1, plan.group_size)
    groups = np.exp(groups - groups.max(axis=2, keepdims=True))
    probs = groups / groups.sum(axis=2, keepdims=True)
    if plan.spec.kind == "multi":
        return probs[:, :, 1]
    return probs.reshape(n, -1)


# ---------------------------------------------------------------------- free generation
def generate_ids(
    runtime, plan, rests: list, max_new_tokens: int, batch_tokens: int = 1024, progress=None
) -> list[list[int]]:
    """Greedy answers (token ids, without the end token) for documents given as their ids after the head.

    Up to 255 documents run side by side, one sequence each, all sharing the head in sequence 0.

    Args:
        runtime: the llama.cpp ``Runtime``.
        plan: the generative prompt plan.
        rests: each document's token ids after the head.
        max_new_tokens: the most tokens per answer.
        batch_tokens: tokens per llama.cpp batch.
        progress: a bar to advance, or None.

    Returns:
        One list of token ids per document.
    """
    h = len(plan.head_ids)
    longest = max((len(r) for r in rests), default=0)
    n_batch = max(int(batch_tokens), longest)
    lanes = MAX_SEQ - 1
    runtime.ensure(n_ctx=h + n_batch + lanes * (max_new_tokens + 1) + 8, n_batch=n_batch, n_outputs=OUTPUT_ROWS)
    runtime.set_head(plan.head_ids)
    stop = set(int(t) for t in plan.eos_ids)
    out: list[list[int]] = [[] for _ in rests]
    order = list(np.argsort([-len(r) for r in rests], kind="stable"))
    while order:
        # a group of documents whose prompts fit in one batch, at most one per free sequence and output row
        group, used = [], 0
        while order and len(group) < min(lanes, OUTPUT_ROWS) and (not group or used + len(rests[order[0]]) <= n_batch):
            used += len(rests[order[0]])
            group.append(order.pop(0))
        seq_of = {i: s + 1 for s, i in enumerate(group)}
        for i in group:
            runtime.copy_seq(0, seq_of[i])
        tokens = np.concatenate([np.asarray(rests[i], dtype=np.int32) for i in group])
        pos = np.concatenate([h + np.arange(len(rests[i]), dtype=np.int32) for i in group])
        seqs = np.concatenate([np.full((len(rests[i]), 1), seq_of[i], dtype=np.int32) for i in group])
        flags = np.zeros(len(tokens), dtype=bool)
        flags[np.cumsum([len(rests[i]) for i in group]) - 1] = True
        logits = runtime.decode(tokens, pos, seqs, np.ones(len(tokens), dtype=np.int32), flags)
        active = list(group)
        length = {i: h + len(rests[i]) for i in group}
        for _ in range(max_new_tokens):
            picks = logits.argmax(axis=1)
            still = []
            for i, t in zip(active, picks):
                t = int(t)
                if t in stop:
                    continue
                out[i].append(t)
                if len(out[i]) < max_new_tokens:
                    still.append(i)
            active = still
            if not active:
                break
            tokens = np.array([out[i][-1] for i in active], dtype=np.int32)
            pos = np.array([length[i] + len(out[i]) - 1 for i in active], dtype=np.int32)
            seqs = np.array([[seq_of[i]] for i in active], dtype=np.int32)
            logits = runtime.decode(
                tokens, pos, seqs, np.ones(len(active), dtype=np.int32), np.ones(len(active), dtype=bool)
            )
        for i in group:
            runtime.remove_seq(seq_of[i])
        if progress is not None:
            progress.update(len(group))
    return out
