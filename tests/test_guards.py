"""The guards that keep the package's boundaries: the SLF001 ratchet, aiohttp's private
internals in ``_http/_aiohttp_compat.py`` only, and Ray's in ``integrations/ray/_ray_compat.py``
only (docs/contributing.md, "Guards")."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "routmy_async"
PYPROJECT = ROOT / "pyproject.toml"
COMPAT = PACKAGE / "_http" / "_aiohttp_compat.py"
RAY_COMPAT = PACKAGE / "integrations" / "ray" / "_ray_compat.py"
# The homes of a third-party library's private internals: SLF001 is off there, and only there.
HOMES = frozenset({COMPAT.relative_to(ROOT).as_posix(), RAY_COMPAT.relative_to(ROOT).as_posix()})

# The private names of our own that aiohttp uses too (in the newest or the lowest version CI
# installs), reached into on our own objects today (``client._request``, ``other._key``, ...):
# the aiohttp check cannot tell those apart, so it skips them; SLF001's exact counts still
# catch a new reach of any of them. A ratchet like the others: a name no module reaches any
# more must leave this set.
OURS_TOO = frozenset({"_key", "_state", "_transport"})

_RATCHET_LINE = re.compile(
    r'^"(?P<path>routmy_async/[^"]+)" = \[[^\]]*"SLF001"[^\]]*\]\s*#\s*ratchet:\s*(?P<count>\d+)'
)
# A per-file ignore that names SLF001 (pyproject.toml writes one a line).
_IGNORE_LINE = re.compile(r'^"(?P<path>routmy_async/[^"]+)" = \[[^\]]*"SLF(?:001)?"')
# The public API of named tuples, underscored only to stay out of the fields' way.
_NAMEDTUPLE_API = frozenset({"_asdict", "_field_defaults", "_fields", "_make", "_replace"})
_REFLECTION = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def _slf001_ratchet() -> dict[str, int]:
    """The per-file SLF001 counts written in pyproject.toml (``# ratchet: N``)."""
    ratchet: dict[str, int] = {}
    for line in PYPROJECT.read_text(encoding="utf-8").splitlines():
        match = _RATCHET_LINE.match(line)
        if match:
            ratchet[match["path"]] = int(match["count"])
    return ratchet


def _slf001_counts() -> Counter[str]:
    """SLF001 findings per package file, with no per-file ignore applied."""
    command = ["ruff", "check", "--isolated", "--select", "SLF001", "--output-format", "json"]
    result = subprocess.run(
        [sys.executable, "-m", *command, "--exit-zero", "routmy_async"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return Counter(
        Path(finding["filename"]).resolve().relative_to(ROOT).as_posix()
        for finding in json.loads(result.stdout)
    )


def test_every_slf001_ignore_of_the_package_has_a_ratchet_count():
    """A package file leaves SLF001 only as a third-party library's home or with a
    ``# ratchet: N``."""
    ignored = {
        match["path"]
        for match in map(_IGNORE_LINE.match, PYPROJECT.read_text(encoding="utf-8").splitlines())
        if match
    }
    assert ignored - HOMES == set(_slf001_ratchet())


def test_slf001_counts_match_the_ratchet_exactly():
    """Each file reaches into private members exactly as often as its ratchet line says: one
    more is a new reach-in, one fewer is a fix whose count must come down."""
    counts = _slf001_counts()
    for home in HOMES:
        del counts[home]
    assert dict(counts) == _slf001_ratchet()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__") and name not in _NAMEDTUPLE_API


def _private_members_defined(root: Path) -> set[str]:
    """Every private member name the classes under ``root`` define: ``self._x = ...``,
    private methods and class attributes, ``__slots__`` entries."""
    names: set[str] = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in {"self", "cls"}
            ):
                names.add(node.attr)
            elif isinstance(node, ast.ClassDef):
                for statement in node.body:
                    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                        names.add(statement.name)
                    elif isinstance(statement, ast.AnnAssign | ast.Assign):
                        targets = (
                            statement.targets
                            if isinstance(statement, ast.Assign)
                            else [statement.target]
                        )
                        names.update(t.id for t in targets if isinstance(t, ast.Name))
                        if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in targets):
                            names.update(
                                c.value
                                for c in ast.walk(statement.value or ast.Constant(None))
                                if isinstance(c, ast.Constant) and isinstance(c.value, str)
                            )
    return {name for name in names if _private(name)}


def _reaches(path: Path) -> list[tuple[int, str]]:
    """``(line, name)`` of every private member this module reads or writes on an object
    other than ``self``/``cls``: ``obj._name`` and ``getattr(obj, "_name")`` alike."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute):
            receiver, name = node.value, node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _REFLECTION
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            receiver, name = node.args[0], node.args[1].value
        else:
            continue
        if _private(name) and not (
            isinstance(receiver, ast.Name) and receiver.id in {"self", "cls"}
        ):
            found.append((node.lineno, name))
    return found


def test_the_reach_finder_sees_the_compat_modules_reaches():
    """The finder below is trusted only because it finds what ``_aiohttp_compat`` does, in
    both spellings (``getattr(connector, "_acquired")``, ``internals._conns``)."""
    names = {name for _, name in _reaches(COMPAT)}
    assert {"_acquired", "_conns", "_factory", "_close", "_loop"} <= names


def test_no_module_but_the_compat_one_touches_aiohttp_private_members():
    """A private member name of aiohttp (as installed: the lowest and the newest supported
    versions both run this) read or written anywhere but ``_aiohttp_compat.py`` fails."""
    aiohttp_names = _private_members_defined(Path(aiohttp.__file__).parent) - OURS_TOO
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != COMPAT
        for line, name in _reaches(path)
        if name in aiohttp_names
    ]
    assert offenders == [], "move these into routmy_async/_http/_aiohttp_compat.py"


def test_no_module_but_the_ray_home_touches_rays_private_members():
    """Ray's internal key-value store (``ray.experimental.internal_kv._internal_kv_*``, which
    Ray's own libraries use and no public API replaces) is reached only from its home."""
    assert {"_internal_kv_get", "_internal_kv_put"} <= {n for _, n in _reaches(RAY_COMPAT)}
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != RAY_COMPAT
        for line, name in _reaches(path)
        if name.startswith("_internal_kv")
    ]
    assert offenders == [], "move these into routmy_async/integrations/ray/_ray_compat.py"


def test_names_skipped_as_ours_are_still_ours_and_still_reached():
    """``OURS_TOO`` only shrinks: each name is one our classes define and some module still
    reaches into, or it must go."""
    ours = _private_members_defined(PACKAGE)
    reached = {
        name for path in PACKAGE.rglob("*.py") if path != COMPAT for _, name in _reaches(path)
    }
    assert OURS_TOO <= ours
    assert OURS_TOO <= reached
