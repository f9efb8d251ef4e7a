"""``-`` as a path: one image from stdin, a code file to or from a pipe, one decoded image to stdout.

The codec works on files (it streams, memory-maps and renames atomically), so a pipe end becomes a file in
a private temporary folder: read from stdin before the run, written to stdout only after it succeeded, so a
failed run sends nothing down the pipe.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from convae.cli.console import fail

STDIO = Path("-")


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="convae-pipe-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read_stdin(path: Path, what: str) -> Path:
    """Copy stdin into ``path``; refuse a terminal or an empty pipe (nothing was piped in)."""
    if sys.stdin.isatty():
        raise fail(f"-: reads {what} from stdin, which is a terminal; pipe one in (e.g. `cat x.jpg | ...`)", 2)
    with open(path, "wb") as fh:
        shutil.copyfileobj(sys.stdin.buffer, fh)
    if path.stat().st_size == 0:
        raise fail(f"-: stdin was empty; pipe {what} in", 2)
    return path


def _check_stdout(json_out: bool) -> None:
    """Binary data goes to stdout only where it is redirected, and not mixed with the ``--json`` report."""
    if json_out:
        raise fail("-: stdout carries the data; drop --json (the summary goes to stderr)", 2)
    if sys.stdout.isatty():
        raise fail("-: stdout is a terminal; redirect it (`> out`) or give a file name", 2)


@contextlib.contextmanager
def stdin_inputs(inputs: list[Path]) -> Iterator[list[Path]]:
    """``inputs`` with ``-`` replaced by one image read from stdin (coded under the name ``stdin``)."""
    if STDIO not in inputs:
        yield inputs
        return
    if len(inputs) > 1:
        raise fail("-: reads one image from stdin; give it as the only input", 2)
    with _scratch() as folder:
        yield [_read_stdin(folder / "stdin", "an image")]


@contextlib.contextmanager
def stdin_codes(codes: Path) -> Iterator[Path]:
    """``codes``, or a code file read from stdin for ``-``."""
    if codes != STDIO:
        yield codes
        return
    with _scratch() as folder:
        yield _read_stdin(folder / "stdin.npy", "a code file")


@contextlib.contextmanager
def stdout_codes(out: Path, json_out: bool) -> Iterator[Path]:
    """``out``, or for ``-`` a temporary code file sent to stdout once the run succeeded."""
    if out != STDIO:
        yield out
        return
    _check_stdout(json_out)
    with _scratch() as folder:
        yield folder / "stdout.npy"
        _send(folder / "stdout.npy")


@contextlib.contextmanager
def stdout_image(out_dir: Path, json_out: bool) -> Iterator[Path]:
    """``out_dir``, or for ``-`` a temporary folder whose one decoded image (the caller checks there is one) goes
    to stdout."""
    if out_dir != STDIO:
        yield out_dir
        return
    _check_stdout(json_out)
    with _scratch() as folder:
        yield folder / "out"
        (image,) = [p for p in (folder / "out").rglob("*") if p.is_file()]  # the caller checked: one image
        _send(image)


def _send(path: Path) -> None:
    """Copy ``path`` to stdout; a full disk or a closed pipe is a one-line error naming stdout."""
    try:
        with open(path, "rb") as fh:
            shutil.copyfileobj(fh, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    except OSError as exc:
        raise fail(f"-: cannot write to stdout ({exc.strerror or exc}); what reached it is incomplete", 1) from exc
