"""Types of ``GET /v1/models``."""

from __future__ import annotations

import weakref
from collections import deque
from typing import Any

from ._base import ResponseObject, TopLevelResponse

__all__ = ["Model", "ModelList"]


class Model(ResponseObject, frozen=True, gc=True, dict=True):
    """A model the router serves.

    ``token_multiplier`` scales quota use; ``is_available`` is ``False`` for a model that is
    listed but locked for this key. ``raw`` holds every field the server sent for it.
    """

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""
    token_multiplier: float | None = None
    is_available: bool | None = None

    @property
    def raw(self) -> dict[str, Any]:
        """Everything the server sent for this model, modelled or not."""
        link = self.__dict__.get("_in_list") or _find_list(self)
        if link is not None:
            parent, position = link
            entries = parent.raw.get("data")
            if isinstance(entries, list) and position < len(entries):
                entry = entries[position]
                if isinstance(entry, dict):
                    return entry
        return self.to_dict()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not fields: a field the server sent that we do not model.
        if name.startswith("_"):
            raise AttributeError(name)
        raw = self.raw
        if name in raw:
            return raw[name]
        raise AttributeError(f"Model has no attribute {name!r} and the server sent no such field")


# Weak references to the most recent lists (frozen Structs holding lists are unhashable,
# so a WeakSet cannot hold them).
_RECENT_LISTS: deque[weakref.ref[ModelList]] = deque(maxlen=64)


def _find_list(model: Model) -> tuple[ModelList, int] | None:
    """The live ModelList holding ``model`` and its position (cached on the model)."""
    for reference in reversed(_RECENT_LISTS):
        models = reference()
        if models is None:
            continue
        for position, candidate in enumerate(models.data):
            if candidate is model:
                link = (models, position)
                model.__dict__["_in_list"] = link
                return link
    return None


class ModelList(TopLevelResponse, frozen=True, weakref=True):
    """The list of models (``object: "list"``)."""

    object: str = "list"
    data: list[Model] = []

    def __post_init__(self) -> None:
        # Linking 300 models to their raw entries up front would cost more than decoding
        # them; model.raw finds its list on first use instead.
        _RECENT_LISTS.append(weakref.ref(self))

    def ids(self) -> list[str]:
        """Return the model ids, in the order the server listed them."""
        return [model.id for model in self.data]
