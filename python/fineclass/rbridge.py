"""The Python half of the R package's conversion layer.

R cannot hand its vectors to Python without losing missing values (reticulate turns a character NA into
the string "NA", a logical NA into True and an integer NA into -2**31), so the R package never lets
reticulate convert a data frame. It sends each column as plain values plus an ``is.na`` mask, and this
module builds Arrow arrays from them; results travel back the same way: values with nulls filled in, plus
a null mask, which R turns back into NA.

Column specs (R -> Python), one dict per column, ``kind`` first:

- ``character``: ``raw`` (R's ``writeBin()`` of the values: UTF-8 bytes, each value followed by a NUL;
  a bytearray or a list of them), ``n``, ``mask``; or, where R's locale is not UTF-8, ``chunks`` (str,
  the values pasted together) and ``nbytes`` (bytes per value);
- ``integer`` (int32), ``double`` (float64, NaN kept apart from NA), ``logical`` (bool): ``values``, ``mask``;
- ``factor``: ``codes`` (0-based int32), ``mask``, ``levels`` (a character spec), ``ordered``;
- ``Date``: ``values`` (float64 days since 1970-01-01), ``mask``;
- ``POSIXct``: ``values`` (float64 seconds), ``mask``, ``tz``;
- ``list``: ``lengths`` (int32), ``mask`` (NULL elements), ``child`` (a spec of the concatenated values);
- ``struct``: ``names``, ``fields`` (specs), ``nrow``.

Python -> R uses the same kinds (see :func:`column_to_r`; text goes back NUL-separated for R's
``readBin()``); whole results go through :func:`export`, which
replaces every table inside a nested result by a marked dict that the R side rebuilds.

Nothing here models anything: it converts, and :func:`call` turns exceptions into values so that R can
raise them as R errors with the Python message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import traceback
import typing
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import FineclassError

TABLE = "table"
COLUMN = "column"
MARK = "__fineclass__"
_INT32_MIN = -(2**31)  # R's NA_integer_: not a valid R integer value
_INT32_MAX = 2**31 - 1


# --------------------------------------------------------------------------------------------- R -> Arrow
def _mask(spec: dict, n: int) -> np.ndarray | None:
    m = spec.get("mask")
    if m is None:
        return None
    m = np.asarray(m, dtype=bool).reshape(-1)
    if len(m) != n:
        raise ValueError(f"mask of length {len(m)} for {n} values")
    return m if m.any() else None


def _validity(mask: np.ndarray | None) -> pa.Buffer | None:
    if mask is None:
        return None
    return pa.py_buffer(np.packbits(~mask, bitorder="little"))


def _strings(spec: dict, name: str = "", argument: str = "data") -> pa.Array:
    mask = None
    if spec.get("raw") is not None:
        # R's writeBin(): every string followed by a NUL byte (R strings never hold one)
        chunks = spec["raw"]
        if not isinstance(chunks, (list, tuple)):
            chunks = [chunks]
        raw = (
            np.frombuffer(b"".join(bytes(c) for c in chunks), dtype=np.uint8)
            if len(chunks) != 1
            else np.frombuffer(chunks[0], dtype=np.uint8)
        )
        n = int(spec["n"])
        ends = np.flatnonzero(raw == 0)
        if len(ends) != n:
            raise ValueError(f"{len(ends)} strings received for {n} announced")
        data = raw[raw != 0]
        large = len(data) > _INT32_MAX
        offsets = np.zeros(n + 1, dtype=np.int64 if large else np.int32)
        offsets[1:] = ends - np.arange(n)
    else:
        # pasted text plus byte lengths (used where R's locale is not UTF-8)
        nbytes = np.asarray(spec["nbytes"], dtype=np.int64).reshape(-1)
        n = len(nbytes)
        chunks = spec.get("chunks") or []
        if isinstance(chunks, str):
            chunks = [chunks]
        data = np.frombuffer(b"".join(c.encode("utf-8") for c in chunks), dtype=np.uint8)
        if int(nbytes.sum()) != len(data):
            raise ValueError(f"text of {len(data)} bytes for {int(nbytes.sum())} announced")
        large = len(data) > _INT32_MAX
        offsets = np.zeros(n + 1, dtype=np.int64 if large else np.int32)
        np.cumsum(nbytes, out=offsets[1:])
    mask = _mask(spec, n)
    typ = pa.large_string() if large else pa.string()
    arr = pa.Array.from_buffers(
        typ,
        n,
        [_validity(mask), pa.py_buffer(offsets), pa.py_buffer(data)],
        null_count=int(mask.sum()) if mask is not None else 0,
    )
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        bad = [i + 1 for i in range(n) if not _utf8(data[offsets[i] : offsets[i + 1]])]
        shown = ", ".join(str(i) for i in bad[:10]) + (f" (and {len(bad) - 10} more)" if len(bad) > 10 else "")
        raise FineclassError(
            f"column `{name}` in `{argument}` holds text that is not valid UTF-8 (rows {shown}). Convert it "
            f'first, e.g. with iconv(x, from = "latin1", to = "UTF-8").',
            argument,
        ) from None
    return arr


def _utf8(b: np.ndarray) -> bool:
    try:
        b.tobytes().decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def array_from_r(spec: dict, name: str = "", argument: str = "data") -> pa.Array:
    """One Arrow array from one R column spec (see the module docstring)."""
    kind = spec["kind"]
    if kind == "character":
        return _strings(spec, name, argument)
    if kind in ("integer", "double", "logical", "Date", "POSIXct"):
        dtype = {
            "integer": np.int32,
            "double": np.float64,
            "logical": np.bool_,
            "Date": np.float64,
            "POSIXct": np.float64,
        }[kind]
        values = np.asarray(spec["values"], dtype=dtype).reshape(-1)
        mask = _mask(spec, len(values))
        if kind == "Date":
            days = np.floor(np.where(mask, 0, values) if mask is not None else values)
            return pa.array(days.astype(np.int32), type=pa.date32(), mask=mask)
        if kind == "POSIXct":
            clean = np.where(mask, 0, values) if mask is not None else values
            micros = np.round(clean * 1e6).astype(np.int64)
            tz = spec.get("tz") or None
            return pa.array(micros, type=pa.timestamp("us", tz=tz), mask=mask)
        return pa.array(values, mask=mask)
    if kind == "factor":
        codes = np.asarray(spec["codes"], dtype=np.int32).reshape(-1)
        mask = _mask(spec, len(codes))
        if mask is not None:
            codes = np.where(mask, 0, codes).astype(np.int32)
        indices = pa.array(codes, type=pa.int32(), mask=mask)
        levels = array_from_r(spec["levels"], name, argument)
        return pa.DictionaryArray.from_arrays(indices, levels, ordered=bool(spec.get("ordered", False)))
    if kind == "list":
        lengths = np.asarray(spec["lengths"], dtype=np.int64).reshape(-1)
        child = array_from_r(spec["child"], name, argument)
        large = int(lengths.sum()) > _INT32_MAX
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64 if large else np.int32)
        np.cumsum(lengths, out=offsets[1:])
        mask = _mask(spec, len(lengths))
        cls = pa.LargeListArray if large else pa.ListArray
        return cls.from_arrays(pa.array(offsets), child, mask=pa.array(mask) if mask is not None else None)
    if kind == "struct":
        names = _names(spec["names"])
        fields = [array_from_r(f, f"{name}${n}", argument) for f, n in zip(_as_list(spec["fields"]), names)]
        if not fields:
            return pa.array([{}] * int(spec.get("nrow", 0)), type=pa.struct([]))
        return pa.StructArray.from_arrays(fields, names=names)
    if kind == "null":
        return pa.nulls(int(spec["n"]))
    raise ValueError(f"unknown column kind {kind!r}")


def _names(names: Any) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        return [names]
    return [str(n) for n in names]


def _as_list(x: Any) -> list:
    return [x] if isinstance(x, dict) else list(x or [])


def table_from_r(names: Any, columns: Sequence[dict], nrow: int, argument: str = "data") -> pa.Table:
    """A pyarrow Table from the column specs the R package builds (``fineclass:::r_to_arrow``)."""
    names = _names(names)
    arrays = [array_from_r(c, n, argument) for c, n in zip(_as_list(columns), names)]
    if not arrays:
        return pa.table({})
    return pa.Table.from_arrays(arrays, names=names)


# --------------------------------------------------------------------------------------------- Arrow -> R
def _null_mask(arr: pa.Array) -> np.ndarray | None:
    if arr.null_count == 0:
        return None
    return np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _ints_fit(arr: pa.Array) -> bool:
    if len(arr) == arr.null_count:
        return True
    mm = pc.min_max(arr)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    return lo > _INT32_MIN and hi <= _INT32_MAX


def column_to_r(arr: pa.Array | pa.ChunkedArray) -> dict:
    """One column for R: values with nulls filled in, a null mask (or None), and what R needs to rebuild it.

    Kinds: character, integer, double, logical, factor, Date, POSIXct, list, struct, null. 64-bit integers
    come back as R integers when every value fits, as doubles otherwise (R has no 64-bit integer).
    """
    if isinstance(arr, pa.ChunkedArray):
        if pa.types.is_dictionary(arr.type) and arr.num_chunks > 1:
            arr = pa.table({"x": arr}).unify_dictionaries().column(0)
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    t = arr.type
    n = len(arr)
    mask = _null_mask(arr)
    if pa.types.is_null(t):
        return {"kind": "null", "n": n}
    if _is_text(t):
        return _strings_to_r(arr, mask)
    if pa.types.is_boolean(t):
        filled = pc.fill_null(arr, False) if mask is not None else arr
        return {
            "kind": "logical",
            "values": np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool),
            "mask": mask,
        }
    if pa.types.is_integer(t):
        small = t in (pa.int8(), pa.int16(), pa.uint8(), pa.uint16())
        if small or _ints_fit(arr):
            filled = pc.fill_null(arr, 0) if mask is not None else arr
            return {"kind": "integer", "values": filled.cast(pa.int32()).to_numpy(zero_copy_only=False), "mask": mask}
        t = pa.float64()
        arr = arr.cast(t)
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        filled = pc.fill_null(arr, 0) if mask is not None else arr
        return {"kind": "double", "values": filled.cast(pa.float64()).to_numpy(zero_copy_only=False), "mask": mask}
    if pa.types.is_date(t):
        days = arr.cast(pa.date32()) if pa.types.is_date64(t) else arr
        days = pc.fill_null(days, 0) if mask is not None else days
        return {
            "kind": "Date",
            "values": days.cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.float64),
            "mask": mask,
        }
    if pa.types.is_timestamp(t):
        us = arr.cast(pa.timestamp("us", tz=t.tz))
        us = pc.fill_null(us, 0) if mask is not None else us
        secs = us.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
        return {"kind": "POSIXct", "values": secs, "mask": mask, "tz": t.tz or ""}
    if pa.types.is_dictionary(t):
        indices = arr.indices
        indices = pc.fill_null(indices, 0) if mask is not None else indices
        levels = arr.dictionary
        if not (pa.types.is_string(levels.type) or pa.types.is_large_string(levels.type)):
            levels = pc.cast(levels, pa.string())
        return {
            "kind": "factor",
            "codes": indices.cast(pa.int32()).to_numpy(zero_copy_only=False),
            "mask": mask,
            "levels": column_to_r(levels),
            "ordered": bool(t.ordered),
        }
    if pa.types.is_map(t):
        arr = pa.ListArray.from_arrays(
            arr.offsets, pa.StructArray.from_arrays([arr.keys, arr.items], names=["key", "value"]), mask=arr.is_null()
        )
        t = arr.type
    if pa.types.is_fixed_size_list(t):
        arr = arr.cast(pa.list_(t.value_type))
        t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = pc.fill_null(pc.list_value_length(arr), 0).cast(pa.int32()).to_numpy(zero_copy_only=False)
        return {"kind": "list", "lengths": lengths, "mask": mask, "child": column_to_r(arr.flatten())}
    if pa.types.is_struct(t):
        names = [t.field(i).name for i in range(t.num_fields)]
        fields = [column_to_r(_struct_field(arr, i)) for i in range(t.num_fields)]
        return {"kind": "struct", "names": names, "fields": fields, "nrow": n}
    if pa.types.is_time(t) or pa.types.is_duration(t):
        return column_to_r(arr.cast(pa.int64()).cast(pa.float64()))
    try:
        return column_to_r(pc.cast(arr, pa.string()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # binary that is not UTF-8, and the like
        return column_to_r(pa.array([None if v is None else repr(v) for v in arr.to_pylist()], pa.string()))


def _is_text(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or (hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t))
    )


def _strings_to_r(arr: pa.Array, mask: np.ndarray | None) -> dict:
    """Text for R's readBin(): the UTF-8 bytes of each value followed by a NUL, in one bytearray.

    Building a million Python str objects for reticulate to convert costs more than the copy; a value
    that itself holds a NUL (possible in Arrow, impossible in R) makes the whole column go as objects.
    """
    n = len(arr)
    filled = pc.fill_null(arr, "") if mask is not None else arr
    if not (pa.types.is_string(filled.type) or pa.types.is_large_string(filled.type)):
        filled = filled.cast(pa.large_string())
    width = np.int64 if pa.types.is_large_string(filled.type) else np.int32
    offsets = np.frombuffer(filled.buffers()[1], dtype=width)[filled.offset : filled.offset + n + 1]
    data = (
        np.frombuffer(filled.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        if n and filled.buffers()[2] is not None
        else np.zeros(0, dtype=np.uint8)
    )
    if data.size and not data.all():
        values = filled.to_numpy(zero_copy_only=False)
        return {"kind": "character", "values": values, "mask": mask}
    starts = (offsets[:-1] - offsets[0]).astype(np.int64)
    out = np.zeros(len(data) + n, dtype=np.uint8)
    keep = np.ones(len(out), dtype=bool)
    keep[starts + np.diff(offsets) + np.arange(n)] = False
    out[keep] = data
    return {"kind": "character", "raw": bytearray(out), "n": n, "mask": mask}


def _struct_field(arr: pa.StructArray, i: int) -> pa.Array:
    # flatten() applies the struct's own nulls to its children, so a null struct reads as nulls
    return arr.flatten()[i] if arr.null_count else arr.field(i)


def table_to_r(table: pa.Table | pa.RecordBatch) -> dict:
    """A marked dict the R package turns into a tibble (or a data.frame): names, nrow and column specs."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    return {
        MARK: TABLE,
        "names": list(table.column_names),
        "nrow": table.num_rows,
        "columns": [column_to_r(table.column(i)) for i in range(table.num_columns)],
    }


def _as_arrow(obj: Any) -> pa.Table | None:
    if isinstance(obj, (pa.Table, pa.RecordBatch)):
        return obj if isinstance(obj, pa.Table) else pa.Table.from_batches([obj])
    mod = type(obj).__module__ or ""
    name = type(obj).__name__
    if mod.startswith("pandas") and name == "DataFrame":
        return pa.Table.from_pandas(obj, preserve_index=False)
    if mod.startswith("polars") and name == "DataFrame":
        return obj.to_arrow()
    return None


def _is_model(obj: Any) -> bool:
    return hasattr(obj, "predict") and (hasattr(obj, "spec_") or hasattr(obj, "save"))


def export(obj: Any, _depth: int = 0) -> Any:
    """A result made ready for R: tables become marked dicts; objects with ``to_dict()`` become lists.

    A fitted classifier (anything with ``predict`` and ``spec_``) and other objects R cannot use as data
    pass through unchanged, so R keeps a reference to them.
    """
    if _depth > 50:
        return obj
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    table = _as_arrow(obj)
    if table is not None:
        return table_to_r(table)
    if isinstance(obj, (pa.Array, pa.ChunkedArray)):
        return {MARK: COLUMN, "column": column_to_r(obj)}
    if isinstance(obj, pa.Scalar):
        return export(obj.as_py(), _depth + 1)
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return [export(v, _depth + 1) for v in obj.tolist()]
        return obj
    if isinstance(obj, dict):
        return {str(k): export(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [export(v, _depth + 1) for v in obj]
    if _is_model(obj):
        return obj
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return export(obj.to_dict(), _depth + 1)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return export(dataclasses.asdict(obj), _depth + 1)
    return obj


# --------------------------------------------------------------------------------------------- calls
def call(
    fn: Any, args: Sequence[Any] | None = None, kwargs: dict | None = None, convert: bool = True, reporter: Any = None
) -> dict:
    """Call ``fn`` (a callable, or the name of a function of the ``fineclass`` module) for R.

    Nothing is raised, so R can turn a FineclassError into an R error that carries its message and the
    argument it names, without a page of traceback. The answer is a dict that R reads by name:

    - ``{"status": "ok", "value": ..., "warnings": [...]}``; ``value`` passes through :func:`export` when
      ``convert`` is true;
    - ``{"status": "error", "type": ..., "message": ..., "argument": ..., "traceback": ..., "warnings": [...],
      "user_error": bool}`` (``user_error``: the core's own FineclassError, whose message is for the user).

    ``reporter``: a callable (an R function, through reticulate) that receives the core's progress bars and
    notices while ``fn`` runs, instead of the process's stderr: ``{"event": "bar", "id", "stage" ("update" or
    "done"), "n", "total", "desc", "unit"}`` and ``{"event": "message", "text"}``. ``None`` leaves them as they
    are.

    Example:
        >>> call("no_such_function")["status"]
        'error'
    """
    caught: list = []
    try:
        if isinstance(fn, str):
            import fineclass

            if not hasattr(fineclass, fn):
                raise FineclassError(
                    f"this fineclass core ({getattr(fineclass, '__version__', '?')}) has no "
                    f"function `{fn}`; update the Python package (ft_install()).",
                    None,
                )
            fn = getattr(fineclass, fn)
        with warnings.catch_warnings(record=True) as caught, _reporting(reporter):
            warnings.simplefilter("always")
            value = fn(*(args or []), **(kwargs or {}))
            if convert:
                value = export(value)
        return {"status": "ok", "value": value, "warnings": _warning_texts(caught)}
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # every failure goes back to R as a value
        argument = getattr(e, "argument", None)
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        message = str(e) if str(e) else type(e).__name__
        if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
            message = f"{message or 'out of memory'}. Use a smaller batch size (batch_size = ...) or a smaller model."
        return {
            "status": "error",
            "type": type(e).__name__,
            "message": message,
            "argument": argument,
            "traceback": tb,
            "warnings": _warning_texts(caught),
            "user_error": isinstance(e, FineclassError),
        }


class _Lines:
    """A text stream that hands each complete line to the reporter (the core's notices on stderr)."""

    def __init__(self, send):
        self._send, self._buffer = send, ""

    def write(self, s: str) -> int:
        self._buffer += str(s)
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            line = line.rstrip("\r")
            if line.strip():
                self._send({"event": "message", "text": line})
        return len(s)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._buffer.strip():
            self._send({"event": "message", "text": self._buffer.rstrip()})
        self._buffer = ""

    def isatty(self) -> bool:
        return False


class _Discard:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


def _reporter_bar(send, made: list):
    """A tqdm class whose bars go to ``send`` as events instead of drawing on a terminal; ``made`` collects
    them, so that bars left open are silenced when the call ends (R's side of them ends with it)."""
    from tqdm.std import tqdm as base

    class Bar(base):
        monitor_interval = 0  # no monitor thread: R may only be called from the main thread

        def __init__(self, *args, **kwargs):
            kwargs["file"] = _Discard()
            kwargs.setdefault("mininterval", 0.5)
            self._fc_sent_done = False
            made.append(self)
            super().__init__(*args, **kwargs)

        def display(self, msg=None, pos=None):
            if not self._fc_sent_done:
                send(
                    {
                        "event": "bar",
                        "id": id(self),
                        "stage": "update",
                        "n": int(self.n),
                        "total": None if self.total is None else int(self.total),
                        "desc": self.desc or "",
                        "unit": self.unit or "",
                    }
                )
            return True

        def close(self):
            if self.disable or self._fc_sent_done:
                return super().close()
            self.display()
            self._fc_sent_done = True
            try:
                super().close()
            finally:
                send(
                    {
                        "event": "bar",
                        "id": id(self),
                        "stage": "done",
                        "n": int(self.n),
                        "total": None if self.total is None else int(self.total),
                        "desc": self.desc or "",
                        "unit": self.unit or "",
                    }
                )

    return Bar


@contextlib.contextmanager
def _reporting(reporter: Any):
    """While the core runs: its tqdm bars and its stderr lines go to ``reporter`` (nothing changes without one)."""
    if reporter is None:
        yield
        return
    import tqdm
    import tqdm.auto

    def send(event: dict) -> None:
        reporter(event)

    made: list = []
    bar = _reporter_bar(send, made)
    saved = [(tqdm.auto, tqdm.auto.tqdm), (tqdm, tqdm.tqdm)]
    lines = _Lines(send)
    stderr = sys.stderr
    for module, _ in saved:
        module.tqdm = bar
    sys.stderr = lines
    try:
        yield
    finally:
        sys.stderr = stderr
        for module, original in saved:
            module.tqdm = original
        for b in made:  # a bar never closed must not call R after the call (e.g. from tqdm.__del__)
            b._fc_sent_done = True
        lines.close()


def _warning_texts(caught: list) -> list[str]:
    out, seen = [], set()
    for w in caught or []:
        text = str(w.message)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def to_pylist(x: Any) -> list:
    """An R vector (a scalar when of length one) as a Python list."""
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    if isinstance(x, np.ndarray):
        return x.reshape(-1).tolist()
    return [x]


# --------------------------------------------------------------------------------------------- config
def _coerce(value: Any, hint: Any) -> Any:
    """R numbers are doubles: 3.0 becomes 3 where the field wants an int (and ints become floats)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (sys.version_info >= (3, 10) and type(hint).__name__ == "UnionType"):
        if value is None:
            return None
        allowed = [a for a in args if a is not type(None)]
        if float in allowed and isinstance(value, float):
            return value
        for a in allowed:
            coerced = _coerce(value, a)
            if coerced is not value or isinstance(value, a if isinstance(a, type) else object):
                return coerced
        return value
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        inner = args[0] if args else Any
        items = value if isinstance(value, (list, tuple)) else [value]
        coerced = [_coerce(v, inner) for v in items]
        return tuple(coerced) if origin is tuple or hint is tuple else coerced
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.reshape(-1).tolist()
    return value


def coerce_fields(cls: Any, values: dict) -> dict:
    """Values of a dict from R, converted to the types the dataclass ``cls`` declares."""
    if not dataclasses.is_dataclass(cls):
        return dict(values)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: leave the values as they are
        hints = {}
    return {k: _coerce(v, hints.get(k, Any)) for k, v in values.items()}


def train_config(values: dict | None):
    """A ``TrainConfig`` from an R named list (numbers coerced by the field types); None passes through."""
    if values is None:
        return None
    import fineclass

    cls = fineclass.TrainConfig
    if not isinstance(values, dict):
        return values
    known = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else None
    if known is not None:
        unknown = sorted(set(values) - known)
        if unknown:
            raise FineclassError(
                f"`config` has no setting {', '.join(repr(u) for u in unknown)}; settings are: "
                f"{', '.join(sorted(known))}.",
                "config",
            )
    values = coerce_fields(cls, values)
    if hasattr(cls, "from_dict"):
        return cls.from_dict(values)
    return cls(**values)


# --------------------------------------------------------------------------------------------- models
_DESCRIBE = ("model", "method", "config", "manifest_", "history_", "metrics_", "thresholds_")


def describe(clf: Any) -> dict:
    """What R's print() and summary() show about a fitted classifier: its label spec and whatever of
    the usual fitted attributes it has (model, method, config, manifest, history, metrics)."""
    out: dict = {"class": type(clf).__name__}
    spec = getattr(clf, "spec_", None)
    if spec is not None:
        out["spec"] = export(spec.to_dict() if hasattr(spec, "to_dict") else spec)
    classes = getattr(clf, "classes_", None)
    if classes is not None:
        out["classes"] = export(list(classes))
    for name in _DESCRIBE:
        try:
            value = getattr(clf, name, None)
        except Exception:  # a property that cannot be computed is simply not shown
            value = None
        if value is None or callable(value):
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            try:  # e.g. the training history: one dict per epoch -> a table
                value = pa.Table.from_pylist(value)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                pass
        value = export(value)
        if isinstance(value, (str, int, float, bool, dict, list)):  # plain data and tables, not live objects
            out[name.rstrip("_")] = value
    return out


# --------------------------------------------------------------------------------------------- R's factors
def _used_levels(column: pa.ChunkedArray) -> list[str]:
    """The levels of a dictionary column that occur in it, in the dictionary's order (R's level order)."""
    column = pa.table({"x": column}).unify_dictionaries().column(0)
    chunks = [c for c in column.chunks if len(c)]
    if not chunks:
        return []
    dictionary = chunks[0].dictionary.to_pylist()
    used = set()
    for c in chunks:
        used.update(pc.unique(c.indices.drop_null()).to_pylist())
    return [str(dictionary[i]) for i in sorted(used)]


def _ordered_levels(table: Any, column: str) -> list[str] | None:
    """All levels of an ordered dictionary column (an R ordered factor), or None."""
    if not isinstance(table, pa.Table) or column not in table.column_names:
        return None
    t = table.schema.field(column).type
    if not (pa.types.is_dictionary(t) and t.ordered):
        return None
    col = table.column(column)
    if not col.num_chunks:
        return None
    return [str(v) for v in pa.table({"x": col}).unify_dictionaries().column(0).chunk(0).dictionary.to_pylist()]


def train(data: Any, **kwargs: Any):
    """``fineclass.train`` as R calls it: R's factors set the order of classes and levels.

    - A single-label ``label`` column that is a factor (an Arrow dictionary) gives the classes in the factor's
      level order (the levels that occur), instead of sorted: predictions come back as factors with the
      training factor's levels.
    - With a long ``labels`` table and ``label = (dimension, level)``, an ordered factor as the level column
      gives the order of ``levels`` (all its levels, lowest first).

    Everything else is ``fineclass.train(data, **kwargs)``.

    Example:
        >>> tbl = pa.table({"text": ["a", "b"], "label": pa.array(["pos", "neg"]).dictionary_encode()})
        >>> # train(tbl, label="label", model="minilm") learns classes in the order pos, neg
    """
    import fineclass

    from .labels import LabelSpec, read_codebook

    label = kwargs.get("label", "label")
    labels = kwargs.get("labels")
    if (
        kwargs.get("spec") is None
        and labels is None
        and isinstance(label, str)
        and isinstance(data, pa.Table)
        and label in data.column_names
        and pa.types.is_dictionary(data.schema.field(label).type)
        and kwargs.get("kind") in (None, "single")
    ):
        order = _used_levels(data.column(label))
        if len(order) >= 2:
            inferred = LabelSpec.infer(order, kind="single", codebook=read_codebook(kwargs.get("codebook")))
            classes = order + [c for c in inferred.classes if c not in order]
            kwargs["spec"] = dataclasses.replace(inferred, classes=classes)
    if kwargs.get("levels") is None and isinstance(label, (list, tuple)) and len(label) == 2:
        levels = _ordered_levels(labels, label[1])
        if levels is not None:
            kwargs["levels"] = levels
    return fineclass.train(data, **kwargs)


def evaluate(predictions: Any, truth: Any, **kwargs: Any):
    """``fineclass.evaluate`` for R, with Krippendorff's alpha beside Cohen's kappa for single-label tasks.

    The alpha (nominal, model and truth as two coders, computed by ``fineclass.evaluation.agreement``) is one
    more row of ``metrics``, ``krippendorff_alpha``, without an interval.

    Example:
        >>> ev = evaluate(pa.table({"id": [1, 2, 3], "label": ["a", "b", "a"]}),
        ...               pa.table({"id": [1, 2, 3], "label": ["a", "b", "b"]}), bootstrap=0)
        >>> "krippendorff_alpha" in ev.metrics.column("metric").to_pylist()
        True
    """
    import fineclass

    from .evaluation import agreement

    ev = fineclass.evaluate(predictions, truth, **kwargs)
    names = ev.metrics.column("metric").to_pylist()
    if ev.kind == "single" and ev.per_document is not None and "kappa" in names:
        docs = ev.per_document.select(["id", "truth", "predicted"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an undefined alpha is reported as null, as kappa is
            stats = agreement(docs, unit="id", coder=["truth", "predicted"], level="nominal")
        row = [r for r in stats.to_pylist() if r["statistic"].startswith("krippendorff_alpha")][0]
        alpha = pa.table(
            {
                "metric": ["krippendorff_alpha"],
                "estimate": pa.array([row["estimate"]], pa.float64()),
                "lower": pa.array([None], pa.float64()),
                "upper": pa.array([None], pa.float64()),
                "n": pa.array([ev.metrics.column("n")[0].as_py()], pa.int64()),
            }
        )
        at = names.index("kappa") + 1
        ev.metrics = pa.concat_tables([ev.metrics.slice(0, at), alpha.cast(ev.metrics.schema), ev.metrics.slice(at)])
    return ev


def version() -> str:
    """The core's version, as R compares it with the R package's."""
    import fineclass

    return str(fineclass.__version__)
