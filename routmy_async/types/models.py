"""Types of ``GET /v1/models``."""

from __future__ import annotations

from typing import Any

from ._base import ResponseObject, TopLevelResponse

__all__ = ["Model", "ModelList"]


class Model(ResponseObject, frozen=True, dict=True):
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
        link = self.__dict__.get("_in_list")
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


class ModelList(TopLevelResponse, frozen=True):
    """The list of models (``object: "list"``)."""

    object: str = "list"
    data: list[Model] = []

    def __post_init__(self) -> None:
        # Each model remembers its place, so model.raw can find its entry in the raw body.
        for position, model in enumerate(self.data):
            model.__dict__["_in_list"] = (self, position)

    def ids(self) -> list[str]:
        """Return the model ids, in the order the server listed them."""
        return [model.id for model in self.data]
