"""The public API against a baseline commit: nothing broken, nothing new unless declared.

    python .ci/public_api.py --against 6ce879f

griffe reads both versions statically (the baseline from ``git archive``, so a fresh clone
works and no worktree is made) and reports its breaking changes: a public name removed, a
parameter removed, renamed, moved or made required, a changed default. Renaming ``_call`` to
``call_`` breaks nothing, so griffe alone would let it pass; the surface check catches it: every
public name (modules, classes and their members, by the path a user imports them from) that
the baseline did not have must be listed in ``.ci/public_api_additions.txt``, with a reason.
Exit 1 on a breakage, an undeclared new name, or a declared one that is not new (the list only
holds what is really added).
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


def declared_additions() -> set[str]:
    """The names ``.ci/public_api_additions.txt`` declares new (``path  # why`` a line)."""
    lines = ADDITIONS.read_text(encoding="utf-8").splitlines()
    return {line.split("#", 1)[0].strip() for line in lines} - {""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the baseline commit")
    ref = parser.parse_args().against
    with tempfile.TemporaryDirectory() as tmp:
        old = load_at(ref, Path(tmp))
        new = load_from(ROOT)
        breakages = list(griffe.find_breaking_changes(old, new))
        old_names = set(surface(old, PACKAGE))
        new_names = set(surface(new, PACKAGE))
    added = new_names - old_names
    declared = declared_additions()
    problems = [breakage.explain() for breakage in breakages]
    problems += [f"{name}: removed" for name in sorted(old_names - new_names)]
    problems += [
        f"{name}: new public name, not in {ADDITIONS.name}" for name in sorted(added - declared)
    ]
    problems += [f"{name}: in {ADDITIONS.name} but not new" for name in sorted(declared - added)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(
        f"public API against {ref}: {len(new_names)} names, {len(breakages)} breaking changes, "
        f"{len(added)} new ({len(added & declared)} declared), {len(problems)} problems"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
