"""The prompt plan of the generative method: prompt pieces, answers and the candidate tree, tokenised once."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import FineclassError
from ...labels import LabelSpec
from ...prompts import answer_text, block_options, candidate_texts, fill_template, split_prompt, turn_end
from ..base import Encoded, encode_texts

PLAN_FORMAT = 1
SCORING = ("prefix", "full")  # score each label up to its decisive token, or its whole answer


class Plan:
    """Prompt pieces, answers and the candidate tree for one tokenizer, label set and prompt template."""

    def __init__(
        self,
        tokenizer,
        spec: LabelSpec,
        template: str,
        chat: bool | None = None,
        argument: str = "label",
        scoring: str = "prefix",
    ):
        if scoring not in SCORING:
            raise FineclassError(f"`scoring` must be one of {', '.join(SCORING)}; got {scoring!r}.", "scoring")
        self.scoring = scoring
        self.spec = spec
        self.tokenizer = tokenizer
        self.template = fill_template(template, spec)
        head, tail, chat = split_prompt(tokenizer, self.template, chat)
        self.chat = chat
        stripped = head.rstrip(" ")
        self.text_prefix = head[len(stripped) :]  # "Text: {text}": the space stays with the first word
        self.head_ids = self._ids(tokenizer, stripped) if stripped else []
        if not chat:
            self.head_ids = _special_prefix(tokenizer) + self.head_ids
        self.tail_ids = self._ids(tokenizer, tail)
        if not self.tail_ids:
            raise FineclassError(
                "the prompt leaves nothing between the text and the answer; end the prompt with a "
                "newline or use a model with a chat template.",
                "prompt",
            )
        self.end_id = turn_end(tokenizer, chat)
        self.eos_ids = sorted(
            {self.end_id} | ({int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set())
        )
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_id)
        self._answers: dict[str, list[int]] = {}
        self._build_candidates(tokenizer, argument)

    @staticmethod
    def _ids(tokenizer, s: str) -> list[int]:
        return list(tokenizer(s, add_special_tokens=False)["input_ids"])

    def _build_candidates(self, tokenizer, argument: str) -> None:
        spec = self.spec
        groups = candidate_texts(spec)
        self.group_size = len(groups[0])
        self.cand_tokens: list[list[list[int]]] = []  # [group][option] -> token ids (no end token)
        self.common: list[int] = []  # per group: shared prefix length (teacher-forced)
        self.scored_tokens: list[list[list[int]]] = []  # [group][option] -> ids scored at prediction time
        for texts in groups:
            toks = [self._ids(tokenizer, t) for t in texts]
            seen: dict[tuple, int] = {}
            names = spec.classes if spec.kind == "single" else block_options(spec)
            for j, t in enumerate(toks):
                if tuple(t) in seen:
                    a, b = names[seen[tuple(t)]], names[j]
                    what = "labels" if spec.kind == "single" else "levels"
                    raise FineclassError(
                        f"the {what} {a!r} and {b!r} cannot be told apart by this model's tokenizer (their answers "
                        f"{texts[seen[tuple(t)]]!r} and {texts[j]!r} become the same tokens). Rename them "
                        f"(`{argument}`), or use a model whose tokenizer keeps them distinct.",
                        argument if spec.kind == "single" else "levels",
                    )
                seen[tuple(t)] = j
            cp = _common_prefix(toks)
            if any(a is not b and b[: len(a)] == a for a in toks for b in toks):
                scored = [t + [self.end_id] for t in toks]  # one answer is a prefix of another: close them all
            else:
                scored = [list(t) for t in toks]
            if self.scoring == "prefix":
                scored = [t[: _decisive_length(t, scored, cp)] for t in scored]
            self.cand_tokens.append(toks)
            self.common.append(cp)
            self.scored_tokens.append(scored)
        if spec.kind != "single":
            keys = {}
            for g, c in enumerate(spec.classes):
                key = tuple(self.cand_tokens[g][0][: self.common[g]])
                if key in keys:
                    raise FineclassError(
                        f"the classes {spec.classes[keys[key]]!r} and {c!r} cannot be told apart by this model's "
                        f"tokenizer; rename them (`{argument}`) or their codebook names (`codebook`).",
                        argument,
                    )
                keys[key] = g
        self._build_tree()

    def _build_tree(self) -> None:
        """Merge all candidates into one trie; mark the nodes whose log-probabilities are scored."""
        children: dict[tuple[int, int], int] = {}
        tokens, parents, depths = [], [], []
        paths = []
        for g, options in enumerate(self.scored_tokens):
            for seq in options:
                node, path = -1, []
                for tok in seq:
                    key = (node, tok)
                    if key not in children:
                        children[key] = len(tokens)
                        tokens.append(tok)
                        parents.append(node)
                        depths.append(0 if node < 0 else depths[node] + 1)
                    node = children[key]
                    path.append(node)
                paths.append((g, path))
        t = len(tokens)
        self.tree_tokens = np.array(tokens, dtype=np.int64)
        self.tree_parents = np.array(parents, dtype=np.int64)
        self.tree_depths = np.array(depths, dtype=np.int64)
        anc = np.zeros((t, t), dtype=bool)
        for i in range(t):  # parents come before their children
            if parents[i] >= 0:
                anc[i] = anc[parents[i]]
            anc[i, i] = True
        self.tree_anc = anc
        scored = sorted({n for g, path in paths for n in path[self.common[g] :]})
        self.scored_nodes = np.array(scored, dtype=np.int64)
        index = {n: k for k, n in enumerate(scored)}
        member = np.zeros((len(scored), len(paths)), dtype=np.float32)
        for c, (g, path) in enumerate(paths):
            for n in path[self.common[g] :]:
                member[index[n], c] = 1.0
        self.member = member
        # the positions whose next-token distribution is needed: each scored node's parent (-1: end of prompt)
        pred = np.unique(self.tree_parents[self.scored_nodes])
        self.pred_nodes = pred
        self.pred_index = np.searchsorted(pred, self.tree_parents[self.scored_nodes])

    # ------------------------------------------------------------------ prompts and answers
    def encode(self, tokenizer, texts: Sequence[str], max_length: int) -> Encoded:
        """Full prompt ids per document (head + text + tail); only the text is cut to ``max_length`` tokens.

        Args:
            tokenizer: the model's tokenizer.
            texts: the documents.
            max_length: the most tokens of a document's text.

        Returns:
            An ``Encoded``.
        """
        body = encode_texts(
            tokenizer, [self.text_prefix + (t or "") for t in texts], max_length, add_special_tokens=False
        )
        ids = [self.head_ids + list(b) + self.tail_ids for b in body.ids]
        return Encoded(ids, body.truncated)

    def answer_ids(self, target) -> list[int]:
        """Token ids of the paper-form answer for one encoded target (without the end token).

        Args:
            target: a class index (single), a 0/1 row (multi) or a level index per dimension (dimlevel).

        Returns:
            The token ids.
        """
        if self.spec.kind == "single":
            return self.cand_tokens[0][int(target)]
        text = answer_text(self.spec, target)
        got = self._answers.get(text)
        if got is None:
            got = self._answers[text] = self._ids(self.tokenizer, text)
        return got

    def to_dict(self) -> dict:
        """What a saved model's manifest keeps of the plan, to build it again.

        Returns:
            ``{"format", "template", "chat", "scoring"}``.
        """
        return {"format": PLAN_FORMAT, "template": self.template, "chat": self.chat, "scoring": self.scoring}

    def max_answer_tokens(self) -> int:
        """A generous cap for free generation: the longest valid answer, plus room to see what else comes.

        Returns:
            A number of tokens (at most 1024).
        """
        spec = self.spec
        if spec.kind == "single":
            longest = max(len(t) for t in self.cand_tokens[0])
        elif spec.kind == "multi":
            longest = len(self.answer_ids(np.ones(len(spec.classes))))
        else:
            longest = max(len(self.answer_ids(np.full(len(spec.classes), k + 1))) for k in range(len(spec.levels)))
        return min(longest + 16, 1024)


def _decisive_length(seq: list[int], group: list[list[int]], start: int) -> int:
    """Tokens of ``seq`` up to the first one that no other candidate of its group shares.

    From there on the label is decided, and constrained decoding would force the remaining tokens.
    """
    k = start + 1
    while k < len(seq) and any(o is not seq and o[:k] == seq[:k] for o in group):
        k += 1
    return k


def _common_prefix(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    k = 0
    while k < n and all(s[k] == seqs[0][k] for s in seqs):
        k += 1
    return k


def _special_prefix(tokenizer) -> list[int]:
    """The special tokens the tokenizer puts before a text on its own (BOS for Llama), for plain prompts."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    k = len(with_special) - len(plain)
    if k > 0 and with_special[k:] == plain:
        return list(with_special[:k])
    return []
