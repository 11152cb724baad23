"""Run every Python code block of README.md and docs/ as a test, with Sybil.

Each Markdown file is one Sybil document: its blocks run in order, in one namespace, on one
event loop, against a MockRoutmy on 127.0.0.1 that the document's setup starts (with
``ROUTMY_BASE_URL`` and ``ROUTMY_API_KEY`` pointing at it, so ``AsyncRoutmy()`` reaches it) in
a temporary working directory holding the files the snippets name (``photo.jpg``,
``requests.jsonl``). The namespace starts with ``client``, an ``AsyncRoutmy()`` the teardown
closes.

Snippets use top-level ``await`` (as in ``python -m asyncio``): a block is compiled with
``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT`` and, when that makes it a coroutine, run to completion on
the document's loop. A block whose fence has a ``title="Needs ..."`` (a real key, a Ray
cluster) is compiled and its names checked, never run. See docs/contributing.md.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import importlib
import inspect
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

from sybil import Example, Region, Sybil
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

from routmy_async import AsyncRoutmy
from routmy_async.testing import MockRoutmy, png_bytes

_pages = itertools.count()
_INFO = re.compile(r'python(?:[ \t]+title="(?P<title>[^"\n]*)")?[ \t]*$\n', re.MULTILINE)


def _names_check(source: str, namespace: dict[str, Any], where: str) -> None:
    """Compile a snippet that cannot run here, and check the names it uses exist.

    Every name read must be bound in the snippet, earlier on the page, or a builtin, and every
    name imported from ``routmy_async`` must exist there.
    """
    tree = ast.parse(source, where)
    bound = set(namespace) | set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
            if not isinstance(node, ast.ClassDef):
                args = node.args
                for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                    bound.add(arg.arg)
                bound.update(a.arg for a in (args.vararg, args.kwarg) if a is not None)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bound.add((alias.asname or alias.name).split(".")[0])
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("routmy_async"):
                module = importlib.import_module(node.module or "")
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{where}: {node.module}.{alias.name}"
        elif isinstance(node, ast.comprehension | ast.For | ast.AsyncFor | ast.With):
            pass  # their targets are Name(Store) nodes, seen above
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    unknown = sorted(
        {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in bound}
    )
    assert not unknown, f"{where}: undefined names {unknown}"
    compile(tree, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _evaluate(example: Example) -> None:
    source = example.parsed
    where = f"{example.path}:{example.line}"
    # The page's module: what a snippet defines has a real module (Pydantic resolves names
    # through sys.modules[cls.__module__]).
    namespace = example.namespace["__page__"].__dict__
    if (example.region.lexemes.get("title") or "").startswith("Needs"):
        _names_check(source, namespace, where)
        return
    # Line numbers in tracebacks point into the Markdown file.
    code = compile(
        "\n" * (example.line) + source, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    if code.co_flags & inspect.CO_COROUTINE:
        namespace["__loop__"].run_until_complete(eval(code, namespace))
    else:
        exec(code, namespace)


def _parse(document: Any) -> Any:
    lexer = RawFencedCodeBlockLexer(info_pattern=_INFO)
    for region in lexer(document):
        yield Region(
            region.start,
            region.end,
            parsed=region.lexemes["source"],
            evaluator=_evaluate,
            lexemes=region.lexemes,
        )


def _setup(namespace: dict[str, Any]) -> None:
    loop = asyncio.new_event_loop()
    mock = loop.run_until_complete(MockRoutmy().start())
    saved = {name: os.environ.get(name) for name in ("ROUTMY_BASE_URL", "ROUTMY_API_KEY")}
    os.environ["ROUTMY_BASE_URL"] = mock.base_url
    os.environ["ROUTMY_API_KEY"] = mock.api_key
    cwd = os.getcwd()
    workdir = tempfile.mkdtemp(prefix="routmy-docs-")
    Path(workdir, "photo.jpg").write_bytes(png_bytes())
    body = {"model": "provider/model-id", "messages": [{"role": "user", "content": "hi"}]}
    Path(workdir, "requests.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"q{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": body,
                }
            )
            + "\n"
            for i in range(3)
        )
    )
    os.chdir(workdir)
    page = types.ModuleType(f"routmy_docs_page_{next(_pages)}")
    sys.modules[page.__name__] = page
    page.__dict__.update(client=AsyncRoutmy(), __loop__=loop)
    namespace.update(__page__=page, __loop__=loop, __mock__=mock, __saved__=(saved, cwd, workdir))


def _teardown(namespace: dict[str, Any]) -> None:
    loop: asyncio.AbstractEventLoop = namespace["__loop__"]
    saved, cwd, workdir = namespace["__saved__"]
    page = namespace["__page__"]
    try:
        for value in list(page.__dict__.values()):
            if isinstance(value, AsyncRoutmy):
                loop.run_until_complete(value.close())
        loop.run_until_complete(namespace["__mock__"].close())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        sys.modules.pop(page.__name__, None)
        page.__dict__.clear()
        namespace.clear()
        loop.close()
        os.chdir(cwd)
        shutil.rmtree(workdir, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


pytest_collect_file = Sybil(
    parsers=[_parse],
    patterns=["README.md", "docs/*.md", "docs/**/*.md"],
    setup=_setup,
    teardown=_teardown,
).pytest()
