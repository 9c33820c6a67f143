"""Markdown tables of the accuracy results (bench/results/accuracy/*.json) for BENCHMARKS.md.

python bench/accuracy/tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "accuracy"


def ci(v) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" if v else "-"


def flourishing_rows() -> list:
    rows = []
    for p in sorted(RESULTS.glob("flourishing-*.json")):
        d = json.loads(p.read_text())
        if "rows" in d:
            rows += [(p.name, r) for r in d["rows"]]
        elif "test" in d:  # finetune.py
            rows.append(
                (
                    p.name,
                    {"candidate": d["candidate"] + " | thresholds per dimension", **d["test"], "cost": d["train_cost"]},
                )
            )
            rows.append(
                (p.name, {"candidate": d["candidate"] + " | zero-shot start (no step)", **d["zero_shot_start"]})
            )
            if d.get("finetuned_features_lr"):
                rows.append((p.name, d["finetuned_features_lr"]))
    return rows


def main():
    print("| candidate | Jaccard | presence micro-F1 | presence macro-F1 | accD | file |")
    print("|---|---|---|---|---|---|")
    for name, r in flourishing_rows():
        print(
            f"| {r['candidate']} | {ci(r.get('jaccard'))} | {ci(r.get('presence_micro_f1'))} | "
            f"{ci(r.get('presence_macro_f1'))} | {ci(r.get('accD'))} | {name} |"
        )
    rows = [(p.name, r) for p in sorted(RESULTS.glob("reviews*.json")) for r in json.loads(p.read_text())["rows"]]
    if rows:
        print()
        print(
            "| training reviews | method | accuracy | macro-F1 | seconds (load at start) | predict s (500) "
            "| peak RSS MB | file |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, r in sorted(rows, key=lambda x: (x[1]["n_train"], x[1]["method"])):
            print(
                f"| {r['n_train']} | {r['method']} | {ci(r['accuracy'])} | {ci(r['macro_f1'])} | {r['seconds']} "
                f"({r['load_start'].split(',')[0]}) | {r.get('predict_seconds')} | {r['peak_rss_mb']:.0f} | {name} |"
            )


if __name__ == "__main__":
    main()
