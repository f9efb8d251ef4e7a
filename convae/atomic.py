"""Atomic file output: write to a temporary file in the target's folder, then rename into place."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from convae.errors import OutputError


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
        raise OutputError(f"output folder {parent} is not writable; choose another --out")


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


def commit(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to disk and rename it onto ``path`` (atomic on POSIX)."""
    try:
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise as_output_error(exc, path) from exc


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


def publish(stage: Path, out_dir: Path, names: list[str]) -> None:
    """Flush the staged files to disk once, then move them to the same relative paths under ``out_dir``:
    the whole staging folder in one rename where ``out_dir`` is still missing, else file by file."""
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
    for name in names:
        try:
            os.replace(stage / name, out_dir / name)
        except OSError as exc:
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
