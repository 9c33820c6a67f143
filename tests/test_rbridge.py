"""The Python half of the R conversion layer, driven the way R drives it (numpy arrays, bytearrays, dicts).

The R half is tested by r-package/tests/testthat, which runs these functions through reticulate.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings

import numpy as np
import pyarrow as pa
import pytest

from fineclass import rbridge
from fineclass.errors import FineclassError


def r_strings(values):
    """What R's character_spec() sends: writeBin() bytes (each value + NUL), n, and the NA mask."""
    filled = ["" if v is None else v for v in values]
    raw = bytearray(b"".join(v.encode("utf-8") + b"\0" for v in filled))
    mask = np.array([v is None for v in values])
    return {"kind": "character", "raw": raw, "n": len(values), "mask": mask if mask.any() else None}


def test_strings_from_r_keep_nulls_empty_and_the_text_na():
    arr = rbridge.array_from_r(r_strings(["a", None, "héllo wörld 😀", "", "NA"]))
    assert arr.type == pa.string()
    assert arr.to_pylist() == ["a", None, "héllo wörld 😀", "", "NA"]


def test_strings_in_several_pieces_and_the_pasted_form():
    a, b = r_strings(["x", None]), r_strings(["yz", "é"])
    spec = {"kind": "character", "raw": [a["raw"], b["raw"]], "n": 4, "mask": np.array([False, True, False, False])}
    assert rbridge.array_from_r(spec).to_pylist() == ["x", None, "yz", "é"]
    pasted = {
        "kind": "character",
        "chunks": ["abé", ""],
        "nbytes": np.array([1, 0, 3], dtype=np.int32),
        "mask": np.array([False, True, False]),
    }
    assert rbridge.array_from_r(pasted).to_pylist() == ["a", None, "bé"]


def test_invalid_utf8_names_the_column_argument_and_rows():
    spec = {"kind": "character", "raw": bytearray(b"ok\0caf\xe9\0\xff\0"), "n": 3, "mask": None}
    with pytest.raises(FineclassError) as e:
        rbridge.table_from_r(["txt"], [spec], 3, "data")
    assert e.value.argument == "data"
    assert "column `txt` in `data`" in str(e.value) and "rows 2, 3" in str(e.value)


def test_numbers_logicals_dates_and_times_from_r():
    na_int = np.iinfo(np.int32).min
    specs = [
        {"kind": "integer", "values": np.array([1, na_int, -5], dtype=np.int32), "mask": np.array([0, 1, 0], bool)},
        {"kind": "double", "values": np.array([1.5, np.nan, np.nan]), "mask": np.array([0, 1, 0], bool)},
        {"kind": "logical", "values": np.array([True, True, False]), "mask": np.array([0, 1, 0], bool)},
        {"kind": "Date", "values": np.array([0.0, np.nan, 18262.0]), "mask": np.array([0, 1, 0], bool)},
        {"kind": "POSIXct", "values": np.array([1.5, np.nan, 0.0]), "mask": np.array([0, 1, 0], bool), "tz": "UTC"},
    ]
    t = rbridge.table_from_r(["i", "d", "l", "date", "time"], specs, 3)
    assert t.column("i").to_pylist() == [1, None, -5]
    d = t.column("d").to_pylist()
    assert d[0] == 1.5 and d[1] is None and math.isnan(d[2])  # NaN stays a value, NA becomes null
    assert t.column("l").to_pylist() == [True, None, False]
    assert t.column("date").to_pylist() == [dt.date(1970, 1, 1), None, dt.date(2020, 1, 1)]
    assert t.schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert t.column("time").cast(pa.int64()).to_pylist() == [1_500_000, None, 0]


def test_factor_becomes_a_dictionary_with_all_levels_and_the_ordered_flag():
    spec = {
        "kind": "factor",
        "codes": np.array([2, np.iinfo(np.int32).min, 0], dtype=np.int32),
        "mask": np.array([False, True, False]),
        "levels": r_strings(["low", "mid", "high", "unused"]),
        "ordered": True,
    }
    arr = rbridge.array_from_r(spec)
    assert arr.type == pa.dictionary(pa.int32(), pa.string(), ordered=True)
    assert arr.dictionary.to_pylist() == ["low", "mid", "high", "unused"]
    assert arr.to_pylist() == ["high", None, "low"]


def test_list_and_struct_columns_from_r():
    child = r_strings(["a", "b", None, "c"])
    spec = {
        "kind": "list",
        "lengths": np.array([2, 0, 0, 2], dtype=np.int32),
        "mask": np.array([False, True, False, False]),
        "child": child,
    }
    assert rbridge.array_from_r(spec).to_pylist() == [["a", "b"], None, [], [None, "c"]]
    struct = {
        "kind": "struct",
        "names": ["x", "y"],
        "nrow": 2,
        "fields": [{"kind": "integer", "values": np.array([1, 2], np.int32), "mask": None}, r_strings(["p", None])],
    }
    assert rbridge.array_from_r(struct).to_pylist() == [{"x": 1, "y": "p"}, {"x": 2, "y": None}]


def test_a_table_from_r_round_trips_through_column_to_r():
    specs = [
        r_strings(["a", None, ""]),
        {"kind": "integer", "values": np.array([3, 0, 7], np.int32), "mask": np.array([0, 1, 0], bool)},
    ]
    t = rbridge.table_from_r(["text", "n"], specs, 3)
    out = rbridge.table_to_r(t)
    assert out[rbridge.MARK] == "table" and out["names"] == ["text", "n"] and out["nrow"] == 3
    text, n = out["columns"]
    assert text["kind"] == "character" and bytes(text["raw"]) == b"a\0\0\0" and text["n"] == 3
    assert text["mask"].tolist() == [False, True, False]
    assert n["kind"] == "integer" and n["values"].tolist() == [3, 0, 7] and n["mask"].tolist() == [False, True, False]


def test_text_to_r_handles_slices_chunks_large_strings_and_embedded_nul():
    arr = pa.array(["zero", "one", None, "thrée"]).slice(1)
    spec = rbridge.column_to_r(arr)
    assert bytes(spec["raw"]) == "one\0\0thrée\0".encode("utf-8") and spec["n"] == 3
    assert spec["mask"].tolist() == [False, True, False]
    chunked = pa.chunked_array([pa.array(["a"], pa.large_string()), pa.array(["b", None], pa.large_string())])
    spec = rbridge.column_to_r(chunked)
    assert bytes(spec["raw"]) == b"a\0b\0\0"
    with_nul = rbridge.column_to_r(pa.array(["a\0b", "c"]))
    assert "raw" not in with_nul and with_nul["values"].tolist() == ["a\0b", "c"]


def test_integers_go_back_as_int32_when_they_fit_and_as_doubles_otherwise():
    fits = rbridge.column_to_r(pa.array([1, None, 2**31 - 1], pa.int64()))
    assert fits["kind"] == "integer" and fits["values"].dtype == np.int32
    assert fits["values"].tolist() == [1, 0, 2**31 - 1] and fits["mask"].tolist() == [False, True, False]
    # -2^31 is R's NA_integer_, so it cannot travel as an R integer
    too_big = rbridge.column_to_r(pa.array([-(2**31), 3], pa.int64()))
    assert too_big["kind"] == "double" and too_big["values"].tolist() == [-(2**31), 3.0]
    assert rbridge.column_to_r(pa.array([200, None], pa.uint8()))["kind"] == "integer"


def test_dictionaries_dates_timestamps_nulls_and_nested_lists_to_r():
    a = pa.array(["x", "y", None]).dictionary_encode()
    b = pa.array(["z", "x"]).dictionary_encode()
    f = rbridge.column_to_r(pa.chunked_array([a, b]))
    levels = f["levels"]
    assert f["kind"] == "factor" and bytes(levels["raw"]).split(b"\0")[:-1] == [b"x", b"y", b"z"]
    assert f["codes"].tolist() == [0, 1, 0, 2, 0] and f["mask"].tolist() == [False, False, True, False, False]
    d = rbridge.column_to_r(pa.array([dt.date(1970, 1, 2), None], pa.date64()))
    assert d["kind"] == "Date" and d["values"].tolist() == [1.0, 0.0]
    ts = rbridge.column_to_r(pa.array([1500, None], pa.timestamp("ms", tz="Europe/Rome")))
    assert ts["kind"] == "POSIXct" and ts["values"].tolist() == [1.5, 0.0] and ts["tz"] == "Europe/Rome"
    assert rbridge.column_to_r(pa.nulls(2)) == {"kind": "null", "n": 2}
    item = pa.struct([("dimension", pa.string()), ("level", pa.string())])
    nested = pa.array([[{"dimension": "hope", "level": "high"}], None, []], pa.list_(item))
    spec = rbridge.column_to_r(nested)
    assert spec["kind"] == "list" and spec["lengths"].tolist() == [1, 0, 0]
    assert spec["mask"].tolist() == [False, True, False]
    assert spec["child"]["kind"] == "struct" and spec["child"]["names"] == ["dimension", "level"]


def test_export_walks_nested_results_and_keeps_models_as_objects():
    class Model:
        spec_ = None

        def predict(self):
            return None

    class Result:
        def to_dict(self):
            return {"metrics": pa.table({"metric": ["accuracy"], "estimate": [0.8]}), "n": np.int64(5)}

    m = Model()
    out = rbridge.export({"result": Result(), "model": m, "values": (1, "a", None), "col": pa.array([1, 2])})
    assert out["result"]["metrics"][rbridge.MARK] == "table"
    assert out["result"]["n"] == 5 and isinstance(out["result"]["n"], int)
    assert out["model"] is m
    assert out["values"] == [1, "a", None]
    assert out["col"][rbridge.MARK] == "column" and out["col"]["column"]["kind"] == "integer"


def test_call_returns_errors_as_values_with_the_argument():
    def bad(data, text="text"):
        raise FineclassError(f"column `{text}` not found in `data`.", "text")

    res = rbridge.call(bad, [None], {"text": "txt"})
    assert (res["status"], res["type"], res["argument"], res["user_error"]) == ("error", "FineclassError", "text", True)
    assert res["message"] == "column `txt` not found in `data`."
    assert "Traceback" in res["traceback"] and res["warnings"] == []
    res = rbridge.call(int, ["nope"])
    assert (res["status"], res["type"], res["user_error"]) == ("error", "ValueError", False)
    assert "invalid literal" in res["message"]


def test_call_passes_results_and_warnings_and_resolves_names():
    def noisy(x):
        warnings.warn("extrapolating far beyond the data")
        return pa.table({"x": [x]})

    res = rbridge.call(noisy, [3])
    assert res["status"] == "ok" and res["value"][rbridge.MARK] == "table"
    assert res["warnings"] == ["extrapolating far beyond the data"]
    assert isinstance(rbridge.call(noisy, [3], None, False)["value"], pa.Table)
    res = rbridge.call("no_such_function")
    assert res["status"] == "error" and "no function `no_such_function`" in res["message"]


def test_call_hands_progress_bars_and_notices_to_the_reporter(capfd):
    import sys

    def work(n):
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="training", unit="batch", file=sys.stderr)
        for _ in range(n):
            bar.update(1)
        bar.close()
        print("fineclass: trained in 0.1 s", file=sys.stderr)
        print("no newline at the end", file=sys.stderr, end="")
        return n

    events = []
    res = rbridge.call(work, [5], reporter=events.append)
    assert res["status"] == "ok" and res["value"] == 5
    bars = [e for e in events if e["event"] == "bar"]
    assert bars[0]["stage"] == "update" and bars[0]["total"] == 5 and bars[0]["desc"] == "training"
    assert bars[-1]["stage"] == "done" and bars[-1]["n"] == 5 and len({e["id"] for e in bars}) == 1
    assert [e["text"] for e in events if e["event"] == "message"] == [
        "fineclass: trained in 0.1 s",
        "no newline at the end",
    ]
    out, err = capfd.readouterr()
    assert err == "" and out == ""  # nothing reached the process's own streams
    import tqdm.auto

    assert tqdm.auto.tqdm.__module__.startswith("tqdm")  # the patch is undone
    rbridge.call(work, [2])  # without a reporter, the bar and the lines go to stderr as before
    assert "fineclass: trained in 0.1 s" in capfd.readouterr().err


def test_train_config_coerces_r_doubles_by_field_type():
    cfg = rbridge.train_config(
        {"epochs": 2.0, "batch_size": 8.0, "learning_rate": 1.0e-4, "seed": 3.0, "lora_targets": "query"}
    )
    assert cfg.epochs == 2 and isinstance(cfg.epochs, int)
    assert isinstance(cfg.seed, int) and cfg.learning_rate == 1e-4
    assert cfg.lora_targets == ["query"]
    with pytest.raises(FineclassError) as e:
        rbridge.train_config({"epoch": 1})
    assert e.value.argument == "config" and "'epoch'" in str(e.value)
    assert rbridge.train_config(None) is None


def test_describe_a_fitted_classifier(tiny_classifier):
    info = rbridge.describe(tiny_classifier)
    assert info["class"] == "Classifier"
    assert info["spec"]["kind"] == "single" and info["classes"] == [0, 1]
    assert isinstance(info["model"], str) and info["method"] == "head"
    assert info["config"]["epochs"] == 1
    assert info["history"][rbridge.MARK] == "table"
    assert info["manifest"]["n_train"] > 0


def test_train_keeps_the_order_of_an_r_factor(reviews_small, tiny_bert):
    tbl = reviews_small.head(40).to_arrow()
    label = pa.array(["pos" if i % 2 else "neg" for i in range(tbl.num_rows)])
    levels = pa.array(["pos", "unused", "neg"])
    indices = pa.array([0 if v == "pos" else 2 for v in label.to_pylist()], pa.int32())
    data = pa.table({"text": tbl.column("text"), "label": pa.DictionaryArray.from_arrays(indices, levels)})
    clf = rbridge.train(
        data, label="label", model=tiny_bert, config={"epochs": 1, "max_length": 16, "validation": 0}, progress=False
    )
    assert clf.spec_.classes == ["pos", "neg"]  # the factor's order, unused level dropped; sorted would be neg, pos


def test_train_takes_the_levels_of_an_ordered_level_column():
    levels = rbridge._ordered_levels(
        pa.table(
            {
                "level": pa.DictionaryArray.from_arrays(
                    pa.array([0, 1], pa.int32()), pa.array(["weak", "strong", "extreme"]), ordered=True
                )
            }
        ),
        "level",
    )
    assert levels == ["weak", "strong", "extreme"]
    plain = pa.table({"level": pa.array(["b", "a"]).dictionary_encode()})
    assert rbridge._ordered_levels(plain, "level") is None


def test_evaluate_adds_krippendorffs_alpha_beside_kappa():
    from fineclass.evaluation import agreement

    pred = pa.table({"id": [1, 2, 3, 4, 5, 6], "label": ["a", "b", "a", "a", "b", "b"]})
    truth = pa.table({"id": [1, 2, 3, 4, 5, 6], "label": ["a", "b", "b", "a", "b", "a"]})
    ev = rbridge.evaluate(pred, truth, bootstrap=0)
    names = ev.metrics.column("metric").to_pylist()
    assert names[names.index("kappa") + 1] == "krippendorff_alpha"
    alpha = ev.get("krippendorff_alpha")
    wide = pa.table({"id": [1, 2, 3, 4, 5, 6], "truth": truth.column("label"), "model": pred.column("label")})
    ref = [
        r["estimate"]
        for r in agreement(wide, unit="id", coder=["truth", "model"]).to_pylist()
        if r["statistic"].startswith("krippendorff")
    ][0]
    assert alpha == pytest.approx(ref) and -1 < alpha < 1
