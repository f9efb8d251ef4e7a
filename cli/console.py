"""Console output shared by the commands: one-line errors, Rich progress on a terminal, JSON."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

stderr = Console(stderr=True, soft_wrap=True)
stdout = Console()


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    typer.echo(f"convae: warning: {message}", err=True)


warnings.showwarning = _one_line_warning


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``convae: error: message`` on stderr and return the Exit to raise."""
    typer.echo(f"convae: error: {' '.join(str(message).split())}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """Turn library errors into one-line messages and exit codes; never a traceback."""
    from convae.errors import ConvaeError

    try:
        yield
    except ConvaeError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except MemoryError:
        raise fail("out of memory; try a smaller --batch-size") from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise fail(f"{where}{exc.strerror or exc}") from None


def print_json(data: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextlib.contextmanager
def progress(total: int | None, description: str, quiet: bool = False, start: bool = True,
             **fields: Any) -> Iterator[Progress]:
    """A Rich progress bar on stderr, shown only when stderr is a terminal and not ``quiet``.

    With ``start=False`` the caller starts it (``bar.start()``); it is stopped on exit either way.
    """
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    bar = Progress(*columns, console=stderr, disable=quiet or not stderr.is_terminal, transient=False)
    bar.add_task(description, total=total, info=fields.get("info", ""))
    if start:
        bar.start()
    try:
        yield bar
    finally:
        bar.stop()
