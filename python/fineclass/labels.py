"""LabelSpec: what a classifier predicts, in one of the paper's three shapes.

- ``single``: one class per document (CAP major topics: 21 integer codes with names).
- ``multi``: a set of classes per document (Dataverse subjects: up to 3 of 14).
- ``dimlevel``: for each of several dimensions, absent or one ordered level
  (human flourishing: 46 dimensions, each absent or low/medium/high).

Classes are stored as strings (their canonical form) together with the type of the
original values, so that integer codes come back as integers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from .errors import FineclassError, preview
from .tables import read_table

KINDS = ("single", "multi", "dimlevel")
DEFAULT_LEVELS = ("low", "medium", "high")
ABSENT = "absent"  # a dimension->level cell without a level


def canon(value: Any) -> str:
    """The canonical string of a label value: 5, 5.0 and "5" are the same code.

    Args:
        value: a label value (int, float, str, bool, numpy scalar).

    Returns:
        Its canonical string (whole floats lose their ``.0``, strings are trimmed).
    """
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value).strip()


def is_missing(value: Any) -> bool:
    """Whether a label value is missing: None, NaN, or a string that is empty or only whitespace.

    Blank and null labels are the same thing in every reader (a blank CSV cell is never a class ``""``).

    Args:
        value: a label value as read.

    Returns:
        True for a missing value.
    """
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return isinstance(value, str) and not value.strip()


def value_type(values: Iterable[Any]) -> str:
    """``"int"`` when every value is a whole number (5, 5.0, numpy ints), else ``"str"``.

    Args:
        values: label values as the user gave them.

    Returns:
        ``"int"`` or ``"str"``.
    """
    kinds = set()
    for v in values:
        if isinstance(v, bool):
            kinds.add("str")
        elif isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and float(v).is_integer()):
            kinds.add("int")
        else:
            kinds.add("str")
    return "int" if kinds == {"int"} else "str"


def _sort_key(value_type: str):
    return (lambda s: int(s)) if value_type == "int" else (lambda s: s)


@dataclass
class LabelSpec:
    """The label set of a task: its shape, its classes and an optional codebook.

    Parameters
    ----------
    kind: ``"single"``, ``"multi"`` or ``"dimlevel"``.
    classes: the class codes (single, multi) or the dimensions (dimlevel), as strings.
    levels: for ``dimlevel``, the ordered levels (default low, medium, high).
    names: optional human-readable name per class code (e.g. CAP ``"1" -> "Macroeconomics"``).
    descriptions: optional codebook text per class code, used in prompts.
    value_type: ``"int"`` when the codes were integers, so predictions return integers.
    max_labels: for ``multi``, the most labels one document may carry (``None``: no limit).
    """

    kind: str
    classes: list[str]
    levels: list[str] | None = None
    names: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    value_type: str = "str"
    max_labels: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise FineclassError(f"`kind` must be one of {', '.join(KINDS)}; got {self.kind!r}.", "kind")
        self.classes = [canon(c) for c in self.classes]
        if len(set(self.classes)) != len(self.classes):
            dup = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise FineclassError(f"`classes` holds duplicates: {preview(dup)}.", "classes")
        if len(self.classes) < (1 if self.kind == "dimlevel" else 2) and self.kind != "multi":
            raise FineclassError(
                f"a {self.kind} label needs at least two classes; found only "
                f"{preview(self.classes)}. Check the `label` column: it holds a single class.",
                "label",
            )
        if self.kind == "multi" and len(self.classes) < 1:
            raise FineclassError("a multi-label task needs at least one class.", "label")
        if self.kind == "dimlevel":
            self.levels = [str(x) for x in (self.levels or DEFAULT_LEVELS)]
            if len(set(self.levels)) != len(self.levels):
                raise FineclassError(f"`levels` holds duplicates: {self.levels}.", "levels")
        elif self.levels:
            raise FineclassError("`levels` is only used with kind='dimlevel'.", "levels")
        self.names = {canon(k): str(v) for k, v in (self.names or {}).items()}
        self.descriptions = {canon(k): str(v) for k, v in (self.descriptions or {}).items()}
        unknown = [k for k in list(self.names) + list(self.descriptions) if k not in self.classes]
        if unknown:
            raise FineclassError(
                f"the codebook describes classes that are not in the label set: {preview(sorted(set(unknown)))}. "
                f"Known classes: {preview(self.classes)}.",
                "codebook",
            )

    # ------------------------------------------------------------------ building
    @classmethod
    def infer(
        cls,
        values: Sequence[Any],
        kind: str = "single",
        levels: Sequence[str] | None = None,
        codebook: Mapping[Any, Any] | None = None,
        max_labels: int | None = None,
    ) -> "LabelSpec":
        """Build a spec from observed labels.

        Args:
            values: for single, one value per document; for multi, one list per document; for dimlevel, one
                ``{dimension: level}`` mapping per document.
            kind: ``"single"``, ``"multi"`` or ``"dimlevel"``.
            levels: the ordered levels (dimlevel; default low, medium, high).
            codebook: ``{code: name}`` or ``{code: {"name": ..., "description": ...}}``; its classes join the label set.
            max_labels: for multi, the most labels a document may carry.

        Returns:
            The LabelSpec (classes sorted: numerically for integer codes).

        Raises:
            FineclassError: naming ``levels`` or ``kind`` when they do not fit the values.
        """
        if kind == "single":
            flat = [v for v in values if not is_missing(v)]
        elif kind == "multi":
            flat = [v for vs in values for v in (vs or []) if not is_missing(v)]
        elif kind == "dimlevel":
            flat = [d for m in values for d in (m or {})]
            seen_levels = {canon(lv) for m in values for lv in (m or {}).values()}
            if levels is None:
                extra = seen_levels - set(DEFAULT_LEVELS)
                if extra:
                    raise FineclassError(
                        f"levels {preview(sorted(extra))} are not low/medium/high. Pass `levels=` with the "
                        f"ordered list of levels.",
                        "levels",
                    )
                levels = list(DEFAULT_LEVELS)
            else:
                extra = seen_levels - {str(x) for x in levels}
                if extra:
                    raise FineclassError(
                        f"the data holds levels {preview(sorted(extra))} that are not in `levels` "
                        f"({', '.join(map(str, levels))}).",
                        "levels",
                    )
        else:
            raise FineclassError(f"`kind` must be one of {', '.join(KINDS)}; got {kind!r}.", "kind")
        vtype = value_type(flat) if kind != "dimlevel" else "str"
        classes = set(canon(v) for v in flat)
        names, descriptions = split_codebook(codebook)
        if codebook:
            classes |= set(names) | set(descriptions)
            if kind != "dimlevel" and vtype == "int" and not all(_isint(c) for c in classes):
                vtype = "str"
        classes = sorted(classes, key=_sort_key(vtype))
        return cls(
            kind=kind,
            classes=classes,
            levels=list(levels) if levels else None,
            names=names,
            descriptions=descriptions,
            value_type=vtype,
            max_labels=max_labels,
        )

    # ------------------------------------------------------------------ encoding
    @property
    def n_outputs(self) -> int:
        """Width of the model's output layer."""
        if self.kind == "dimlevel":
            return len(self.classes) * (len(self.levels) + 1)
        return len(self.classes)

    def _index(self, argument: str = "label") -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def _unknown(self, found: Iterable[str], argument: str, what: str = "labels") -> FineclassError:
        return FineclassError(
            f"{what} {preview(sorted(set(found)))} are not in the label set ({preview(self.classes)}). "
            f"Train with these labels, or remove the rows that carry them.",
            argument,
        )

    def encode(self, values: Sequence[Any], argument: str = "label") -> np.ndarray:
        """The targets of a training set, encoded.

        Args:
            values: one value, list or ``{dimension: level}`` mapping per document (as for :meth:`infer`).
            argument: the argument's name, for errors.

        Returns:
            (n,) class indices (single); (n, K) 0/1 (multi); or (n, D) level indices, 0 = absent (dimlevel).

        Raises:
            FineclassError: naming ``argument`` for labels, dimensions or levels outside the label set.
        """
        index = self._index()
        if self.kind == "single":
            codes = [canon(v) for v in values]
            bad = [c for c in codes if c not in index]
            if bad:
                raise self._unknown(bad, argument)
            return np.array([index[c] for c in codes], dtype=np.int64)
        if self.kind == "multi":
            out = np.zeros((len(values), len(self.classes)), dtype=np.float32)
            bad = []
            for i, vs in enumerate(values):
                for v in vs or []:
                    c = canon(v)
                    if c in index:
                        out[i, index[c]] = 1.0
                    else:
                        bad.append(c)
            if bad:
                raise self._unknown(bad, argument)
            return out
        level_index = {lv: j + 1 for j, lv in enumerate(self.levels)}
        out = np.zeros((len(values), len(self.classes)), dtype=np.int64)
        bad, bad_levels = [], []
        for i, m in enumerate(values):
            for d, lv in (m or {}).items():
                c = canon(d)
                if c not in index:
                    bad.append(c)
                elif canon(lv) not in level_index:
                    bad_levels.append(canon(lv))
                else:
                    out[i, index[c]] = level_index[canon(lv)]
        if bad:
            raise self._unknown(bad, argument, "dimensions")
        if bad_levels:
            raise FineclassError(
                f"levels {preview(sorted(set(bad_levels)))} are not in the label set's "
                f"levels ({', '.join(self.levels)}).",
                argument,
            )
        return out

    def decode_value(self, code: str):
        """A class code back in the type the user gave (integer codes come back as int).

        Args:
            code: a canonical class code.

        Returns:
            An int or a str.
        """
        return int(code) if self.value_type == "int" else code

    def arrow_type(self) -> pa.DataType:
        """The Arrow type of this label set's values.

        Returns:
            ``int64`` for integer codes, else ``string``.
        """
        return pa.int64() if self.value_type == "int" else pa.string()

    def label_name(self, code: str) -> str:
        """A class's name from the codebook, or its code.

        Args:
            code: a canonical class code.

        Returns:
            The name.
        """
        return self.names.get(code, code)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """The spec as plain data (what ``labels.json`` holds).

        Returns:
            A JSON-able dict.
        """
        return {
            "kind": self.kind,
            "classes": list(self.classes),
            "levels": self.levels,
            "names": dict(self.names),
            "descriptions": dict(self.descriptions),
            "value_type": self.value_type,
            "max_labels": self.max_labels,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LabelSpec":
        """A spec from :meth:`to_dict`'s form (unknown keys are ignored).

        Args:
            d: the dict.

        Returns:
            The LabelSpec.
        """
        known = {"kind", "classes", "levels", "names", "descriptions", "value_type", "max_labels"}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: str | Path) -> None:
        """Write the spec as JSON.

        Args:
            path: the file (a saved model keeps it as ``labels.json``).
        """
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "LabelSpec":
        """Read a spec written by :meth:`save`.

        Args:
            path: the JSON file.

        Returns:
            The LabelSpec.
        """
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def __repr__(self) -> str:
        extra = f", levels={self.levels}" if self.kind == "dimlevel" else ""
        return f"LabelSpec(kind={self.kind!r}, {len(self.classes)} classes{extra})"


def _isint(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def split_codebook(codebook: Mapping[Any, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """A codebook's names and descriptions, keyed by canonical code.

    Args:
        codebook: ``{code: name}`` or ``{code: {"name": ..., "description": ...}}`` (or None).

    Returns:
        ``(names, descriptions)``.
    """
    names, descriptions = {}, {}
    for code, entry in (codebook or {}).items():
        key = canon(code)
        if isinstance(entry, Mapping):
            if entry.get("name") is not None:
                names[key] = str(entry["name"])
            if entry.get("description") is not None:
                descriptions[key] = str(entry["description"])
        elif entry is not None:
            names[key] = str(entry)
    return names, descriptions


CODE_COLUMNS = ("code", "class", "dimension", "label")  # where a codebook table keeps its codes


def read_codebook(source: Any) -> dict[str, dict[str, str]]:
    """A codebook from a mapping, a JSON file, or a table/CSV of one row per class.

    A table's codes are in its column ``code`` (or ``class``, ``dimension`` or ``label``), their names in
    ``name`` (the code itself when there is none), their definitions in ``description`` (or ``definition``), so
    that the coders' own file (``dimension``, ``definition``) is read as it is.

    Args:
        source: ``{code: name}`` or ``{code: {"name", "description"}}``, a ``.json`` path, or any table or path
            ``tables.read_table`` reads; None gives an empty codebook.

    Returns:
        ``{code: name}`` or ``{code: {"name": ..., "description": ...}}``.

    Raises:
        FineclassError: naming ``codebook`` when the file does not exist, or the table has no column of codes, or
            neither names nor definitions.

    Example:
        >>> import polars as pl
        >>> read_codebook(pl.DataFrame({"dimension": ["Hope"], "definition": ["expecting good things"]}))
        {'Hope': {'name': 'Hope', 'description': 'expecting good things'}}
    """
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, (str, Path)) and str(source).endswith(".json"):
        p = Path(source)
        if not p.exists():
            raise FineclassError(f"codebook file {str(p)!r} does not exist.", "codebook")
        return json.loads(p.read_text(encoding="utf-8"))
    t = read_table(source, argument="codebook")
    cols = t.column_names
    code = next((c for c in CODE_COLUMNS if c in cols), None)
    text = next((c for c in ("description", "definition") if c in cols), None)
    if code is None or ("name" not in cols and text is None):
        raise FineclassError(
            f"a codebook table needs a column of codes ({', '.join(CODE_COLUMNS)}) and one of names (`name`) or "
            f"definitions (`description` or `definition`); it has: {', '.join(cols)}.",
            "codebook",
        )
    rows = t.to_pylist()
    return {
        r[code]: {"name": r["name"] if "name" in cols else str(r[code]), "description": r[text] if text else None}
        for r in rows
    }


def as_spec(spec: Any, argument: str = "spec") -> LabelSpec | None:
    """The label set from any form users pass as ``spec``.

    Args:
        spec: a LabelSpec; its dict; the path of its JSON file; the folder of a saved model (its
            ``labels.json``); or a fitted Classifier (its ``spec_``). ``None`` stays ``None``.
        argument: the argument's name, for errors.

    Returns:
        A LabelSpec, or ``None``.

    Raises:
        FineclassError: naming ``argument`` when the path is neither a label spec file nor a model's folder,
            or the value is of another type.

    Example:
        >>> as_spec({"kind": "single", "classes": ["a", "b"]})
        LabelSpec(kind='single', 2 classes)
    """
    if spec is None or isinstance(spec, LabelSpec):
        return spec
    if hasattr(spec, "spec_"):  # a fitted Classifier
        return spec.spec_
    if isinstance(spec, Mapping):
        return LabelSpec.from_dict(spec)
    if isinstance(spec, (str, Path)):
        p = Path(spec)
        if p.is_dir():
            p = p / "labels.json"  # what a saved model holds
        if not p.is_file():
            raise FineclassError(
                f"`{argument}`: {str(spec)!r} is neither a label spec JSON file nor the folder of a "
                f"saved model (which holds labels.json). Pass a LabelSpec, a dict, or such a path.",
                argument,
            )
        try:
            return LabelSpec.load(p)
        except (ValueError, TypeError, AttributeError) as e:
            raise FineclassError(f"`{argument}`: {str(p)!r} is not a label spec JSON file ({e}).", argument) from None
    raise FineclassError(
        f"`{argument}` must be a LabelSpec, a dict, a path to its JSON file or a saved model's "
        f"folder, or a fitted Classifier; got {type(spec).__name__}.",
        argument,
    )
