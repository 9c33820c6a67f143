"""Prompts for the generative method: templates, the codebook, answers in the paper's form, strict parsing.

A prompt template is one string with the slot ``{text}`` (required, exactly once) and the optional slots
``{codebook}`` (one line per class: code, name, description), ``{labels}`` (the codes, comma-separated) and
``{levels}`` (for the dimension->level shape). The filled template is the user message; it goes through the
tokenizer's chat template when the tokenizer has one, and is used as plain text otherwise.

Answers follow "Rethinking Scale" (Carammia, Iacus, Porro 2024):

- single-label: ``Answer = [5]``
- multi-label: ``Answer = [3, 7]`` (codes in the label set's order; ``Answer = []`` for none)
- dimension->level: a JSON dictionary of the dimensions present, ``{"happiness": "high", "vitality": "low"}``
  (``{}`` for none).

For multi-label and dimension->level models, scoring also uses one short *block* per class, e.g.
``happiness: absent`` / ``happiness: high`` or ``Agriculture: yes`` / ``Agriculture: no``: each block is a separate
continuation of the prompt, so every class gets its own distribution from one forward pass (see
methods/generative.py). The blocks use a different form from the answer on purpose: the same context must never
be taught two different continuations.

Answers are read by :func:`fineclass.protocol.parse_answer`, strictly.
"""

from __future__ import annotations

import json

from .errors import FineclassError, preview
from .labels import ABSENT, LabelSpec

TEXT_SLOT = "{text}"
YES, NO = "yes", "no"

INSTRUCTIONS = {
    "single": (
        "Classify the text into exactly one category of the codebook below. Reply with the category code "
        "only, in the form: Answer = [code]"
    ),
    "multi": (
        "Decide which categories of the codebook below apply to the text: none, one or several. Reply with "
        "their codes only, in the form: Answer = [code, code] (or Answer = [] if none applies)"
    ),
    "dimlevel": (
        "Decide which dimensions of the codebook below the text expresses, and at which level ({levels}). "
        "Reply with a JSON dictionary only, mapping each dimension present to its level, for example "
        "{example} (or {{}} if none is present)"
    ),
}

DEFAULT_TEMPLATE = "{instruction}\n\nCodebook:\n{codebook}\n\nText:\n{text}"


# ---------------------------------------------------------------------- templates
def render_codebook(spec: LabelSpec) -> str:
    """The codebook as the prompt shows it.

    Args:
        spec: the label set.

    Returns:
        One line per class: ``[code] name: description`` (dimensions: ``- dimension: description``).
    """
    lines = []
    for c in spec.classes:
        name, desc = spec.names.get(c), spec.descriptions.get(c)
        if spec.kind == "dimlevel":
            head = f"- {c}" + (f" ({name})" if name and name != c else "")
        else:
            head = f"[{c}]" + (f" {name}" if name and name != c else "")
        lines.append(head + (f": {desc}" if desc else ""))
    return "\n".join(lines)


def default_template(spec: LabelSpec) -> str:
    """The default prompt for a label set, with the codebook filled in and the ``{text}`` slot left open.

    Args:
        spec: the label set.

    Returns:
        The template.
    """
    if spec.kind == "dimlevel":
        example = json.dumps({spec.classes[0]: spec.levels[-1]}, ensure_ascii=False)
        instruction = INSTRUCTIONS["dimlevel"].format(levels=", ".join(spec.levels), example=example)
    else:
        instruction = INSTRUCTIONS[spec.kind]
    return fill_template(DEFAULT_TEMPLATE.replace("{instruction}", instruction), spec)


def fill_template(template: str, spec: LabelSpec, argument: str = "prompt") -> str:
    """Fill ``{codebook}``, ``{labels}`` and ``{levels}``; check that ``{text}`` appears exactly once.

    Only these named slots are replaced, so other braces (a JSON example, say) stay as written.

    Args:
        template: the prompt template.
        spec: the label set.
        argument: the argument that gave the template, for errors.

    Returns:
        The template with only ``{text}`` left open.

    Raises:
        FineclassError: naming ``argument`` when ``{text}`` is missing or repeated, ``codebook`` when the codebook
            itself holds it.
    """
    if not isinstance(template, str):
        raise FineclassError(
            f"`{argument}` must be a string with the slot {{text}}; got {type(template).__name__}.", argument
        )
    n = template.count(TEXT_SLOT)
    if n != 1:
        raise FineclassError(
            f"`{argument}` must contain the slot {{text}} exactly once, where each document goes; it contains it "
            f'{n} times. Example: "Classify this tweet.\\n\\n{{codebook}}\\n\\nTweet: {{text}}".',
            argument,
        )
    out = template.replace("{codebook}", render_codebook(spec))
    out = out.replace("{labels}", ", ".join(spec.classes))
    if spec.kind == "dimlevel":
        out = out.replace("{levels}", ", ".join(spec.levels))
    if out.count(TEXT_SLOT) != 1:
        raise FineclassError(
            "the codebook itself contains the slot {text}; remove it from the label names or "
            "descriptions (`codebook`).",
            "codebook",
        )
    return out


def check_codebook_covers(spec: LabelSpec) -> None:
    """When a codebook is given, it must name or describe every class (a class seen only in the data is an error).

    Args:
        spec: the label set.

    Raises:
        FineclassError: naming ``codebook`` with the classes it lacks.
    """
    if not (spec.names or spec.descriptions):
        return
    missing = [c for c in spec.classes if c not in spec.names and c not in spec.descriptions]
    if missing:
        what = "dimensions" if spec.kind == "dimlevel" else "labels"
        raise FineclassError(
            f"`codebook` has no entry for the {what} {preview(missing)}, which occur in the data; the prompt would "
            f"show them without a name or description. Add them to the codebook, or remove those rows.",
            "codebook",
        )


# ---------------------------------------------------------------------- chat rendering
_SENTINEL = "\x1eFINECLASS_TEXT_SLOT\x1e"


def has_chat_template(tokenizer) -> bool:
    """Whether a tokenizer has a chat template.

    Args:
        tokenizer: the tokenizer.

    Returns:
        True when it has one.
    """
    return bool(getattr(tokenizer, "chat_template", None))


def split_prompt(tokenizer, user_message: str, use_chat: bool | None = None) -> tuple[str, str, bool]:
    """The rendered prompt as (head, tail) around the text: head + text + tail is what the model reads.

    With a chat template: the user message through ``apply_chat_template(..., add_generation_prompt=True)``, so the
    tail ends where the assistant's answer begins. Without one: the message, then a newline.

    Args:
        tokenizer: the model's tokenizer.
        user_message: the filled template (with ``{text}``).
        use_chat: use the chat template (None: when the tokenizer has one).

    Returns:
        ``(head, tail, chat)``.

    Raises:
        FineclassError: naming ``model`` or ``prompt`` when the chat template cannot render the prompt.
    """
    chat = has_chat_template(tokenizer) if use_chat is None else use_chat
    message = user_message.replace(TEXT_SLOT, _SENTINEL)
    if chat:
        try:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
            )
        except Exception as e:  # a template that refuses a lone user turn
            raise FineclassError(
                f"the model's chat template could not render the prompt ({e}). Pass a model with a "
                f"standard chat template.",
                "model",
            ) from None
    else:
        rendered = message + "\n"
    if rendered.count(_SENTINEL) != 1:
        raise FineclassError(
            "the model's chat template changed the prompt so that the {text} slot could not be "
            "found again; use another model or a simpler prompt.",
            "prompt",
        )
    head, tail = rendered.split(_SENTINEL)
    return head, tail, chat


def turn_end(tokenizer, chat: bool) -> int:
    """The token that ends an answer: the chat template's end of turn when it is one token, else EOS.

    Args:
        tokenizer: the model's tokenizer.
        chat: whether prompts go through its chat template.

    Returns:
        The token id.

    Raises:
        FineclassError: naming ``model`` when the tokenizer has no EOS token.
    """
    eos = tokenizer.eos_token_id
    if chat:
        try:
            msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "\x1eA\x1e"}]
            rendered = tokenizer.apply_chat_template(msgs, tokenize=False)
            after = rendered.split("\x1eA\x1e", 1)[1]
            ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
            special = set(getattr(tokenizer, "all_special_ids", []) or [])
            if ids and ids[0] in special:
                return int(ids[0])
        except Exception:
            pass
    if eos is None:
        raise FineclassError(
            "the model's tokenizer has no end-of-sequence token, so an answer cannot be ended; "
            "use a causal language model with an EOS token.",
            "model",
        )
    return int(eos)


# ---------------------------------------------------------------------- answers and blocks
def answer_text(spec: LabelSpec, target) -> str:
    """The answer in the paper's form for one encoded target.

    Args:
        spec: the label set.
        target: a class index (single), a 0/1 row (multi) or a level index per dimension (dimlevel).

    Returns:
        ``Answer = [5]``, ``Answer = [3, 7]``, or a JSON dictionary of the dimensions present.
    """
    if spec.kind == "single":
        return f"Answer = [{spec.classes[int(target)]}]"
    if spec.kind == "multi":
        codes = [c for c, on in zip(spec.classes, target) if float(on) > 0.5]
        return "Answer = [" + ", ".join(codes) + "]"
    present = {d: spec.levels[int(lv) - 1] for d, lv in zip(spec.classes, target) if int(lv) > 0}
    return json.dumps(present, ensure_ascii=False)


def block_key(spec: LabelSpec, code: str) -> str:
    """What names a class in its scoring block: the dimension (dimlevel), else the class's name.

    Args:
        spec: the label set.
        code: the class code.

    Returns:
        The key.
    """
    return code if spec.kind == "dimlevel" else spec.label_name(code)


def block_options(spec: LabelSpec) -> list[str]:
    """The values a block can take, in the probability layout's order.

    Args:
        spec: the label set.

    Returns:
        multi: ``["no", "yes"]``; dimlevel: ``["absent", *levels]``.
    """
    return [NO, YES] if spec.kind == "multi" else [ABSENT, *spec.levels]


def block_text(spec: LabelSpec, code: str, option: int) -> str:
    """One option of a class's scoring block, e.g. ``happiness: high``.

    Args:
        spec: the label set.
        code: the class code.
        option: the option's index in :func:`block_options`.

    Returns:
        The block's text.
    """
    return f"{block_key(spec, code)}: {block_options(spec)[option]}"


def candidate_texts(spec: LabelSpec) -> list[list[str]]:
    """Per output group, the candidate continuations whose likelihoods are compared (softmax within the group).

    Args:
        spec: the label set.

    Returns:
        One list of texts per group: the answers (single), or each class's block options.
    """
    if spec.kind == "single":
        return [[answer_text(spec, k) for k in range(len(spec.classes))]]
    return [[block_text(spec, c, j) for j in range(len(block_options(spec)))] for c in spec.classes]
