"""Printing a benchmark's report: a Markdown page (for ``docs/``) or a rich table (terminal).

Both benchmarks (``poolops bench ops``, ``poolops bench serve``) print the same parts in
the same order: title, how it was made, header lines, a table, the targets judged on the
run, and notes.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path


def command_line(default: str) -> str:
    """The command that made this report: this process's own ``poolops ...`` arguments when run
    from the ``poolops`` entry point (so a page made with ``--model`` or ``--png`` says so), else
    ``default``."""
    if Path(sys.argv[0]).name == "poolops" and len(sys.argv) > 1:
        return "poolops " + shlex.join(sys.argv[1:])
    return default


def print_report(
    *,
    title: str,
    made_by: str,
    columns: Sequence[str],
    right: set[int],
    rows: Sequence[tuple[list[str], bool]],
    header: Sequence[str] = (),
    targets: Sequence[str] = (),
    notes: Sequence[str] = (),
    markdown: bool = False,
    width: int = 180,
) -> None:
    """Print ``rows`` (cells, failed) under ``columns``; ``right`` holds right-aligned columns.

    Markdown: ``# title``, ``made_by``, header lines, the table, then targets and notes as
    lists. Terminal: header lines, a rich table (failed rows red), then ``target:`` and
    ``note:`` lines; ``width`` when stdout is not a terminal.
    """
    if markdown:
        print(f"# {title}\n")
        print(f"Made by `{made_by}`.\n")
        for line in header:
            print(f"{line}  ")
        print()
        print("| " + " | ".join(columns) + " |")
        print("|" + "|".join("---:" if i in right else "---" for i in range(len(columns))) + "|")
        for cells, _ in rows:
            print("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        for heading, lines in (("Targets, judged on this run", targets), ("Notes", notes)):
            if lines:
                print(f"\n{heading}:\n")
                for line in lines:
                    print(f"- {line}")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=width)
    for line in header:
        console.print(line, markup=False, highlight=False)
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="right" if i in right else "left")
    for cells, failed in rows:
        table.add_row(*(escape(c) for c in cells), style="red" if failed else None)
    console.print(table)
    for prefix, lines in (("target", targets), ("note", notes)):
        for line in lines:
            console.print(f"{prefix}: {line}", markup=False, highlight=False)
