"""Atomic file output: write to a temporary file in the target's folder, then rename into place.

Without ``--force`` the final step is a hard link, which fails on an existing name: a job that lost a
race for an output is refused, never overwrites the winner. Moves of many files hold SIGINT/SIGTERM
until they are done, so an interrupt leaves the whole set or none of it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from convae.errors import OutputError, UsageError


def check_writable(path: Path, force: bool) -> None:
    """Refuse an existing output without ``force`` and a missing or unwritable folder."""
    if path.exists() and not force:
        raise OutputError(f"{path} already exists; pass --force to overwrite it")
    if path.is_dir():
        raise OutputError(f"{path} is a directory; give a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable; write the output somewhere else")


def check_not_input(path: Path, inputs: Iterable[Path]) -> None:
    """Refuse an output that is one of the inputs: even ``--force`` replaces old outputs, not what a job reads."""
    if not path.exists():
        return
    for item in inputs:
        with contextlib.suppress(OSError):
            if os.path.samefile(item, path):
                raise UsageError(f"{path} is also an input of this command; write the output somewhere else")


@contextlib.contextmanager
def temp_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it is removed unless the caller renamed it."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise as_output_error(exc, path) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
    except OSError as exc:
        raise as_output_error(exc, path) from exc
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def commit(tmp: Path, path: Path, replace: bool = True) -> None:
    """Flush ``tmp`` to disk and move it onto ``path`` (atomic on POSIX); without ``replace``, a ``path`` that
    appeared meanwhile (another job's) is refused."""
    try:
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            place_new(tmp, path)
    except OSError as exc:
        raise as_output_error(exc, path) from exc


_NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK, errno.EXDEV)


def place_new(src: Path, dst: Path) -> None:
    """Give ``src``'s file the name ``dst`` only if nothing has that name: a hard link (atomic), or where the file
    system has none, a check then a rename. ``src`` keeps its name too; its caller removes it."""
    try:
        os.link(src, dst)
        return
    except FileExistsError:
        raise OutputError(f"{dst} already exists (another job wrote it meanwhile?); pass --force to overwrite it"
                          ) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    if os.path.lexists(dst):
        raise OutputError(f"{dst} already exists (another job wrote it meanwhile?); pass --force to overwrite it")
    os.rename(src, dst)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then act on the first (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.signal(s, lambda n, _frame: got.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if got:
            signal.raise_signal(got[0])


@contextlib.contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """Yield a hidden folder to write a batch of files into, for ``publish`` to move into ``out_dir``.

    The folder sits beside ``out_dir`` when ``out_dir`` does not exist yet (``publish`` then renames
    it into place whole), else inside it. On exit the staging folder is removed, and so are any
    parents this call created if they are left empty: a failed run leaves nothing behind.
    """
    fresh = not os.path.lexists(out_dir)
    home = out_dir.parent if fresh else out_dir
    created = [p for p in (home, *home.parents) if not p.exists()]  # deepest first
    try:
        home.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.convae-" if fresh else ".convae-", suffix=".tmp",
                                      dir=home))
    except OSError as exc:
        remove_empty(created)
        raise as_output_error(exc, out_dir) from exc
    try:
        yield stage
    except OSError as exc:
        raise as_output_error(exc, out_dir) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        remove_empty(created)


def make_parents(path: Path) -> list[Path]:
    """Create ``path``'s missing folders (as ``mkdir -p``); returns those created, deepest first, for
    ``remove_empty`` to take back if the write fails."""
    created = []
    for folder in path.parents:
        if folder.exists():
            break
        created.append(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_empty(created)
        raise as_output_error(exc, path.parent) from exc
    return created


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: what a failed run created, taken back."""
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            return


def publish(stage: Path, out_dir: Path, names: list[str], replace: bool = False) -> None:
    """Flush the staged files to disk once, then move them to the same relative paths under ``out_dir``:
    the whole staging folder in one rename where ``out_dir`` is still missing, else file by file (without
    ``replace``, a name taken meanwhile undoes the files already placed and is refused)."""
    os.sync()
    if stage.parent != out_dir:
        os.chmod(stage, 0o777 & ~_umask())  # a folder as mkdir makes it (mkdtemp's is private)
        try:
            os.rename(stage, out_dir)  # atomic; fails if out_dir appeared meanwhile and is not empty
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                raise as_output_error(exc, out_dir) from exc
    for parent in sorted({os.path.dirname(name) for name in names}):  # each folder once, before any file
        try:
            (out_dir / parent).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise as_output_error(exc, out_dir / parent) from exc
    with signals_held():
        _move_files(stage, out_dir, names, replace)


def _move_files(stage: Path, out_dir: Path, names: list[str], replace: bool) -> None:
    placed: list[Path] = []
    try:
        for name in names:
            if replace:
                os.replace(stage / name, out_dir / name)
            else:
                place_new(stage / name, out_dir / name)
                placed.append(out_dir / name)
    except (OSError, OutputError) as exc:
        for path in placed:  # ours alone: without replace, nothing existing was touched
            path.unlink(missing_ok=True)
        if isinstance(exc, OutputError):
            raise
        raise as_output_error(exc, out_dir / name) from exc


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with temp_path(path) as tmp:
        tmp.write_bytes(data)
        commit(tmp, path)


def as_output_error(exc: OSError, path: Path) -> OutputError:
    """The one-line ``OutputError`` for a failed write of ``path`` (disk full, permissions, ...)."""
    if exc.errno == errno.ENOSPC:
        return OutputError(f"no space left on device while writing {path}; nothing was written")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path}: permission denied")
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")
