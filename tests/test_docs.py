"""Every public name has a docstring and an entry in the reference of the documentation site.

The reference is read from the built site's ``objects.inv`` (a Sphinx inventory: four header
lines, then zlib-compressed ``name domain:role priority uri dispname`` lines), not from its
HTML. The site is the one ``ROUTMY_DOCS_SITE`` names (CI builds it once, before the tests),
else one built here with ``python -m mkdocs build --strict``; without mkdocs the site tests
skip. The snippets of README.md and docs/ are run by ``conftest.py`` at the root (Sybil).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
import typing
import zlib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_MODULES = [
    "routmy_async",
    "routmy_async.types",
    "routmy_async.testing",
    "routmy_async.instrumentation",
    "routmy_async.integrations.ray",
]


def _public_names() -> list[tuple[str, str]]:
    return [
        (module, name)
        for module in PUBLIC_MODULES
        for name in importlib.import_module(module).__all__
    ]


def read_inventory(data: bytes) -> dict[str, str]:
    """The names of a Sphinx ``objects.inv`` (version 2), each with its ``domain:role``."""
    lines = data.split(b"\n", 4)
    assert lines[0] == b"# Sphinx inventory version 2", lines[0]
    assert b"zlib" in lines[3], lines[3]
    entries: dict[str, str] = {}
    for line in zlib.decompress(lines[4]).decode().splitlines():
        name, role, _rest = line.split(" ", 2)
        entries[name] = role
    return entries


def test_readme_fits_on_a_few_screens_and_its_links_resolve():
    """README.md stays the front door (250 lines at most), and its relative links exist."""
    import re

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert targets, "no relative link found: the check checks nothing"
    assert [t for t in targets if not (ROOT / t).exists()] == []


def test_read_inventory():
    """The inventory reader returns each name with its role, from the compressed part."""
    body = b"routmy_async.AsyncRoutmy py:class 1 reference/client/#$ -\n"
    header = (
        b"# Sphinx inventory version 2\n# Project: x\n# Version: 0\n"
        b"# The remainder of this file is compressed using zlib.\n"
    )
    assert read_inventory(header + zlib.compress(body)) == {"routmy_async.AsyncRoutmy": "py:class"}


@pytest.mark.parametrize(("module", "name"), _public_names())
def test_public_name_has_a_docstring(module, name):
    """A public class or function documents itself (its own docstring, not a base class's)."""
    obj = getattr(importlib.import_module(module), name)
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
    elif inspect.isroutine(obj):
        doc = obj.__doc__
    else:
        pytest.skip("a constant or alias: its docstring is checked through griffe below")
    assert (doc or "").strip(), f"{module}.{name} has no docstring"


def test_constants_and_aliases_have_docstrings():
    """Public constants and type aliases carry an attribute docstring (read by griffe)."""
    griffe = pytest.importorskip("griffe", reason="griffe comes with the docs extra")
    package = griffe.load("routmy_async", search_paths=[str(ROOT)], resolve_aliases=True)
    missing = []
    for module, name in _public_names():
        member = package.modules_collection.get_member(module).get_member(name)
        if not member.docstring:
            missing.append(f"{module}.{name}")
    assert missing == []


@pytest.fixture(scope="module")
def site() -> Path:
    """The built documentation site: ROUTMY_DOCS_SITE, or one built now into a temp dir."""
    given = os.environ.get("ROUTMY_DOCS_SITE")
    if given:
        path = Path(given)
        assert (path / "objects.inv").is_file(), f"ROUTMY_DOCS_SITE={given} has no objects.inv"
        return path
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]' (CI installs it)")
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="routmy-site-"))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    return out


@pytest.mark.timeout(320)
def test_every_public_name_is_in_the_reference(site: Path):
    """Each name of a public __all__ has an entry in objects.inv under its public path."""
    entries = read_inventory((site / "objects.inv").read_bytes())
    missing = [f"{m}.{n}" for m, n in _public_names() if f"{m}.{n}" not in entries]
    assert missing == []


def _overloads(function: Any) -> list[Any]:
    """The ``@overload``s of a function (typing records them from Python 3.11 on)."""
    get_overloads = getattr(typing, "get_overloads", None)
    return list(get_overloads(function)) if get_overloads else []


def _unpacked_typed_dicts() -> dict[str, Any]:
    """Public methods taking ``**kwargs: Unpack[TD]`` (or whose overloads do), with TD."""
    from routmy_async._client import AsyncRoutmy

    classes: dict[type, str] = {AsyncRoutmy: "routmy_async.AsyncRoutmy"}  # its public path
    for sub in ("chat", "responses", "models", "embeddings", "images"):
        module = importlib.import_module(f"routmy_async.resources.{sub}")
        for n in module.__all__:
            if inspect.isclass(value := getattr(module, n)):
                classes[value] = f"{module.__name__}.{n}"
    found: dict[str, Any] = {}
    for cls, path in classes.items():
        for name, function in vars(cls).items():
            if name.startswith("_") or not inspect.isfunction(function):
                continue
            for overload in [function, *_overloads(function)]:
                for parameter in inspect.signature(overload).parameters.values():
                    annotation = str(parameter.annotation)  # a string: postponed annotations
                    if parameter.kind is parameter.VAR_KEYWORD and annotation.startswith("Unpack["):
                        td_name = annotation.removeprefix("Unpack[").removesuffix("]")
                        found[f"{path}.{name}"] = _typed_dict(overload, td_name)
    return found


def _typed_dict(function: Any, name: str) -> Any:
    """The TypedDict ``name`` as the function's module sees it (imported there or in _params)."""
    for namespace in (
        function.__globals__,
        vars(importlib.import_module("routmy_async._params")),
        vars(importlib.import_module("routmy_async.resources.responses._params")),
    ):
        if name in namespace:
            return namespace[name]
    raise AssertionError(f"{function.__qualname__}: cannot find {name}")


def test_unpacked_keywords_are_listed_field_by_field(site: Path):
    """A method's ``**params: Unpack[TD]`` is shown as TD's fields, never as ``**params``."""
    methods = _unpacked_typed_dicts()
    assert len(methods) >= 10, methods  # get, post, request, embeddings.create...
    html = {page: page.read_text() for page in site.rglob("*.html")}
    reference = {p: t for p, t in html.items() if p.relative_to(site).parts[0] == "reference"}
    bare = [str(p.relative_to(site)) for p, t in reference.items() if "**params" in t]
    bare += [str(p.relative_to(site)) for p, t in reference.items() if "**options" in t]
    assert bare == []
    for method, typed_dict in methods.items():
        anchor = f'id="{method}"'
        pages = [text for text in html.values() if anchor in text]
        assert pages, f"{method} is not in the reference"
        section = pages[0].split(anchor, 1)[1].split('class="doc doc-heading"', 2)[1]
        fields = typed_dict.__required_keys__ | typed_dict.__optional_keys__
        missing = sorted(f for f in fields if f not in section)
        assert missing == [], f"{method}: {missing}"


def test_no_reference_page_prints_a_sphinx_role(site: Path):
    """Docstrings cross-reference with Sphinx roles; the site shows names, never the markup."""
    found = []
    for page in sorted((site / "reference").rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        for role in (":class:", ":meth:", ":func:", ":attr:", ":exc:"):
            if role in text:
                found.append(f"{page.relative_to(site)}: {role}")
    assert not found, found
