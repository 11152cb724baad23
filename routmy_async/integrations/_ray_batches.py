"""Ray Data batches in and out: a dict of numpy columns (``batch_format="numpy"``, the
default), a pandas ``DataFrame`` or a pyarrow ``Table``.

Values are read as plain Python (numpy arrays and scalars become lists and numbers), and new
columns are written in the batch's own format with fixed types, so every batch of a step has
the same schema whatever failed in it. numpy, pandas and pyarrow are imported only when Ray
hands over one of their types: they are Ray Data's dependencies, not ours.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

__all__ = ["Batch", "Kind", "plain"]

logger = logging.getLogger("routmy_async")

#: A column's type: text, whole numbers, real numbers, vectors of float32, or any JSON value.
Kind = Literal["str", "int", "float", "vector", "json"]

_PLAIN = frozenset({str, bytes, int, float, bool})


def plain(value: Any, *, drop_none: bool = False) -> Any:
    """``value`` as plain Python: numpy arrays and scalars (anything with ``tolist``) become
    lists and numbers, recursively. With ``drop_none``, dict keys holding ``None`` go: Arrow
    gives every struct of a column every field, as null where a row had none."""
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, str):
        return str(value)  # numpy.str_ is a str that msgspec will not encode
    if isinstance(value, Mapping):
        return {
            key: plain(item, drop_none=drop_none)
            for key, item in value.items()
            if not (drop_none and item is None)
        }
    if isinstance(value, (list, tuple)):
        return [plain(item, drop_none=drop_none) for item in value]
    to_list = getattr(value, "tolist", None)
    if callable(to_list):
        return plain(to_list(), drop_none=drop_none)
    return value


def _library(batch: Any) -> str:
    return type(batch).__module__.partition(".")[0]


class Batch:
    """One batch of rows, read column by column and extended with new columns."""

    def __init__(self, batch: Any):
        library = _library(batch)
        if library == "pyarrow" and hasattr(batch, "column_names"):
            self._format = "pyarrow"
            self.rows = int(batch.num_rows)
        elif library == "pandas" and hasattr(batch, "columns"):
            self._format = "pandas"
            self.rows = len(batch)
        elif isinstance(batch, Mapping):
            self._format = "dict"
            first = next(iter(batch.values()), ())
            self.rows = len(first)
            # Columns that came as numpy arrays go back as numpy arrays (Ray's default).
            self._numpy = _library(first) == "numpy"
        else:
            raise TypeError(
                "a batch must be a dict of columns, a pandas DataFrame or a pyarrow Table "
                f"(map_batches batch_format), not {type(batch).__name__}"
            )
        self._batch = batch

    def column(self, name: str) -> list[Any]:
        """The values of column ``name`` as Python objects (numpy values left to ``plain``).

        :raises KeyError: no such column, naming the columns there are.
        """
        batch = self._batch
        names = list(batch.column_names if self._format == "pyarrow" else batch.keys())
        if name not in names:
            raise KeyError(f"the batch has no column {name!r} (it has {names})")
        if self._format == "pyarrow":
            values: list[Any] = batch.column(name).to_pylist()
            return values
        return list(batch[name])

    def replace(self, name: str, values: list[Any]) -> None:
        """Put ``values`` back as column ``name``: the numpy route's fix for object columns
        that Ray could not turn back into Arrow (arrays of dicts inside arrays)."""
        if self._format == "dict" and self._numpy:
            self._batch = {**self._batch, name: _object_array(values)}

    def extended(self, columns: Mapping[str, tuple[Kind, list[Any]]]) -> Any:
        """The batch with ``columns`` (name: kind, values) added or replaced."""
        batch = self._batch
        if self._format == "pyarrow":
            for name, (kind, values) in columns.items():
                array = _arrow_array(name, kind, values)
                if name in batch.column_names:
                    batch = batch.set_column(batch.column_names.index(name), name, array)
                else:
                    batch = batch.append_column(name, array)
            return batch
        if self._format == "pandas":
            for name, (kind, values) in columns.items():
                batch[name] = _vectors(values) if kind == "vector" else values
            return batch
        result = dict(batch)
        for name, (kind, values) in columns.items():
            if kind == "vector":
                values = _vectors(values) if self._numpy else values
            result[name] = _object_array(values) if self._numpy else values
        return result


def _object_array(values: list[Any]) -> Any:
    numpy: Any = importlib.import_module("numpy")
    array = numpy.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        # One by one: a list of equal-length lists must stay a column of lists, where a
        # slice assignment would make it a second dimension.
        array[index] = value
    return array


def _vectors(values: list[Any]) -> list[Any]:
    numpy: Any = importlib.import_module("numpy")
    return [
        None if value is None else numpy.asarray(value, dtype=numpy.float32) for value in values
    ]


def _arrow_array(name: str, kind: Kind, values: list[Any]) -> Any:
    pa: Any = importlib.import_module("pyarrow")
    types = {
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "vector": pa.list_(pa.float32()),
    }
    if kind != "json":
        return pa.array(values, type=types[kind])
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Rows whose JSON shapes disagree (a free-form json_object reply) cannot share one
        # Arrow type: keep them as JSON text rather than failing the batch.
        logger.warning("column %r: values of different shapes, kept as JSON text", name)
        return pa.array(
            [None if value is None else msgspec.json.encode(value).decode() for value in values],
            type=pa.string(),
        )
