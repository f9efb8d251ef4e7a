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
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

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


def print_json(*objects: Any) -> None:
    """Machine-readable output on stdout: JSON Lines, each object on one line (loops can append to a file)."""
    sys.stdout.write("".join(json.dumps(obj, default=str) + "\n" for obj in objects))


class RateColumn(ProgressColumn):
    """Items per second over Rich's recent updates; blank until there are two (the first batch's time
    includes the model's loading, which would understate the rate)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} {self.unit}/s" if speed else "", style="progress.data.speed")


@contextlib.contextmanager
def progress(total: int | None, description: str, quiet: bool = False, start: bool = True, unit: str | None = None,
             **fields: Any) -> Iterator[Progress]:
    """A Rich progress bar on stderr, shown only when stderr is a terminal and not ``quiet``.

    Columns: done/total, ``unit``/s (when ``unit`` is given), the ``info`` field, elapsed time and
    the time left. With ``start=False`` the caller starts it (``bar.start()``), once it knows the
    total; it is stopped on exit either way.
    """
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               *([RateColumn(unit)] if unit else []), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    bar = Progress(*columns, console=stderr, disable=quiet or not stderr.is_terminal, transient=False)
    bar.add_task(description, total=total, info=fields.get("info", ""))
    if start:
        bar.start()
    try:
        yield bar
    finally:
        bar.stop()
