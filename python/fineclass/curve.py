"""Learning curves: how agreement with human coders grows with the number of labelled documents.

``learning_curve`` trains at each training size and seed on one fixed test split, scores each run with
``fineclass.evaluate``, fits ``score = a - b * n^(-c)`` and says how many labels would reach a target score.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from .classifier import train
from .config import TrainConfig
from .data import labelled
from .errors import FineclassError
from .evaluation import evaluate, fit_curve, labels_needed
from .tables import read_table, with_id

HEADLINE = {"single": "accuracy", "multi": "jaccard", "dimlevel": "jaccard"}
LOWER_IS_BETTER = {"hamming_loss"}


class LearningCurve:
    """The result of :func:`learning_curve`.

    Attributes:
        table: one row per training size and seed: size, seed, score, metric, seconds.
        metric: the metric scored.
        fit: the fitted ``CurveFit`` (None with fewer than three sizes).
        needed: the labels needed for ``target`` (``labels_needed``'s table), or None.
        plot: the plot's path, or None.
        target: the target score asked for, or None.
    """

    def __init__(
        self, table: pa.Table, metric: str, fit, needed: pa.Table | None, plot: str | None, target: float | None = None
    ):
        self.table, self.metric, self.fit, self.needed, self.plot = table, metric, fit, needed, plot
        self.target = target

    def summary(self) -> pa.Table:
        """The metric per training size.

        Returns:
            A table: size, mean, min, max, runs.
        """
        import polars as pl

        return (
            pl.from_arrow(self.table)
            .group_by("size")
            .agg(
                pl.col("score").mean().alias("mean"),
                pl.col("score").min().alias("min"),
                pl.col("score").max().alias("max"),
                pl.len().alias("runs"),
            )
            .sort("size")
            .to_arrow()
        )

    def fitted(self, points: int = 100) -> pa.Table | None:
        """The fitted curve on a grid of sizes, log-spaced from the smallest size to 4 times the largest.

        Args:
            points: how many sizes on the grid.

        Returns:
            A table (size, score), or None when fewer than three sizes were trained (no curve is fitted).
        """
        if self.fit is None:
            return None
        sizes = self.table.column("size").to_numpy()
        grid = np.geomspace(float(sizes.min()), float(sizes.max()) * 4, points)
        return pa.table({"size": grid, "score": np.asarray(self.fit.predict(grid), dtype=float)})

    def to_dict(self) -> dict:
        """Every result by name, for R (a named list of data frames and values).

        Returns:
            ``{"runs", "summary", "metric", "target"}``; with a fitted curve also ``fit`` (its parameters)
            and ``fitted`` (the curve on a grid); with a target also ``needed``.
        """
        out = {"runs": self.table, "summary": self.summary(), "metric": self.metric, "target": self.target}
        if self.fit is not None:
            out["fit"] = self.fit.to_dict()
            out["fitted"] = self.fitted()
        if self.needed is not None:
            out["needed"] = self.needed
        return out

    def __repr__(self) -> str:
        rows = self.summary().to_pylist()
        lines = [f"LearningCurve ({self.metric}):"]
        lines += [
            f"  n={r['size']:>6}: {r['mean']:.3f} (range {r['min']:.3f}-{r['max']:.3f}, {r['runs']} runs)" for r in rows
        ]
        if self.needed is not None:
            r = self.needed.to_pylist()[0]
            lines.append(f"  labels needed for {r['target']}: {r['labels']} [{r['lower']}, {r['upper']}]")
        if self.plot:
            lines.append(f"  plot: {self.plot}")
        return "\n".join(lines)


def _subset(table: pa.Table, ids: Sequence) -> pa.Table:
    wanted = pa.array(list(ids), type=table.column("id").type)
    return table.filter(pa.compute.is_in(table.column("id"), value_set=wanted))


def training_pool(all_ids: Sequence, test_ids) -> list:
    """The documents a learning curve may train on: every id outside the test split, in the data's order.

    Args:
        all_ids: the data's ids, in its order.
        test_ids: the test split's ids.

    Returns:
        The remaining ids, in the data's order.
    """
    test_set = set(test_ids)
    return [i for i in all_ids if i not in test_set]


def nested_subset(pool: Sequence, seed: int, size: int) -> list:
    """A learning curve's training subset: the first ``size`` of ``pool`` in a seeded order (nested across sizes).

    Args:
        pool: the ids to draw from (:func:`training_pool`).
        seed: the run's seed; each seed has its own order.
        size: how many ids.

    Returns:
        The ids; for one seed, a smaller size's subset is contained in a larger one's.
    """
    order = np.random.default_rng(seed).permutation(len(pool))
    return [pool[i] for i in order[:size]]


def learning_curve(
    data: Any,
    *,
    sizes: Sequence[int] = (100, 200, 400, 800),
    seeds: Sequence[int] = (0, 1, 2),
    test: Any = None,
    test_share: float = 0.2,
    metric: str | None = None,
    target: float | None = None,
    plot: str | Path | None = "learning-curve.png",
    progress: bool = True,
    checkpoint: str | Path | None = None,
    **train_args: Any,
) -> LearningCurve:
    """How agreement with human coders grows with the number of labelled documents.

    Trains at each size x seed, scores each run on one fixed test split, fits ``score = a - b * n^(-c)`` and
    estimates the labels needed to reach ``target``. Training subsets are nested: for a seed, the 200-document set
    contains the 100-document set.

    Args:
        data: the labelled documents (any table or path).
        sizes: the training sizes.
        seeds: the seeds; each gives one run per size.
        test: the test documents (a table with ids, or a list of ids in ``data``); without it, a seeded
            ``test_share`` of ``data`` is held out.
        test_share: the share held out when ``test`` is None.
        metric: the metric to score (default: accuracy for single-label, jaccard otherwise).
        target: a score to reach; with three sizes or more, the labels it needs are estimated.
        plot: a PNG file for the curve (None: no plot).
        progress: print a line per run.
        checkpoint: a JSON-lines file that records each finished run as it ends. Run the same call again after
            an interruption and the recorded runs are reused, so only the missing sizes and seeds are trained.
            A checkpoint written with other data, test split, model, method or settings is refused.
        **train_args: what :func:`fineclass.train` takes, passed to every run: ``text``, ``label``, ``id``,
            ``labels`` (they also read ``data``), ``model`` (default ``"minilm"``), ``method`` (``"head"``),
            ``codebook`` (the codebook-aware methods need it), ``config``, ``kind``, ``levels``,
            ``trust_remote_code`` and ``TrainConfig`` settings as keywords (``epochs=2``). Each run uses its own
            seed in place of the config's.

    Returns:
        A :class:`LearningCurve`.

    Raises:
        FineclassError: naming ``sizes``, ``seeds``, ``test``, ``metric`` or ``checkpoint`` when they do not fit,
            or the training argument at fault (``spec`` and ``resume`` are the curve's own, per run).

    Example:
        >>> lc = fineclass.learning_curve(tweets, sizes=[100, 200, 400], seeds=[0, 1], target=0.6)  # doctest: +SKIP
        >>> lc = fineclass.learning_curve(tweets, method="codebook", codebook=book, epochs=4)  # doctest: +SKIP
    """
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < 2:
        raise FineclassError(f"`sizes` must be training sizes of at least 2; got {list(sizes)}.", "sizes")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise FineclassError("`seeds` needs at least one seed.", "seeds")
    args = _train_args(train_args)
    text, label, labels = args["text"], args["label"], args["labels"]
    table = with_id(read_table(data), args["id"])
    # checks the data and fixes the label spec once, for every run
    ds = labelled(table, text=text, label=label, labels=labels, kind=args["kind"], levels=args["levels"])
    all_ids = list(ds.ids)
    if test is None:
        rng = np.random.default_rng(12345)
        n_test = max(1, int(round(len(all_ids) * test_share)))
        test_ids = [all_ids[i] for i in np.sort(rng.permutation(len(all_ids))[:n_test])]
    elif isinstance(test, (list, tuple)):
        test_ids = list(test)
    else:
        test_ids = with_id(read_table(test, "test"), id).column("id").to_pylist()
    test_set = set(test_ids)
    unknown = test_set - set(all_ids)
    if unknown:
        raise FineclassError(f"`test` names {len(unknown)} ids that are not in `data`.", "test")
    pool = training_pool(all_ids, test_set)
    if sizes[-1] > len(pool):
        raise FineclassError(
            f"the largest size ({sizes[-1]}) exceeds the {len(pool)} documents left for training "
            f"after the test split; lower `sizes`.",
            "sizes",
        )
    metric = metric or HEADLINE[ds.spec.kind]
    test_docs = _subset(table, test_ids)
    truth = _truth(table, ds, test_ids, label, labels)
    base = args.pop("config")
    key = _fingerprint(all_ids, test_ids, args, base, metric)
    done = _read_checkpoint(checkpoint, key) if checkpoint is not None else {}
    rows = []
    t0 = time.time()
    for seed in seeds:
        for size in sizes:
            if (size, seed) in done:
                rows.append(done[(size, seed)])
                if progress:
                    print(
                        f"learning curve: n={size} seed={seed} {metric}={rows[-1]['score']:.3f} (from the checkpoint)",
                        file=sys.stderr,
                    )
                continue
            ids = nested_subset(pool, seed, size)
            clf = train(
                _subset(table, ids), **{**args, "id": "id"}, config={**base, "seed": seed}, progress=False, spec=ds.spec
            )
            pred = clf.predict(test_docs, text=text)
            ev = evaluate(pred, truth, spec=ds.spec, ids=test_ids, bootstrap=0)
            score = ev.get(metric)
            if score is None:
                raise FineclassError(
                    f"`metric` {metric!r} is not one of this task's metrics: "
                    f"{', '.join(ev.metrics.column('metric').to_pylist())}.",
                    "metric",
                )
            rows.append(
                {
                    "size": size,
                    "seed": seed,
                    "score": float(score),
                    "metric": metric,
                    "seconds": round(time.time() - t0, 1),
                }
            )
            if checkpoint is not None:
                _append_checkpoint(checkpoint, key, rows[-1])
            if progress:
                print(
                    f"learning curve: n={size} seed={seed} {metric}={score:.3f} ({rows[-1]['seconds']} s)",
                    file=sys.stderr,
                )
    result = pa.Table.from_pylist(rows)
    fit = needed = None
    if len(sizes) >= 3:
        fit = fit_curve(result.column("size").to_numpy(), result.column("score").to_numpy(), seed=seeds[0])
        if target is not None:
            needed = labels_needed(fit, float(target), higher_is_better=metric not in LOWER_IS_BETTER)
    elif target is not None:
        raise FineclassError("estimating the labels needed for `target` takes at least 3 training sizes.", "sizes")
    plot_path = _plot(result, fit, metric, target, plot) if plot else None
    return LearningCurve(result, metric, fit, needed, plot_path, target=None if target is None else float(target))


def _train_args(given: dict) -> dict:
    """``learning_curve``'s training arguments: train()'s keywords with their defaults, settings folded into config."""
    import inspect

    own = {"spec": "the curve fixes one label set for all runs", "resume": "each run starts afresh"}
    for name, why in own.items():
        if name in given:
            raise FineclassError(f"`{name}` is not a learning-curve argument ({why}); leave it out.", name)
    keywords = inspect.signature(train).parameters
    named = {k: p.default for k, p in keywords.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    for k in (*own, "progress"):
        named.pop(k)
    args = {k: given.get(k, default) for k, default in named.items()}
    settings = {k: v for k, v in given.items() if k not in named}
    args["config"] = TrainConfig.with_settings(args["config"], settings).to_dict()
    return args


def _fingerprint(all_ids, test_ids, args: dict, config: dict, metric: str) -> str:
    """What makes two runs comparable: the documents, the test split, the model and every setting."""
    import hashlib
    import json

    h = hashlib.sha256()
    parts = [
        [str(i) for i in all_ids],
        sorted(str(i) for i in test_ids),
        str(args["model"]),
        str(args["method"]),
        {k: config[k] for k in sorted(config) if k != "seed"},
        metric,
        args["text"],
        str(args["label"]),
    ]
    # added later, and only when set, so that checkpoints written before they existed still match
    extra = {k: args[k] for k in ("codebook", "kind", "levels", "trust_remote_code") if args[k] not in (None, False)}
    if extra:
        parts.append(extra)
    h.update(json.dumps(parts, default=str, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _read_checkpoint(path, key) -> dict:
    import json

    path = Path(path)
    if not path.exists():
        return {}
    done = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            row = rec["run"]
            rec_key = rec["key"]
        except (ValueError, KeyError, TypeError):
            # a line cut short by a crash while it was written: that run is simply trained again
            continue
        if rec_key != key:
            raise FineclassError(
                f"the checkpoint {str(path)!r} (line {n}) was written by a learning curve with "
                f"other data, test split, model or settings; give another `checkpoint` file, or "
                f"delete this one to start over.",
                "checkpoint",
            )
        done[(int(row["size"]), int(row["seed"]))] = row
    return done


def _append_checkpoint(path, key, row) -> None:
    import json
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = False
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"  # a line cut short by a crash: start a fresh line after it
    with open(path, "a", encoding="utf-8") as f:
        f.write(("\n" if torn else "") + json.dumps({"key": key, "run": row}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truth(table, ds, test_ids, label, labels):
    if labels is not None:
        return read_table(labels, "labels")
    return _subset(table, test_ids).select(["id", label]).rename_columns(["id", "label"])


def _plot(result: pa.Table, fit, metric: str, target, path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = result.column("size").to_numpy()
    scores = result.column("score").to_numpy()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.scatter(sizes, scores, s=18, alpha=0.6, label="one run (size x seed)")
    uniq = np.unique(sizes)
    ax.plot(uniq, [scores[sizes == s].mean() for s in uniq], "o-", color="black", label="mean over seeds")
    if fit is not None:
        grid = np.geomspace(uniq[0], uniq[-1] * 4, 100)
        ax.plot(grid, fit.predict(grid), "--", color="tab:red", label="fitted a - b n^-c")
    if target is not None:
        ax.axhline(float(target), color="grey", lw=0.8, ls=":", label=f"target {target}")
    ax.set_xscale("log")
    ax.set_xlabel("labelled training documents")
    ax.set_ylabel(metric)
    ax.set_title("Learning curve")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return str(path)
