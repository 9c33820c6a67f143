"""Acceptance: how often proposals were accepted and how far coders agree; accepted labels as a training set."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..errors import FineclassError, preview
from ..evaluation import agreement
from ..sheets import unguard_table
from ..tables import ID, read_table
from .items import key_str, parse_accept, shape

RULES = ("any-accept", "majority", "unanimous")
CONFLICTS = ("priority", "votes", "drop", "error")


def _accepted_bool(decisions: pa.Table, argument: str = "decisions") -> np.ndarray:
    if "accepted" not in decisions.column_names:
        raise FineclassError(
            f"`{argument}` has no `accepted` column; columns are: {', '.join(decisions.column_names)}.", argument
        )
    out = []
    bad = set()
    for v in decisions.column("accepted").to_pylist():
        if isinstance(v, bool):
            out.append(v)
            continue
        s = parse_accept(str(v)) if v is not None else None
        if s is None:
            bad.add(v)
            out.append(False)
        else:
            out.append(s == "Y")
    if bad:
        raise FineclassError(
            f"`{argument}`: `accepted` holds values other than Y/N: {preview(sorted(map(str, bad)))}.", argument
        )
    return np.array(out, dtype=bool)


def _read_decisions(decisions: Any) -> tuple[pa.Table, tuple, Any, Any, pa.Table]:
    """Read a decisions table and split it into decisions on proposals and coders' additions.

    Args:
        decisions: the decisions (a table or a path; a ``.csv`` fineclass wrote has its text cells' guard removed).

    Returns:
        ``(everything, fields, proposal, added, dec)``: the whole table, its label fields (from ``shape``), the
        rows' proposal and addition flags (from ``_kinds``) and the decisions on proposals.
    """
    everything = read_table(decisions, "decisions")
    if isinstance(decisions, (str, Path)) and str(decisions).lower().endswith(".csv"):
        everything = unguard_table(everything)  # a decisions.csv fineclass wrote: text cells carry the guard
    fields = shape(everything, "decisions")
    proposal, added = _kinds(everything, fields)
    return everything, fields, proposal, added, everything.filter(pa.array(proposal))


def _kinds(dec: pa.Table, fields: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Which rows are decisions on proposals, and which are codes a coder added.

    The rest are rows that only say a document without proposals was reviewed (no label, no decision).
    """
    n = dec.num_rows
    added = np.zeros(n, bool)
    if "added" in dec.column_names:
        added = np.array([bool(v) for v in dec.column("added").to_pylist()], dtype=bool)
    no_label = np.ones(n, bool)
    for f in fields:
        no_label &= np.array([v is None for v in dec.column(f).to_pylist()], dtype=bool)
    no_decision = (
        np.array([v is None for v in dec.column("accepted").to_pylist()], dtype=bool)
        if "accepted" in dec.column_names
        else np.zeros(n, bool)
    )
    return ~added & ~(no_label & no_decision), added


def _natural(k: Any):
    s = "" if k is None else str(k)
    return (k is None, not s.isdigit(), int(s) if s.isdigit() else 0, s)


def _rate_table(groups: list, acc: np.ndarray, name: str, corrected: np.ndarray | None, seconds: list) -> pa.Table:
    """Decisions, acceptance, corrections and seconds per decision, per group.

    ``corrected`` is None when the decisions have no ``correction`` column (rates unknown); ``seconds`` holds
    None for decisions without a time.
    """
    keys: dict = {}
    for k, (g, a) in enumerate(zip(groups, acc)):
        n = keys.setdefault(g, [0, 0, 0, []])
        n[0] += 1
        n[1] += int(a)
        n[2] += int(corrected[k]) if corrected is not None else 0
        if seconds[k] is not None:
            n[3].append(seconds[k])
    order = sorted(keys, key=_natural)
    known = corrected is not None
    return pa.table(
        {
            name: pa.array(order, pa.string()),
            "decisions": pa.array([keys[k][0] for k in order], pa.int64()),
            "accepted": pa.array([keys[k][1] for k in order], pa.int64()),
            "rate": pa.array([keys[k][1] / keys[k][0] for k in order], pa.float64()),
            "corrected": pa.array([keys[k][2] if known else None for k in order], pa.int64()),
            "correction_rate": pa.array([keys[k][2] / keys[k][0] if known else None for k in order], pa.float64()),
            "timed": pa.array([len(keys[k][3]) for k in order], pa.int64()),
            "seconds": pa.array([float(np.mean(keys[k][3])) if keys[k][3] else None for k in order], pa.float64()),
        }
    )


def _proposal_counts(dec: pa.Table, fields: tuple[str, ...]) -> tuple[list, list]:
    """Per proposer (in the proposer table's order): documents with its proposals, and proposals per document."""
    ids = [key_str(v) for v in dec.column(ID).to_pylist()]
    labs = list(zip(*[[key_str(v) for v in dec.column(f).to_pylist()] for f in fields]))
    docs: dict = {}
    props: dict = {}
    for p, doc, lab in zip(dec.column("proposer").to_pylist(), ids, labs):
        docs.setdefault(p, set()).add(doc)
        props.setdefault(p, set()).add((doc, lab))
    order = sorted(docs, key=_natural)
    return [len(docs[p]) for p in order], [len(props[p]) / len(docs[p]) for p in order]


def _additions_table(dec: pa.Table, added: np.ndarray) -> pa.Table:
    """Per coder and overall: documents reviewed, codes added, and additions per document."""
    ids = [key_str(v) for v in dec.column(ID).to_pylist()]
    coders = (
        [key_str(v) or None for v in dec.column("coder").to_pylist()]
        if "coder" in dec.column_names
        else [None] * dec.num_rows
    )
    docs: dict = {}
    adds: dict = {}
    for k, (doc, c) in enumerate(zip(ids, coders)):
        for key in (c, "all"):
            docs.setdefault(key, set()).add(doc)
            adds[key] = adds.get(key, 0) + int(added[k])
    order = sorted((k for k in docs if k != "all"), key=_natural) + ["all"]
    return pa.table(
        {
            "coder": pa.array(order, pa.string()),
            "documents": pa.array([len(docs[k]) for k in order], pa.int64()),
            "additions": pa.array([adds[k] for k in order], pa.int64()),
            "rate": pa.array([adds[k] / len(docs[k]) for k in order], pa.float64()),
        }
    )


def _agreement_rows(long_rows: list[dict]) -> list[dict]:
    """Agreement rows (statistic, coder_a, coder_b, estimate, n) for a long table unit/coder/value.

    They come from :func:`fineclass.evaluation.agreement`; undefined statistics are null, which the report shows.
    """
    table = pa.Table.from_pylist(
        long_rows, schema=pa.schema([("unit", pa.string()), ("coder", pa.string()), ("value", pa.string())])
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return agreement(table, unit="unit", coder="coder", value="value").to_pylist()


def _coder_votes(decisions: pa.Table, fields: tuple[str, ...], acc: np.ndarray):
    """{(doc, label): {coder: [decisions]}} with the coder as a string (row number when none is known)."""
    ids = decisions.column(ID).to_pylist()
    labs = [decisions.column(f).to_pylist() for f in fields]
    coders = decisions.column("coder").to_pylist() if "coder" in decisions.column_names else [None] * decisions.num_rows
    votes: dict[tuple, dict[str, list[bool]]] = {}
    for k in range(decisions.num_rows):
        lab = tuple(key_str(col[k]) for col in labs)
        if any(v == "" for v in lab):
            continue
        c = key_str(coders[k]) or f"row{k}"
        votes.setdefault((key_str(ids[k]), lab), {}).setdefault(c, []).append(bool(acc[k]))
    return votes


def _own_codes(
    dec: pa.Table, fields: tuple[str, ...], proposal: np.ndarray, added: np.ndarray, acc: np.ndarray, votes: dict
) -> dict[tuple, str]:
    """Add the coders' corrections and additions to ``votes``; return their codes with their source.

    A code that no proposer gave gets an accept vote from each coder who gave it, and a reject from every other
    coder who reviewed the document.
    """
    ids = [key_str(v) for v in dec.column(ID).to_pylist()]
    labs = list(zip(*[[key_str(v) for v in dec.column(f).to_pylist()] for f in fields]))
    coders = (
        [key_str(v) for v in dec.column("coder").to_pylist()] if "coder" in dec.column_names else [""] * dec.num_rows
    )
    corrections = dec.column("correction").to_pylist() if "correction" in dec.column_names else [None] * dec.num_rows
    reviewers: dict[str, set] = {}
    for doc, c in zip(ids, coders):
        if c:  # without a coder's name a row is nobody's vote on another code
            reviewers.setdefault(doc, set()).add(c)
    own: dict[tuple, str] = {}
    k_prop = np.cumsum(proposal) - 1  # a proposal row's index among the proposal rows (acc)
    for k in range(dec.num_rows):
        code = None
        if added[k]:
            code, source = labs[k], "addition"
        elif proposal[k] and corrections[k] not in (None, "") and not acc[k_prop[k]]:
            fix = key_str(corrections[k])
            code, source = ((labs[k][0], fix) if len(fields) == 2 else (fix,)), "correction"
        if code is None:
            continue
        key = (ids[k], code)
        if key in votes and key not in own:
            continue  # also a proposal: its reviewers voted on it
        own.setdefault(key, source)
        votes.setdefault(key, {}).setdefault(coders[k] or f"row-own{k}", []).append(True)
    for (doc, code), by_coder in votes.items():
        if (doc, code) in own:
            for c in reviewers.get(doc, ()):
                by_coder.setdefault(c, [False])
    return own


def acceptance_report(decisions: Any) -> dict[str, pa.Table]:
    """How often proposals were accepted, and how far coders agree.

    Rates are computed over the decision rows present. A coder who gave one proposal both Y and N (possible when
    the same label was proposed twice) is left out of that item's comparison and counted in ``self_conflicts``.
    Codes the coders added (no proposer gave them) are counted in ``additions``, not in the acceptance rates.

    Args:
        decisions: what :func:`import_review` returns (or a table of the same shape: the paper's record).

    Returns:
        A dict of tables: ``proposer``, ``dimension`` (or ``label``), ``level`` (dimension->level) and ``coder``:
        per group, ``decisions``, ``accepted``, ``rate`` (accepted / decisions), ``corrected`` and
        ``correction_rate`` (rejected with the coder's own code; null when the decisions have no ``correction``
        column), ``timed`` and ``seconds`` (mean coder seconds per decision, over the timed ones); the proposer
        table adds ``documents`` and ``items`` (proposals per document), so that it can be passed to
        :func:`fineclass.plan_budget` as is; ``additions`` (when the decisions have an ``added`` column): per coder
        and ``all``, documents reviewed, codes added and additions per document; ``agreement``: on the overlap
        (proposals decided by two or more coders), per coder pair and over all pairs (``coder_a = "all"``: every
        pair of decisions on one proposal is one unit): items, agreement (share of equal decisions), kappa
        (Cohen's), alpha (Krippendorff's, nominal, all coders of a proposal; on the "all" row), and ``method``
        (:func:`fineclass.evaluation.agreement`).

    Example:
        >>> fineclass.acceptance_report(decisions)["proposer"]  # doctest: +SKIP
    """
    everything, fields, proposal, added, dec = _read_decisions(decisions)
    acc = _accepted_bool(dec)
    corrected = None
    if "correction" in dec.column_names:
        corrected = np.array([v is not None and str(v).strip() != "" for v in dec.column("correction").to_pylist()])
    seconds = dec.column("seconds").to_pylist() if "seconds" in dec.column_names else [None] * dec.num_rows

    def rates(groups, name):
        return _rate_table(groups, acc, name, corrected, seconds)

    out = {}
    if "proposer" in dec.column_names:
        out["proposer"] = rates(dec.column("proposer").to_pylist(), "proposer")
        documents, items = _proposal_counts(dec, fields)
        out["proposer"] = out["proposer"].append_column("documents", pa.array(documents, pa.int64()))
        out["proposer"] = out["proposer"].append_column("items", pa.array(items, pa.float64()))
    if fields == ("dimension", "level"):
        out["dimension"] = rates(dec.column("dimension").to_pylist(), "dimension")
        out["level"] = rates(dec.column("level").to_pylist(), "level")
    else:
        out["label"] = rates([key_str(v) for v in dec.column("label").to_pylist()], "label")
    if "coder" in dec.column_names:
        out["coder"] = rates([key_str(v) or None for v in dec.column("coder").to_pylist()], "coder")
    if "added" in everything.column_names:
        out["additions"] = _additions_table(everything, added)
    # agreement on the overlap: one vote per coder and proposal
    votes = _coder_votes(dec, fields, acc)
    long_rows, pair_rows = [], []
    self_conflicts = 0
    units = 0
    for key, by_coder in votes.items():
        clean = {}
        for c, vs in by_coder.items():
            if c.startswith("row"):
                continue  # no coder column: nothing to compare
            if len(set(vs)) > 1:
                self_conflicts += 1
            else:
                clean[c] = "Y" if vs[0] else "N"
        if len(clean) < 2:
            continue
        units += 1
        unit = json.dumps([key[0], *key[1]], ensure_ascii=False)
        cs = sorted(clean, key=_natural)
        long_rows += [{"unit": unit, "coder": c, "value": clean[c]} for c in cs]
        for i in range(len(cs)):  # pooled over pairs: each pair of decisions on one proposal is one unit
            for j in range(i + 1, len(cs)):
                pu = f"{unit}|{cs[i]}|{cs[j]}"
                pair_rows += [
                    {"unit": pu, "coder": "a", "value": clean[cs[i]]},
                    {"unit": pu, "coder": "b", "value": clean[cs[j]]},
                ]
    rows = []
    alpha, kappa_all, agree_all, method = None, None, None, "fineclass.evaluation.agreement"
    if units:
        stats = _agreement_rows(long_rows)
        by_pair: dict = {}
        for r in stats:
            if r["coder_a"] is None:
                alpha = r["estimate"]
            elif r["n"]:
                pair = tuple(sorted((r["coder_a"], r["coder_b"]), key=_natural))
                by_pair.setdefault(pair, {})[r["statistic"]] = r
        for (ca, cb), st in sorted(by_pair.items(), key=lambda kv: (_natural(kv[0][0]), _natural(kv[0][1]))):
            k = next((v for name, v in st.items() if name.startswith("cohen_kappa")), None)
            rows.append(
                {
                    "coder_a": ca,
                    "coder_b": cb,
                    "items": st["percent_agreement"]["n"],
                    "agreement": st["percent_agreement"]["estimate"],
                    "kappa": k["estimate"] if k else None,
                    "alpha": None,
                    "self_conflicts": None,
                    "method": method,
                }
            )
        pooled = _agreement_rows(pair_rows)
        for r in pooled:
            if r["statistic"] == "percent_agreement":
                agree_all = r["estimate"]
            elif r["statistic"].startswith("cohen_kappa"):
                kappa_all = r["estimate"]
    rows.append(
        {
            "coder_a": "all",
            "coder_b": "all",
            "items": units,
            "agreement": agree_all,
            "kappa": kappa_all,
            "alpha": alpha,
            "self_conflicts": self_conflicts,
            "method": method,
        }
    )
    out["agreement"] = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("coder_a", pa.string()),
                ("coder_b", pa.string()),
                ("items", pa.int64()),
                ("agreement", pa.float64()),
                ("kappa", pa.float64()),
                ("alpha", pa.float64()),
                ("self_conflicts", pa.int64()),
                ("method", pa.string()),
            ]
        ),
    )
    return out


def assemble_training_set(
    decisions: Any,
    *,
    rule: str = "any-accept",
    conflict: str = "priority",
    priority: Sequence[str] | None = None,
    kind: str | None = None,
    keep_empty: bool = True,
    return_conflicts: bool = False,
):
    """The accepted labels as a long training table, with explicit rules for disagreement.

    Each coder casts one vote per proposal (document + label): accept if they accepted it in any of their rows (a
    label proposed by two proposers appears twice), reject otherwise. A coder's own codes - the ``correction`` of a
    rejected proposal and the codes they ``added`` (see :func:`import_review`) - are accept votes for codes that
    no proposer gave; every other coder who reviewed that document and did not give the code votes against it.

    Args:
        decisions: what :func:`import_review` returns.
        rule: when a proposal is accepted, given its votes: ``"any-accept"``: at least one coder accepted it (the
            paper's workflow: one coder per tweet, and an accept by either coder of the overlap counts);
            ``"majority"``: more coders accepted than rejected (a tie rejects); ``"unanimous"``: every coder who
            decided accepted.
        conflict: what happens to two or more accepted levels for one dimension of one document (dimension->level
            shape), or two or more accepted labels for one document (``kind="single"``): ``"priority"``: keep the
            label proposed by the earliest proposer in ``priority`` (a coder's own code ranks first), a tie
            falling back to ``"votes"``;
            ``"votes"``: keep the label with the most accepting coders, a tie falling back to ``priority``, a tie on
            both dropping the cell; ``"drop"``: drop the cell; ``"error"``: raise, listing the conflicts.
        priority: proposers, most trusted first (default: the order in which they first appear in ``decisions``).
        kind: ``"dimlevel"`` when ``decisions`` has ``dimension``/``level``; otherwise ``"multi"`` (every accepted
            label kept) unless ``"single"`` is passed.
        keep_empty: keep documents that were reviewed but got no accepted label, as one row with null labels
            (training reads them as documents with no label present); never for ``kind="single"``.
        return_conflicts: also return a table of the resolved conflicts (id, dimension, candidates, chosen,
            reason).

    Returns:
        ``id, dimension, level`` (or ``id, label``), ``accepts``, ``rejects`` (coder votes), ``source``
        (``proposal``: a proposal accepted; ``correction`` or ``addition``: a coder's own code), ``coders`` (the
        coders who accepted or gave the code, comma-separated); with ``return_conflicts``: ``(table, conflicts)``.

    Raises:
        FineclassError: naming ``rule``, ``conflict`` or ``kind`` when they do not fit, or ``conflict`` with the
            conflicts found (``conflict="error"``).

    Example:
        >>> training = fineclass.assemble_training_set(decisions)  # doctest: +SKIP
    """
    if rule not in RULES:
        raise FineclassError(f"`rule` must be one of {', '.join(RULES)}; got {rule!r}.", "rule")
    if conflict not in CONFLICTS:
        raise FineclassError(f"`conflict` must be one of {', '.join(CONFLICTS)}; got {conflict!r}.", "conflict")
    everything, fields, proposal, added, dec = _read_decisions(decisions)
    if kind is None:
        kind = "dimlevel" if fields == ("dimension", "level") else "multi"
    if (kind == "dimlevel") != (fields == ("dimension", "level")) or kind not in ("single", "multi", "dimlevel"):
        raise FineclassError(f"`kind` {kind!r} does not fit the decisions' columns ({', '.join(fields)}).", "kind")
    acc = _accepted_bool(dec)
    votes = _coder_votes(dec, fields, acc)
    own = _own_codes(everything, fields, proposal, added, acc, votes)
    # who proposed what
    proposers_of: dict[tuple, list[str]] = {}
    seen_order: list[str] = []
    if "proposer" in dec.column_names:
        ids = dec.column(ID).to_pylist()
        labs = [dec.column(f).to_pylist() for f in fields]
        for k, p in enumerate(dec.column("proposer").to_pylist()):
            if p is None:
                continue
            if p not in seen_order:
                seen_order.append(p)
            key = (key_str(ids[k]), tuple(key_str(col[k]) for col in labs))
            lst = proposers_of.setdefault(key, [])
            if p not in lst:
                lst.append(p)
    order = list(priority) if priority is not None else seen_order
    rank = {p: n for n, p in enumerate(order)}
    original_id = {}
    for v in everything.column(ID).to_pylist():
        original_id.setdefault(key_str(v), v)
    accepted: dict[tuple, tuple[int, int]] = {}
    givers: dict[tuple, list[str]] = {}
    docs_seen: list[str] = []
    doc_set = set()
    for v in everything.column(ID).to_pylist():  # documents in order, those reviewed without proposals included
        if key_str(v) not in doc_set:
            doc_set.add(key_str(v))
            docs_seen.append(key_str(v))
    for (doc, lab), by_coder in votes.items():
        if doc not in doc_set:
            doc_set.add(doc)
            docs_seen.append(doc)
        ya = sum(1 for vs in by_coder.values() if any(vs))
        no = len(by_coder) - ya
        ok = {"any-accept": ya >= 1, "majority": ya > no, "unanimous": ya >= 1 and no == 0}[rule]
        if ok:
            accepted[(doc, lab)] = (ya, no)
            givers[(doc, lab)] = sorted((c for c, vs in by_coder.items() if any(vs)), key=_natural)
    # group into cells that may hold only one label
    cells: dict[tuple, list[tuple]] = {}
    for doc, lab in accepted:
        cell = (doc, lab[0]) if kind == "dimlevel" else (doc,) if kind == "single" else (doc, lab)
        cells.setdefault(cell, []).append(lab)
    conflicts = []
    chosen: list[tuple[str, tuple]] = []
    for cell, labs in cells.items():
        doc = cell[0]
        if len(labs) == 1:
            chosen.append((doc, labs[0]))
            continue
        cand = sorted(labs)

        def prank(lab, doc=doc):
            if (doc, lab) in own:
                return -1
            ps = proposers_of.get((doc, lab), [])
            return min((rank.get(p, len(rank)) for p in ps), default=len(rank))

        def best(keyfn, pool):
            top = min(keyfn(lab) for lab in pool)
            return [lab for lab in pool if keyfn(lab) == top]

        def by_votes(lab, doc=doc):
            return -accepted[(doc, lab)][0]

        if conflict == "error":
            conflicts.append((cell, cand, None, "error"))
            continue
        if conflict == "drop":
            pick, reason = [], "dropped: conflicting accepted labels"
        elif conflict == "priority":
            pick = best(prank, cand)
            reason = "priority"
            if len(pick) > 1:
                pick, reason = best(by_votes, pick), "priority tie, then votes"
        else:
            pick = best(by_votes, cand)
            reason = "votes"
            if len(pick) > 1:
                pick, reason = best(prank, pick), "votes tie, then priority"
        if len(pick) != 1:
            pick, reason = [], "dropped: tie"
        conflicts.append((cell, cand, pick[0] if pick else None, reason))
        if pick:
            chosen.append((doc, pick[0]))
    if conflict == "error" and conflicts:
        lines = [
            f"{c[0][0]} {c[0][1] if kind == 'dimlevel' else ''}: {', '.join('/'.join(x) for x in c[1])}"
            for c in conflicts[:20]
        ]
        raise FineclassError(
            f"{len(conflicts)} conflicting accepted labels (first ones: {'; '.join(lines)}). "
            f"Pass conflict='priority', 'votes' or 'drop' to resolve them.",
            "conflict",
        )
    by_doc: dict[str, list[tuple]] = {}
    for doc, lab in chosen:
        by_doc.setdefault(doc, []).append(lab)
    rows = []
    for doc in docs_seen:
        labs = sorted(by_doc.get(doc, []))
        if not labs:
            if keep_empty and kind != "single":
                rows.append((doc, None, 0, 0))
            continue
        for lab in labs:
            ya, no = accepted[(doc, lab)]
            rows.append((doc, lab, ya, no))
    # the source of each code: a proposal accepted, else the coder's correction or addition
    id_type = dec.column(ID).type
    cols = {"id": pa.array([original_id[r[0]] for r in rows], id_type)}
    if kind == "dimlevel":
        cols["dimension"] = pa.array([r[1][0] if r[1] else None for r in rows], pa.string())
        cols["level"] = pa.array([r[1][1] if r[1] else None for r in rows], pa.string())
    else:
        ltype = dec.column("label").type
        conv = (lambda s: int(s)) if pa.types.is_integer(ltype) else (lambda s: s)
        cols["label"] = pa.array([conv(r[1][0]) if r[1] else None for r in rows], ltype)
    cols["accepts"] = pa.array([r[2] for r in rows], pa.int64())
    cols["rejects"] = pa.array([r[3] for r in rows], pa.int64())
    cols["source"] = pa.array([None if r[1] is None else own.get((r[0], r[1]), "proposal") for r in rows], pa.string())
    cols["coders"] = pa.array(
        [",".join(givers[(r[0], r[1])]) or None if r[1] is not None else None for r in rows], pa.string()
    )
    table = pa.table(cols)
    if not return_conflicts:
        return table

    def fmt(doc, lab):
        ya, no = accepted[(doc, lab)]
        ps = ",".join(proposers_of.get((doc, lab), [])) or "?"
        return f"{lab[-1]} ({ps}; {ya} accept, {no} reject)"

    ctable = pa.table(
        {
            "id": pa.array([original_id[c[0][0]] for c in conflicts], id_type),
            ("dimension" if kind == "dimlevel" else "cell"): pa.array(
                [c[0][1] if kind == "dimlevel" else None for c in conflicts], pa.string()
            ),
            "candidates": pa.array([[fmt(c[0][0], lab) for lab in c[1]] for c in conflicts], pa.list_(pa.string())),
            "chosen": pa.array([c[2][-1] if c[2] else None for c in conflicts], pa.string()),
            "reason": pa.array([c[3] for c in conflicts], pa.string()),
        }
    )
    return table, ctable
