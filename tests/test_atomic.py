"""Staged output folders: renamed into place whole when new, filled file by file when they exist, gone on failure."""

from __future__ import annotations

import pytest

from convae.atomic import publish, staged_folder
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
