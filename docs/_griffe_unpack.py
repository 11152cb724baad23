"""A griffe extension: ``**params: Unpack[SomeTypedDict]`` becomes one keyword per field.

The SDK writes the shared keyword arguments of ``create``, ``stream``, ``parse``... once, as a
``TypedDict`` given through ``Unpack``. Rendered as it is, the reference
would show a bare ``**params``; this extension replaces it, in the signature mkdocstrings
renders, by the TypedDict's fields (its own first, then its bases'), each keyword-only with
its type. An implementation typed ``**params: Any`` under ``@overload``s takes the TypedDict
of its overloads. ``mkdocs.yml`` loads it by path; ``tests/test_docs.py`` checks that no page
of the built site still shows ``**params`` or ``**options``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe


def _unpacked(function: griffe.Function) -> griffe.Expr | None:
    """The ``X`` of a ``**kwargs: Unpack[X]`` parameter, if the function has one."""
    for parameter in function.parameters:
        annotation = parameter.annotation
        if (
            parameter.kind is griffe.ParameterKind.var_keyword
            and isinstance(annotation, griffe.ExprSubscript)
            and str(annotation.left).rsplit(".", 1)[-1] == "Unpack"
        ):
            return annotation.slice  # type: ignore[return-value]
    return None


def _fields(typed_dict: griffe.Class) -> list[griffe.Attribute]:
    """The annotated fields of a TypedDict: its own, then those of its bases (MRO order)."""
    fields: dict[str, griffe.Attribute] = {}
    for cls in [typed_dict, *typed_dict.mro()]:
        for name, member in cls.members.items():
            if member.is_attribute and member.annotation is not None and name not in fields:
                fields[name] = member  # type: ignore[assignment]
    return list(fields.values())


class ExpandUnpackedKwargs(griffe.Extension):
    """Replace ``**params: Unpack[TypedDict]`` by the TypedDict's fields, keyword-only."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        self._walk(pkg, loader)

    def _walk(self, obj: griffe.Object, loader: griffe.GriffeLoader) -> None:
        for member in list(obj.members.values()):
            if member.is_alias:
                continue
            if member.is_function:
                self._expand(member, loader)  # type: ignore[arg-type]
            elif member.is_class or member.is_module:
                self._walk(member, loader)  # type: ignore[arg-type]

    def _expand(self, function: griffe.Function, loader: griffe.GriffeLoader) -> None:
        overloads = list(function.overloads or [])
        target = _unpacked(function)
        for overload in overloads:
            target = target or _unpacked(overload)
        if target is None:
            return
        path = getattr(target, "canonical_path", str(target))
        try:
            typed_dict = loader.modules_collection.get_member(path)
        except (KeyError, ValueError):  # pragma: no cover - a TypedDict griffe cannot see
            return
        fields = _fields(typed_dict)
        for func in [function, *overloads]:
            kept = [p for p in func.parameters if p.kind is not griffe.ParameterKind.var_keyword]
            names = {p.name for p in kept}
            expanded = [
                griffe.Parameter(
                    field.name,
                    annotation=field.annotation,
                    kind=griffe.ParameterKind.keyword_only,
                    default="...",
                )
                for field in fields
                if field.name not in names
            ]
            func.parameters = griffe.Parameters(*kept, *expanded)


_ROLE = re.compile(r":(?:class|meth|func|attr|exc|data|mod|obj|const):`~?([^`]+)`")


class SphinxRolesToCode(griffe.Extension):
    """Docstrings cross-reference with Sphinx roles (``:class:`Hooks```), which mkdocstrings
    prints as they are: show each as the name in code (``Hooks``) instead."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        self._walk(pkg)

    def _walk(self, obj: griffe.Object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
        for member in list(obj.members.values()):
            if not member.is_alias:
                self._walk(member)  # type: ignore[arg-type]
