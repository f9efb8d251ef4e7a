"""Staged output folders: renamed into place whole when new, filled file by file when they exist, gone on failure;
an output that appeared meanwhile is never overwritten without ``replace``; moves are not cut by a signal."""

from __future__ import annotations

import os
import signal

import pytest

from convae.atomic import check_not_input, commit, publish, signals_held, staged_folder, temp_path
from convae.errors import OutputError, UsageError
from tests.codec_util import snapshot


def test_a_folder_that_appears_while_staging_gets_the_files_one_by_one(tmp_path):
    """publish renames the staging folder into place whole only while the output folder is missing."""
    out = tmp_path / "deep" / "out"
    with staged_folder(out) as stage:
        assert stage.parent == out.parent and not out.exists()
        (stage / "a.png").write_bytes(b"a")
        out.mkdir()
        (out / "mine.txt").write_bytes(b"kept")  # someone else's file, made meanwhile
        publish(stage, out, ["a.png"])
    assert snapshot(tmp_path) == {"deep/out/a.png": b"a", "deep/out/mine.txt": b"kept"}


def test_a_failed_staging_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(RuntimeError), staged_folder(out) as stage:
        (stage / "a.png").write_bytes(b"a")
        raise RuntimeError("decoding failed")
    assert list(tmp_path.iterdir()) == []


def test_commit_without_replace_refuses_a_file_that_appeared_meanwhile(tmp_path):
    out = tmp_path / "o.npy"
    with temp_path(out) as tmp:
        tmp.write_bytes(b"mine")
        out.write_bytes(b"another job's")  # the race: written after our start-up check
        with pytest.raises(OutputError, match="already exists"):
            commit(tmp, out, replace=False)
    assert snapshot(tmp_path) == {"o.npy": b"another job's"}  # and no temp file left
    with temp_path(out) as tmp:
        tmp.write_bytes(b"mine")
        commit(tmp, out, replace=True)
    assert snapshot(tmp_path) == {"o.npy": b"mine"}


def test_publish_into_a_folder_undoes_its_files_when_a_name_was_taken_meanwhile(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with staged_folder(out) as stage:
        for name in ("a.png", "b.png", "c.png"):
            (stage / name).write_bytes(name.encode())
        (out / "b.png").write_bytes(b"another job's")
        with pytest.raises(OutputError, match=r"b\.png already exists"):
            publish(stage, out, ["a.png", "b.png", "c.png"])
    assert snapshot(tmp_path) == {"out/b.png": b"another job's"}  # a.png taken back, c.png never placed


def test_a_signal_during_the_moves_waits_until_they_are_done(tmp_path):
    with pytest.raises(KeyboardInterrupt), signals_held():
        for i in range(50):
            if i == 10:
                signal.raise_signal(signal.SIGINT)  # to this thread, at once (os.kill may pick a torch thread)
            (tmp_path / f"{i}.txt").write_bytes(b"x")
    assert len(list(tmp_path.iterdir())) == 50
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_output_that_is_one_of_the_inputs_is_refused(tmp_path):
    src = tmp_path / "img.npy"
    src.write_bytes(b"an input")
    os.link(src, tmp_path / "same.npy")
    for out in (src, tmp_path / "same.npy", tmp_path / "." / "img.npy"):
        with pytest.raises(UsageError, match="also an input"):
            check_not_input(out, [tmp_path / "x.png", src])
    check_not_input(tmp_path / "new.npy", [src])
    check_not_input(tmp_path / "other.npy", [tmp_path / "missing.png"])
