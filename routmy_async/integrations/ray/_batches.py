"""Ray Data batches in and out: a dict of numpy columns (``batch_format="numpy"``, the
default), a pandas ``DataFrame`` or a pyarrow ``Table``.

Values are read as plain Python (numpy arrays and scalars become lists and numbers), and new
columns are written as Arrow arrays of the type their shape gives (``_schema``), in every
format: a pyarrow column, a pandas column backed by Arrow (``pd.ArrowDtype``), an Arrow array
in a dict of numpy columns (Ray Data takes it as it is). Left to Ray, a column's type would be
inferred from each batch's values, and batches whose values differ would make blocks of
different schemas. A dict of plain lists (a call outside Ray) gets plain lists. numpy, pandas
and pyarrow are imported only when Ray hands over one of their types: they are Ray Data's
dependencies, not ours.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import msgspec

from ._schema import Shape

__all__ = ["Batch", "plain"]

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

    def extended(self, columns: Mapping[str, tuple[Shape, list[Any]]]) -> Any:
        """The batch with ``columns`` (name: shape, values) added or replaced; a ``"json"``
        column's values are written as JSON text."""
        batch = self._batch
        columns = {
            name: (shape, _json_text(values) if shape == "json" else values)
            for name, (shape, values) in columns.items()
        }
        if self._format == "pyarrow":
            for name, (shape, values) in columns.items():
                array = _arrow_array(shape, values)
                if name in batch.column_names:
                    batch = batch.set_column(batch.column_names.index(name), name, array)
                else:
                    batch = batch.append_column(name, array)
            return batch
        if self._format == "pandas":
            pandas: Any = importlib.import_module("pandas")
            for name, (shape, values) in columns.items():
                batch[name] = pandas.arrays.ArrowExtensionArray(_arrow_array(shape, values))
            return batch
        result = dict(batch)
        for name, (shape, values) in columns.items():
            result[name] = _arrow_array(shape, values) if self._numpy else values
        return result


def _object_array(values: list[Any]) -> Any:
    numpy: Any = importlib.import_module("numpy")
    array = numpy.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        # One by one: a list of equal-length lists must stay a column of lists, where a
        # slice assignment would make it a second dimension.
        array[index] = value
    return array


def _json_text(values: list[Any]) -> list[Any]:
    return [None if value is None else msgspec.json.encode(value).decode() for value in values]


def arrow_type(shape: Shape) -> Any:
    """The Arrow type of a column of ``shape``."""
    pa: Any = importlib.import_module("pyarrow")
    leaves = {
        "str": pa.string(),
        "json": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "vector": pa.list_(pa.float32()),
    }
    if isinstance(shape, str):
        return leaves[shape]
    kind, inner = shape
    if kind == "list":
        return pa.list_(arrow_type(inner))
    return pa.struct([(name, arrow_type(item)) for name, item in inner])


def _arrow_array(shape: Shape, values: list[Any]) -> Any:
    pa: Any = importlib.import_module("pyarrow")
    return pa.array(values, type=arrow_type(shape))
