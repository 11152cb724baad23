"""The public API against a baseline commit: nothing broken, nothing new unless declared.

    python .ci/public_api.py --against 6ce879f

griffe reads both versions statically (the baseline from ``git archive``, so a fresh clone
works and no worktree is made) and reports its breaking changes: a public name removed, a
parameter removed, renamed, moved or made required, a changed default. Renaming ``_call`` to
``call_`` breaks nothing, so griffe alone would let it pass; the surface check catches it: every
public name (modules, classes and their members, by the path a user imports them from) that
the baseline did not have must be listed in ``.ci/public_api_additions.txt``, with a reason.
A breakage or removal no user can feel (a class that became a msgspec Struct loses its
hand-written ``__init__`` but keeps its signature) is listed, with why, in
``.ci/public_api_accepted.txt``. Exit 1 on an unaccepted breakage, an undeclared new name, or a
listed one that is not new or not broken (the lists only hold what is true).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import griffe

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "routmy_async"
ADDITIONS = ROOT / ".ci" / "public_api_additions.txt"
ACCEPTED = ROOT / ".ci" / "public_api_accepted.txt"


def load_at(ref: str, into: Path) -> griffe.Module:
    """The package as it was at ``ref``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, PACKAGE],
        stdout=subprocess.PIPE,  # git's own complaint (an unknown ref) goes to stderr
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")  # the archive is ours; the filter keeps it inside
    return load_from(into)


def load_from(directory: Path) -> griffe.Module:
    module = griffe.load(
        PACKAGE, search_paths=[directory], try_relative_path=False, resolve_aliases=True
    )
    assert isinstance(module, griffe.Module)
    # A module of the installed copy instead of this one would compare the wrong code.
    assert isinstance(module.filepath, Path), module.filepath
    assert module.filepath.is_relative_to(directory), module.filepath
    return module


def surface(
    obj: griffe.Object | griffe.Alias, path: str, seen: tuple[str, ...] = ()
) -> Iterator[str]:
    """Every public name under ``obj``, by the path a user reaches it through."""
    for name, member in obj.all_members.items():
        if not member.is_public:
            continue
        member_path = f"{path}.{name}"
        yield member_path
        try:
            target = member.final_target if isinstance(member, griffe.Alias) else member
        except griffe.AliasResolutionError:  # defined outside the package: not ours to list
            continue
        inside = target.path == PACKAGE or target.path.startswith(PACKAGE + ".")
        descend = target.is_class or (target.is_module and not member.is_alias)
        if inside and descend and target.path not in seen:
            yield from surface(target, member_path, (*seen, target.path))


def moved_class_breakages(old: griffe.Module, new: griffe.Module) -> Iterator[griffe.Breakage]:
    """The breakages of a public class that moved into a private module and is re-exported
    where it was (``resources/chat.py`` -> ``resources/chat/_completions.py``): griffe skips
    those, because it marks the old path seen before it follows the new alias to its target.
    Compared here member by member (``__init__`` and every method)."""
    compared: set[str] = set()
    for path in surface(old, PACKAGE):
        relative = path.removeprefix(PACKAGE + ".")
        try:
            old_obj, new_obj = old[relative], new[relative]
            target = new_obj.final_target if isinstance(new_obj, griffe.Alias) else None
        except (KeyError, griffe.AliasResolutionError):
            continue
        if old_obj.is_alias or target is None or old_obj.path in compared:
            continue
        if old_obj.is_class and target.is_class:
            compared.add(old_obj.path)
            yield from griffe.find_breaking_changes(old_obj, target)


def user_paths(root: griffe.Module) -> dict[str, set[str]]:
    """Where each object is defined -> the public paths a user reaches it through, so a
    breakage griffe names by its defining module (``routmy_async.resources.chat._stream.
    ChatCompletionStream.__init__``) is matched as ``routmy_async.ChatCompletionStream.__init__``
    however deep the private module sits."""
    reached: dict[str, set[str]] = {}
    for path in surface(root, PACKAGE):
        try:
            target = root[path.removeprefix(PACKAGE + ".")]
            defined = target.final_target.path if isinstance(target, griffe.Alias) else target.path
        except (KeyError, griffe.AliasResolutionError):
            continue
        reached.setdefault(defined, set()).add(path)
    return reached


def declared(listing: Path) -> set[str]:
    """The names a listing declares (``path  # why`` a line)."""
    lines = listing.read_text(encoding="utf-8").splitlines()
    return {line.split("#", 1)[0].strip() for line in lines} - {""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the baseline commit")
    ref = parser.parse_args().against
    with tempfile.TemporaryDirectory() as tmp:
        old = load_at(ref, Path(tmp))
        new = load_from(ROOT)
        breakages = [*griffe.find_breaking_changes(old, new), *moved_class_breakages(old, new)]
        old_names = set(surface(old, PACKAGE))
        new_names = set(surface(new, PACKAGE))
        reached_as = user_paths(new)
    added = new_names - old_names
    removed = old_names - new_names
    additions = declared(ADDITIONS)
    accepted = declared(ACCEPTED)
    broken = {
        path: breakage
        for breakage in breakages
        for path in reached_as.get(breakage.obj.path, {_public_path(breakage.obj.path)})
    }
    problems = [b.explain() for path, b in sorted(broken.items()) if path not in accepted]
    problems += [f"{name}: removed" for name in sorted(removed - accepted)]
    problems += [
        f"{name}: new public name, not in {ADDITIONS.name}" for name in sorted(added - additions)
    ]
    problems += [f"{name}: in {ADDITIONS.name} but not new" for name in sorted(additions - added)]
    problems += [
        f"{name}: in {ACCEPTED.name} but neither removed nor broken"
        for name in sorted(accepted - removed - set(broken))
    ]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(
        f"public API against {ref}: {len(new_names)} names, {len(breakages)} breaking changes, "
        f"{len(added)} new ({len(added & additions)} declared), {len(accepted)} accepted, "
        f"{len(problems)} problems"
    )
    return 1 if problems else 0


def _public_path(path: str) -> str:
    # griffe names a breakage by where the object is defined (routmy_async._hooks.Call);
    # the listings name it as users reach it (routmy_async.Call).
    module, _, rest = path.partition("._")
    if not rest:
        return path
    _, _, inner = rest.partition(".")
    return f"{module}.{inner}" if inner else path


if __name__ == "__main__":
    sys.exit(main())
