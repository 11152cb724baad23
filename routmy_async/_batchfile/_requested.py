"""Which model each line's request named (sync; a budgeted run reads it in a worker thread).

A budgeted run counts what the answers already in its output used, priced by a model's
rate. The model to price by is the one the *request* named: the rate the run reserved and
settled with when it sent the line. An answer may name another id (a router resolves
``openai/gpt-4o-mini`` to a dated snapshot, or ``auto`` to the model it picked) that the
models list does not have; pricing by it would refuse the whole output, and counting it as
free would break the limit.

So before the outputs are read back, one pass over the input keeps, for each line, the
fingerprint of its ``custom_id`` (see ``_idset``) and the index of its model in a short
list of names: 12 bytes a line, in 256 buckets sorted once, so a look-up is one bisect.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path

from ._files import Stopped
from ._idset import fingerprint
from ._lines import LineError, decode_input

__all__ = ["RequestModels", "read_request_models"]

_SHIFT = 56  # a fingerprint's top byte picks its bucket
_BUCKETS = 256
_BOM = b"\xef\xbb\xbf"
_CHECK_EVERY = 4096  # lines between two looks at should_stop


class RequestModels:
    """The model each request named, by the fingerprint of its ``custom_id``.

    :meth:`add` every line, then :meth:`freeze` once; a repeated id keeps the model of its
    first line (the one a run sends).
    """

    __slots__ = ("_index", "_keys", "_names", "_values")

    def __init__(self) -> None:
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._keys = [array("Q") for _ in range(_BUCKETS)]
        self._values = [array("I") for _ in range(_BUCKETS)]

    def add(self, custom_id: str, model: str) -> None:
        """Remember that the line ``custom_id`` asked for ``model``."""
        position = self._index.get(model)
        if position is None:
            position = self._index[model] = len(self._names)
            self._names.append(model)
        value = fingerprint(custom_id)
        self._keys[value >> _SHIFT].append(value)
        self._values[value >> _SHIFT].append(position)

    def freeze(self) -> None:
        """Sort each bucket by fingerprint (stable: a repeated id's first line comes first)."""
        for bucket, keys in enumerate(self._keys):
            order = sorted(range(len(keys)), key=keys.__getitem__)
            values = self._values[bucket]
            self._keys[bucket] = array("Q", (keys[i] for i in order))
            self._values[bucket] = array("I", (values[i] for i in order))

    def model_of(self, value: int) -> str | None:
        """The model of the line whose id has the fingerprint ``value`` (``None``: no such
        line, or its request named no model)."""
        keys = self._keys[value >> _SHIFT]
        position = bisect_left(keys, value)
        if position < len(keys) and keys[position] == value:
            return self._names[self._values[value >> _SHIFT][position]]
        return None

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._keys)


def read_request_models(path: Path, *, should_stop: Callable[[], bool]) -> RequestModels:
    """The model each line of the input file ``path`` names in its ``body``.

    Lines that are not JSON objects, or have no ``custom_id`` or no model, are passed over:
    the validation reports them, and an answer to such a line is priced by its own model.

    :raises Stopped: ``should_stop()`` became true.
    """
    models = RequestModels()
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not number % _CHECK_EVERY and should_stop():
                raise Stopped
            try:
                line = decode_input(raw.removeprefix(_BOM) if number == 1 else raw)
            except LineError:
                continue
            body, custom_id = line.body, line.custom_id
            model = body.get("model") if isinstance(body, dict) else None
            if isinstance(custom_id, str) and custom_id and isinstance(model, str) and model:
                models.add(custom_id, model)
    models.freeze()
    return models
