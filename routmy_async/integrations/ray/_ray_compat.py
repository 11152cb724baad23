"""The one home of Ray's private internals in this package (``tests/test_guards.py`` keeps
them here, as ``_http/_aiohttp_compat.py`` keeps aiohttp's): a Ray upgrade that moves them
breaks this module and its tests, nothing else."""

from __future__ import annotations

import importlib
import time
from typing import Any

import msgspec

from ._coordinator import Snapshot
from ._spend_book import BookState

__all__ = ["GcsStore"]


class GcsStore:
    """A coordinator's snapshot in Ray's GCS key-value store, which outlives any actor.

    Ray has no public API for it (``ray.experimental.internal_kv`` is what Ray's own
    libraries use). Were it gone, a restarted coordinator could not know how far ahead the
    lost one had granted: it would assume an hour, granting nothing for that long rather
    than risk the limit, and its whole spend limit spent.
    """

    def __init__(self, name: str, namespace: str):
        self._key = f"routmy-budget:{namespace}:{name}".encode()
        try:
            self._kv: Any = importlib.import_module("ray.experimental.internal_kv")
        except ImportError:  # pragma: no cover - every Ray with actors has it so far
            self._kv = None

    def load(self) -> Snapshot | None:
        if self._kv is None:  # pragma: no cover - see __init__
            return Snapshot(
                horizon=time.time() + 3600.0, next_id=1 << 40, spend=BookState(spent=1 << 62)
            )
        data = self._kv._internal_kv_get(self._key, namespace="routmy")
        return None if data is None else msgspec.json.decode(data, type=Snapshot)

    def save(self, snapshot: Snapshot) -> None:
        # Not connected (a coordinator run outside a Ray worker): there is no GCS to keep it.
        if self._kv is not None and self._kv._internal_kv_initialized():
            self._kv._internal_kv_put(
                self._key, msgspec.json.encode(snapshot), overwrite=True, namespace="routmy"
            )

    def clear(self) -> None:
        if self._kv is not None and self._kv._internal_kv_initialized():
            self._kv._internal_kv_del(self._key, namespace="routmy")
