"""mkdocs hooks: the benchmark plots, the changelog and the CLI help, from where they live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    """Add every ``benchmarks/*.png`` as ``benchmarks/NAME.png`` of the site."""
    for png in sorted((ROOT / "benchmarks").glob("*.png")):
        files.append(
            File(
                f"benchmarks/{png.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


def _cli_help() -> str:
    """The ``--help`` of ``routmy`` and of each of its commands, from the parser itself."""
    import argparse
    import os

    from routmy_async._cli import _parser

    os.environ.setdefault("COLUMNS", "96")  # argparse wraps to the terminal's width
    parser = _parser()
    parts = [f"## `routmy`\n\n```text\n{parser.format_help()}```\n"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                parts.append(f"## `routmy {name}`\n\n```text\n{sub.format_help()}```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Fill ``<!-- cli-help -->`` with the command line's help, so the page cannot drift."""
    if "<!-- changelog -->" in markdown:  # CHANGELOG.md, its links made relative to docs/
        text = (ROOT / "CHANGELOG.md").read_text().split("\n", 1)[1]
        markdown = markdown.replace("<!-- changelog -->", text.replace("](docs/", "]("))
    if "<!-- cli-help -->" in markdown:
        markdown = markdown.replace("<!-- cli-help -->", _cli_help())
    return markdown
