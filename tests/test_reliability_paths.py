"""Writes only where asked: hostile manifest paths, case-folding clashes, symlinks in inputs and outputs.

The policy (docs/FORMAT.md, "Where files go"): decompress writes only inside the output folder it is
given (itself possibly a symlink); it refuses a symlinked folder inside it rather than write through
it; names are made distinct case-folded; compress follows symlinked files but not symlinked folders
inside an input folder (so loops cannot hang it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convae.images import find_images, output_names
from tests.codec_util import invoke, ok, one_line_error, read_manifest, resign, snapshot
from tests.conftest import make_images, write_pngs


@pytest.fixture
def codes(runner, tiny_model, tmp_path) -> Path:
    """Three 28x28 images img0000..2.png, coded by the tiny model."""
    write_pngs(tmp_path / "src", make_images(3, seed=1))
    npy = tmp_path / "c.npy"
    ok(invoke(runner, "compress", tmp_path / "src", npy, "--model", tiny_model, "--quiet"))
    return npy


def _with_first_path(npy: Path, path: str) -> Path:
    """A re-signed copy of ``npy`` whose first image is named ``path``."""
    doc = read_manifest(npy)
    doc["images"]["paths"] = [path, "img0001.png", "img0002.png"]
    out = npy.with_name(f"p{abs(hash(path))}.npy")
    shutil.copy(npy, out)
    resign(out, doc)
    return out


def _outside(tmp_path: Path, out: Path) -> dict[str, bytes]:
    """Every file under ``tmp_path`` except inside ``out``, the code files and the sources."""
    return {k: v for k, v in snapshot(tmp_path).items()
            if not k.startswith((f"{out.name}/", "src/")) and not k.endswith(".npy")}


@pytest.mark.parametrize(("path", "refused"), [
    ("a\x00b.png", "bad image path"), ("/etc/passwd", "bad image path"), ("a/../../b.png", "bad image path"),
    ("x" * 300 + ".png", "File name too long"), ("d/" * 2100 + "x.png", "bad image path"),
    ("a\nb.png", None), ("..\\..\\x.png", None), ("caf\udce9.png", None), (" .png", None), ("-rf.png", None),
])
def test_hostile_manifest_paths_stay_inside_the_output(runner, tiny_model, tmp_path, codes, path, refused):
    """Each path is refused in one line, or written under the output folder and nowhere else."""
    npy, out = _with_first_path(codes, path), tmp_path / "out"
    before = _outside(tmp_path, out)
    result = invoke(runner, "decompress", npy, out, "--model", tiny_model, "--quiet")
    if refused:
        assert refused in one_line_error(result, 1)
        assert not out.exists()
    else:
        ok(result)
        assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(
            [path, "img0001.png", "img0002.png"])
    assert _outside(tmp_path, out) == before


def test_a_symlinked_folder_inside_the_output_is_refused(runner, tiny_model, tmp_path, codes):
    npy, out, elsewhere = _with_first_path(codes, "sub/a.png"), tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)
    err = one_line_error(invoke(runner, "decompress", npy, out, "--model", tiny_model, "--force"), 1, out / "sub")
    assert "symbolic link" in err
    assert list(elsewhere.iterdir()) == [] and sorted(os.listdir(out)) == ["sub"]


def test_an_output_folder_that_is_a_symlink_gets_the_files(runner, tiny_model, tmp_path, codes):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    ok(invoke(runner, "decompress", codes, tmp_path / "link", "--model", tiny_model, "--quiet"))
    assert sorted(os.listdir(tmp_path / "real")) == ["img0000.png", "img0001.png", "img0002.png"]
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    one_line_error(invoke(runner, "decompress", codes, tmp_path / "dangling", "--model", tiny_model), 1)
    assert not (tmp_path / "nowhere").exists()


def test_case_folding_clashes_get_distinct_names(runner, tiny_model, tmp_path, codes):
    """``A.png`` and ``a.png`` would be one file on a case-insensitive disk: the second is renamed."""
    doc = read_manifest(codes)
    doc["images"]["paths"] = ["A.png", "a.png", "a.PNG"]
    resign(codes, doc)
    ok(invoke(runner, "decompress", codes, tmp_path / "out", "--model", tiny_model, "--quiet"))
    assert sorted(os.listdir(tmp_path / "out")) == ["A.png", "a.PNG.1.png", "a.png.png"]


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(st.lists(st.builds(lambda d, n, s: d + n + s, st.sampled_from(["", "d/", "D/"]),
                          st.sampled_from(["a", "A", "a.png", "b", "B.jpg"]),
                          st.sampled_from(["", ".png", ".PNG", ".jpg", ".tif"])), unique=True, max_size=12))
def test_output_names_are_distinct_case_folded(rels):
    names = output_names(rels)
    assert len({n.casefold() for n in names}) == len(rels)
    assert all(n.lower().endswith(".png") for n in names)
    for i, r in enumerate(rels):  # a .png input keeps its name unless an earlier one has it case-folded
        if r.endswith(".png") and not any(x.casefold() == r.casefold() for x in rels[:i]):
            assert names[i] == r


def test_input_symlinks_files_followed_folders_and_loops_not(tmp_path):
    src, ext = tmp_path / "src", tmp_path / "ext"
    write_pngs(src, make_images(1, seed=1))
    write_pngs(ext, make_images(1, seed=2), prefix="e")
    (src / "file-link.png").symlink_to(ext / "e0000.png")
    (src / "folder-link").symlink_to(ext)
    (src / "loop").symlink_to(src)
    (src / "dangling.png").symlink_to(tmp_path / "nothing.png")
    root, files = find_images([src])
    assert [f.relative_to(root).as_posix() for f in files] == ["file-link.png", "img0000.png"]
    root, files = find_images([src, src / "folder-link"])  # a linked folder named on the command line is read
    assert [f.relative_to(root).as_posix() for f in files] == ["file-link.png", "folder-link/e0000.png", "img0000.png"]


def test_an_output_inside_the_input_folder_is_not_read_back(runner, tiny_model, tmp_path, codes):
    src = tmp_path / "src"
    ok(invoke(runner, "compress", src, src / "c.npy", "--model", tiny_model, "--quiet"))
    before = snapshot(src)
    ok(invoke(runner, "compress", src, src / "c.npy", "--model", tiny_model, "--quiet", "--force"))
    assert snapshot(src) == before  # the same three images, the same bytes
    one_line_error(invoke(runner, "decompress", src / "c.npy", src, "--model", tiny_model), 1, "already exists")
    assert snapshot(src) == before
