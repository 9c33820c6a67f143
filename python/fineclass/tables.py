"""Data in: anything tabular becomes one pyarrow.Table, with checked ``id`` and ``text`` columns.

Accepted: pyarrow Table / RecordBatch / RecordBatchReader / Dataset, polars DataFrame / LazyFrame, pandas
DataFrame, a dict of lists, a list of texts, anything with ``__arrow_c_stream__``, and paths: a Parquet file, a
CSV file, a glob, or a folder of Parquet files.
"""

from __future__ import annotations

import glob as _glob
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .errors import FineclassError, preview

ID = "id"


def is_path(data: Any) -> bool:
    """Whether ``data`` names files (a str or a Path) rather than holding a table.

    Args:
        data: any input.

    Returns:
        True for a str or a ``pathlib.Path``.
    """
    return isinstance(data, (str, Path))


def resolve_files(path: str | Path, argument: str = "data") -> list[str]:
    """Files behind a path, a glob or a folder, sorted so that every run reads them in one order.

    Args:
        path: a file, a glob (``data/*.parquet``) or a folder (its .parquet, .pq and .csv files, recursively).
        argument: the argument's name, for errors.

    Returns:
        The file paths, sorted.

    Raises:
        FineclassError: naming ``argument`` when the path does not exist or matches no file.
    """
    s = str(path)
    if any(ch in s for ch in "*?["):
        files = sorted(f for f in _glob.glob(s, recursive=True) if Path(f).is_file())
        if not files:
            raise FineclassError(f"the pattern {s!r} in `{argument}` matches no file.", argument)
        return files
    p = Path(s)
    if not p.exists():
        raise FineclassError(
            f"`{argument}`: the path {s!r} does not exist. Check the spelling, or pass a table.", argument
        )
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix in (".parquet", ".pq", ".csv", ".tsv"))
        if not files:
            raise FineclassError(f"the folder {s!r} in `{argument}` holds no .parquet, .csv or .tsv file.", argument)
        return files
    return [str(p)]


def file_format(files: list[str], argument: str) -> str:
    """The format of a set of input files.

    Args:
        files: the files.
        argument: the argument's name, for errors.

    Returns:
        ``"csv"`` or ``"parquet"``.

    Raises:
        FineclassError: naming ``argument`` when the files mix both.
    """
    kinds = {("csv" if f.lower().endswith(TEXT_SUFFIXES) else "parquet") for f in files}
    if len(kinds) > 1:
        raise FineclassError(f"`{argument}` mixes CSV and Parquet files; pass one kind.", argument)
    return kinds.pop()


TEXT_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")


def csv_format(files: list[str], argument: str, column_types: dict | None = None) -> ds.CsvFileFormat:
    """How to parse a set of delimited text files: ``.tsv`` files by tabs, the others by commas.

    Args:
        files: the files (all CSV or all TSV).
        argument: the argument's name, for errors.
        column_types: Arrow types for some columns (others are inferred).

    Returns:
        A ``pyarrow.dataset.CsvFileFormat``.

    Raises:
        FineclassError: naming ``argument`` when the files mix CSV and TSV.
    """
    import pyarrow.csv as pcsv

    tabs = {f.lower().endswith((".tsv", ".tsv.gz")) for f in files}
    if len(tabs) > 1:
        raise FineclassError(f"`{argument}` mixes .csv and .tsv files; pass one kind.", argument)
    return ds.CsvFileFormat(
        parse_options=pcsv.ParseOptions(delimiter="\t" if tabs.pop() else ",", newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types=column_types or {}),
    )


def check_id_types(schemas: Sequence[pa.Schema], files: Sequence[str], id: str | None, argument: str) -> None:
    """The files of one input must agree on their id column: all have it with one type, or none has it.

    Args:
        schemas: each file's schema.
        files: the files, in the same order.
        id: the id column asked for, or None (a column named ``id`` is used when the files have one).
        argument: the argument's name, for errors.

    Raises:
        FineclassError: naming ``id`` when some files have the id column and others do not, or when its type
            differs between files.
    """
    name = id or ID
    having = [f for f, s in zip(files, schemas) if name in s.names]
    if having and len(having) < len(files):
        lacking = [f for f, s in zip(files, schemas) if name not in s.names]
        raise FineclassError(
            f"`{argument}`: {len(having)} files have an id column `{name}` but {len(lacking)} do not "
            f"(e.g. {lacking[0]!r}); their rows would get row numbers instead of ids. Add the column to every "
            f"file, or remove it from all.",
            "id",
        )
    types: dict = {}
    for f, s in zip(files, schemas):
        if name in s.names:
            t = s.field(name).type
            t = t.value_type if pa.types.is_dictionary(t) else t
            t = pa.string() if pa.types.is_large_string(t) else t
            if not pa.types.is_null(t):
                types.setdefault(str(t), f)
    if len(types) > 1:
        (t1, f1), (t2, f2) = list(types.items())[:2]
        raise FineclassError(
            f"`{argument}`: the id column `{name}` is {t1} in {f1!r} but {t2} in {f2!r}. Give the ids one type in "
            f"every file (e.g. write them all as text).",
            "id",
        )


def open_dataset(path: str | Path, argument: str = "data") -> ds.Dataset:
    """A pyarrow dataset over the files behind ``path``; a corrupt file is named in the error.

    Args:
        path: a file, a glob or a folder.
        argument: the argument's name, for errors.

    Returns:
        A ``pyarrow.dataset.Dataset``.

    Raises:
        FineclassError: naming ``argument`` for an unreadable file, text that is not UTF-8, or Parquet files of
            different schemas.
    """
    files = resolve_files(path, argument)
    fmt = file_format(files, argument)
    if fmt == "csv":
        dset = ds.dataset(files, format=csv_format(files, argument))
        check_csv_utf8(dset.schema, files, argument)
        return dset
    fragments_ok = []
    for f in files:
        try:
            import pyarrow.parquet as pq

            _ = pq.ParquetFile(f).schema_arrow  # reads the footer: catches truncated files early
            fragments_ok.append(f)
        except Exception as e:  # pyarrow raises several types for damaged files
            raise FineclassError(
                f"`{argument}`: the file {f!r} is not a readable Parquet file ({e}). Remove or re-create it.", argument
            ) from None
    try:
        return ds.dataset(fragments_ok, format="parquet")
    except pa.ArrowInvalid as e:
        raise FineclassError(f"`{argument}`: the Parquet files do not share one schema ({e}).", argument) from None


def read_table(data: Any, argument: str = "data", columns: Sequence[str] | None = None) -> pa.Table:
    """Read any accepted input into one pyarrow.Table.

    Args:
        data: a pyarrow Table, RecordBatch, RecordBatchReader or Dataset; a polars DataFrame or LazyFrame; a pandas
            DataFrame; a dict of lists; a list of texts; anything with ``__arrow_c_stream__``; or a path (Parquet
            or CSV file, glob, folder of Parquet files).
        argument: the argument's name, for errors.
        columns: for datasets and Parquet paths, the columns to read (None: all).

    Returns:
        The table.

    Raises:
        FineclassError: naming ``argument`` for an input of another kind, an unreadable file, or a column that
            cannot become one Arrow column.

    Example:
        >>> read_table({"text": ["a", "b"]}).num_rows
        2
    """
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    if isinstance(data, ds.Dataset):
        return data.to_table(columns=columns)
    if is_path(data):
        files = resolve_files(data, argument)
        if file_format(files, argument) == "csv":
            return _read_csv(files, argument)
        dset = open_dataset(data, argument)
        try:
            return dset.to_table(columns=[c for c in columns if c in dset.schema.names] if columns else None)
        except (pa.ArrowInvalid, OSError) as e:
            raise FineclassError(f"`{argument}`: could not read {str(data)!r}: {e}", argument) from None
    if isinstance(data, Mapping):
        scalar = [str(k) for k, v in data.items() if isinstance(v, (str, bytes))]
        if scalar:
            raise FineclassError(
                f"`{argument}`: the entry `{scalar[0]}` of the dict is a single value, not a "
                f'column; pass a list (e.g. ["..."]).',
                argument,
            )
        try:
            return pa.table(
                {
                    str(k): list(v) if not isinstance(v, (pa.Array, pa.ChunkedArray, np.ndarray)) else v
                    for k, v in data.items()
                }
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, UnicodeError) as e:
            raise FineclassError(
                f"`{argument}`: the dict could not become a table ({e}). Pass lists of equal "
                f"length with one type each.",
                argument,
            ) from None
    mod = type(data).__module__
    if mod.startswith("polars"):
        if type(data).__name__ == "LazyFrame":
            data = data.collect()
        return data.to_arrow()
    if mod.startswith("pandas"):
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except UnicodeError as e:
            raise FineclassError(f"`{argument}`: a text is not valid Unicode ({e}).", argument) from None
        except (pa.ArrowTypeError, pa.ArrowInvalid) as e:
            raise FineclassError(
                f"`{argument}`: a column mixes types and cannot become one Arrow column ({e}). "
                f"Give each column one type (e.g. all labels as text).",
                argument,
            ) from None
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    if isinstance(data, (list, tuple)) and all(isinstance(x, str) for x in data):
        try:
            return pa.table({"text": list(data)})
        except UnicodeError as e:
            raise FineclassError(f"`{argument}`: a text is not valid Unicode ({e}).", argument) from None
    raise FineclassError(
        f"`{argument}` must be a table (pyarrow, polars, pandas, a dict of lists) or a path to Parquet/CSV; "
        f"got {type(data).__name__}.",
        argument,
    )


def _read_csv(files: list[str], argument: str) -> pa.Table:
    import pyarrow.csv as pcsv

    tables = []
    for f in files:
        delimiter = "\t" if f.lower().endswith((".tsv", ".tsv.gz")) else ","
        try:
            tables.append(
                pcsv.read_csv(
                    f,
                    read_options=pcsv.ReadOptions(encoding="utf8"),
                    parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                )
            )
        except (pa.ArrowInvalid, UnicodeDecodeError) as e:
            raise csv_error(f, e, argument) from None
        check_csv_utf8(tables[-1].schema, [f], argument)
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as e:
        raise FineclassError(f"`{argument}`: the CSV files do not share one schema ({e}).", argument) from None


def csv_error(file: str | None, error: Exception, argument: str) -> FineclassError:
    """The error for a CSV file Arrow could not read: "not UTF-8" when that is the cause, with the fix.

    Args:
        file: the file, or None when it is not known (one of several).
        error: what Arrow raised.
        argument: the argument's name.

    Returns:
        A FineclassError naming ``argument``.
    """
    where = f"the CSV file {file!r}" if file else "one of its CSV files"
    if isinstance(error, UnicodeDecodeError) or "utf8" in str(error).lower() or "utf-8" in str(error).lower():
        return FineclassError(
            f"`{argument}`: {where} is not UTF-8 ({error}). Save it as UTF-8 (e.g. from Latin-1: "
            f"`iconv -f latin1 -t utf-8`), or read it yourself with its encoding and pass a table.",
            argument,
        )
    return FineclassError(
        f"`{argument}`: could not read {where} ({error}). Save it as UTF-8 with one header row, "
        f"or convert it to Parquet.",
        argument,
    )


def check_csv_utf8(schema: pa.Schema, files: list[str], argument: str) -> None:
    """Arrow reads a CSV column with bytes that are not UTF-8 as binary: say so, rather than 'not text' later.

    Args:
        schema: the schema Arrow inferred.
        files: the files it was inferred from (the first is named).
        argument: the argument's name.

    Raises:
        FineclassError: naming ``argument`` when a column was read as binary.
    """
    bad = [f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    if bad:
        others = " (or another of its files)" if len(files) > 1 else ""
        raise FineclassError(
            f"`{argument}`: the CSV file {files[0]!r}{others} is not UTF-8: "
            f"its column `{bad[0]}` holds bytes that are not UTF-8. Save it as UTF-8 (e.g. from Latin-1: "
            f"`iconv -f latin1 -t utf-8`), or read it yourself with its encoding and pass a table.",
            argument,
        )


def column_error(
    name: str, names: Sequence[str], argument: str, where: str = "`data`", what: str = ""
) -> FineclassError:
    """The error for a column that is not there: what is there, and which argument names the right one.

    Args:
        name: the column asked for.
        names: the columns the table has.
        argument: the argument that named the column (``"text"``, ``"id"``...).
        where: the table, as the message shows it (default ``"`data`"``).
        what: what the column holds, when it is not the argument's name.

    Returns:
        A FineclassError naming ``argument``.
    """
    return FineclassError(
        f"column `{name}` not found in {where}; columns are: {', '.join(names)}. "
        f"Pass `{argument}=` with the name of the {what or argument} column.",
        argument,
    )


def check_column(table: pa.Table, name: str, argument: str, what: str = "") -> None:
    """Raise :func:`column_error` when ``table`` has no column ``name``.

    Args:
        table: the table to look in.
        name: the column asked for.
        argument: the argument that named it.
        what: what the column holds, when it is not the argument's name.

    Raises:
        FineclassError: naming ``argument`` when the column is missing.
    """
    if name not in table.column_names:
        raise column_error(name, table.column_names, argument, what=what)


def with_id(table: pa.Table, id: str | None, offset: int = 0) -> pa.Table:
    """The table with an ``id`` column: the user's (renamed) or a row number starting at ``offset``.

    Args:
        table: the documents.
        id: the id column (None: a column named ``id``, else the row number).
        offset: the first row's number, for a table that is a shard of a larger input.

    Returns:
        The table with an ``id`` column.

    Raises:
        FineclassError: naming ``id`` when the column is missing, nested, or holds missing values.
    """
    if id is None:
        if ID in table.column_names:
            id = ID
        else:
            return table.append_column(ID, pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64)))
    check_column(table, id, "id")
    col = table.column(id)
    if pa.types.is_nested(col.type):
        raise FineclassError(f"the id column `{id}` holds {col.type} values; ids must be numbers or text.", "id")
    if col.null_count:
        raise FineclassError(
            f"the id column `{id}` holds {col.null_count} missing values; every row needs an id.", "id"
        )
    if id != ID:
        if ID in table.column_names:
            table = table.drop_columns([ID])
        table = table.rename_columns([ID if c == id else c for c in table.column_names])
    return table


def check_text(table: pa.Table, text: str, on_empty: str = "error") -> tuple[pa.Table, np.ndarray]:
    """Check the text column, and find the documents without text.

    Args:
        table: the documents.
        text: the text column.
        on_empty: ``"error"`` raises with the ids of null or blank texts; ``"flag"`` keeps them, for the caller to
            mark.

    Returns:
        ``(table, empty)``: the table with the text in a string column named ``text``, and a bool per row that is
        null or blank.

    Raises:
        FineclassError: naming ``text`` when the column is missing or does not hold text, or (with
            ``on_empty="error"``) some texts are missing.
    """
    check_column(table, text, "text")
    col = table.column(text)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        if col.null_count == len(col):  # no text at all (no rows, or every text missing), whatever the type
            col = pa.chunked_array([pa.nulls(len(col), pa.string())])
        elif pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        else:
            raise FineclassError(
                f"the text column `{text}` holds {col.type} values, not text. Pass `text=` with "
                f"the name of the column that holds the documents.",
                "text",
            )
    stripped = pc.utf8_trim_whitespace(col)
    empty = pc.or_kleene(pc.is_null(col), pc.equal(pc.utf8_length(stripped), 0))
    mask = np.asarray(pc.fill_null(empty, True).to_numpy(zero_copy_only=False), dtype=bool)
    if mask.any() and on_empty == "error":
        if ID in table.column_names:
            ids = np.asarray(table.column(ID).to_pylist(), dtype=object)[mask]
        else:
            ids = np.flatnonzero(mask)
        raise FineclassError(
            f"{int(mask.sum())} documents have a missing or empty text (ids: {preview(ids)}). "
            f"Remove them or fill them in before training.",
            "text",
        )
    if text != "text":
        names = [c for c in table.column_names if c != "text"]
        table = table.select(names)
        table = table.rename_columns(["text" if c == text else c for c in table.column_names])
    if col.type != table.column("text").type or pa.types.is_large_string(col.type):
        table = table.set_column(table.column_names.index("text"), "text", col.cast(pa.string()))
    return table, mask


def as_table(data: Any, *, text: str = "text", id: str | None = None, on_empty: str = "error") -> pa.Table:
    """Any accepted input as one pyarrow.Table with checked ``id`` and ``text`` columns (other columns kept).

    Args:
        data: any input :func:`read_table` reads.
        text: the text column (renamed ``text``).
        id: the id column (renamed ``id``); without one, ``id`` is the row number, carried through to every output.
        on_empty: ``"error"`` (null or blank texts raise an error listing their ids) or ``"flag"`` (kept).

    Returns:
        The table.

    Raises:
        FineclassError: naming the argument at fault.

    Example:
        >>> fineclass.as_table({"doc": ["a", "b"], "body": ["one", "two"]}, text="body", id="doc").column_names
        ['id', 'text']
    """
    table = with_id(read_table(data), id)
    table, _ = check_text(table, text, on_empty=on_empty)
    return table
