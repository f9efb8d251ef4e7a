"""`compress --shard K/N` + `convae merge`: shards join into the file one process writes (byte for byte when
the shards are cut at chunk boundaries, which `shard_slice` does once every shard gets a whole chunk)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convae.codec.manifest import CHUNK
from convae.codec.shards import shard_slice
from tests.codec_util import convae_script, gray, invoke, mode_images, ok, one_line_error, read_manifest, save, snapshot
from tests.conftest import make_images, write_pngs


@pytest.fixture
def job(tmp_path) -> Path:
    """A folder of 25 images: mixed sizes and modes, nested."""
    src = tmp_path / "in"
    write_pngs(src / "a", make_images(10, seed=11))
    write_pngs(src / "b" / "c", make_images(6, seed=12))
    mode_images(src / "modes")
    save(Image.fromarray(gray(33, 50)), src / "z.png")
    return src


@pytest.fixture
def big_job(tmp_path) -> Path:
    """3 * 64 + 10 = 202 small images: runs of three sizes, then modes with alpha, in chunks that cross folders."""
    src = tmp_path / "big"
    write_pngs(src / "a", make_images(120, size=16, seed=14))
    write_pngs(src / "b", make_images(70, size=20, seed=15))
    mode_images(src / "modes", 13, 21)
    write_pngs(src / "z", make_images(4, seed=16))
    return src


def _compress_shards(runner, src: Path, out: Path, model: Path, n: int, *extra: str) -> list[Path]:
    parts = []
    for k in range(1, n + 1):
        part = out / f"part-{k}.npy"
        ok(invoke(runner, "compress", src, part, "--model", model, "--shard", f"{k}/{n}", "--quiet", "--gray", *extra))
        parts.append(part)
    return parts


def _manifest(codes: Path) -> dict:
    return read_manifest(codes)


def _single_and_shards(runner, src: Path, out: Path, model: Path, counts: list[int], *extra: str):
    """`src` compressed whole into OUT/single.npy and in len(counts) shards, checking each shard's image count."""
    single = out / "single.npy"
    ok(invoke(runner, "compress", src, single, "--model", model, "--quiet", "--gray", *extra))
    parts = _compress_shards(runner, src, out, model, len(counts), *extra)
    assert [_manifest(p)["images"]["count"] for p in parts] == counts
    return single, parts


@pytest.mark.parametrize(("count", "n"), [(1, 1), (25, 3), (191, 3), (192, 3), (202, 3), (10_000, 7), (640, 10)])
def test_shard_slices_cover_the_job_and_cut_at_chunks(count, n):
    slices = [shard_slice(count, (k, n)) for k in range(1, n + 1)]
    assert [s.start for s in slices] == [0, *[s.stop for s in slices[:-1]]] and slices[-1].stop == count
    assert all(s.stop > s.start for s in slices)
    if count >= CHUNK * n:
        assert all(s.start % CHUNK == 0 for s in slices)


@pytest.mark.parametrize("extra", [(), ("--raw",)])
def test_merged_shards_decode_as_single_run(runner, tiny_model, tmp_path, job, extra):
    """25 images in 8/8/9 (too few to cut at chunks): the merged chunks are the shards', and decode the same."""
    if extra:  # --raw keeps no transparency: a job of opaque images, one size, so the codes are (N, C, h, w)
        shutil.rmtree(job)
        write_pngs(job, make_images(25, seed=13))
    single, parts = _single_and_shards(runner, job, tmp_path, tiny_model, [8, 8, 9], *extra)
    merged = tmp_path / "merged.npy"
    r = invoke(runner, "merge", parts[2], parts[0], parts[1], merged, "--json")  # any order
    ok(r)
    assert json.loads(r.stdout)["images"] == 25
    chunks = [c for p in parts for c in _manifest(p)["images"]["chunks"]]
    assert _manifest(merged)["images"]["chunks"] == chunks
    if extra:  # raw chunks are the symbols back to back: the codes are the same, only the chunk list differs
        same = [np.load(f, allow_pickle=False)["codes"] for f in (merged, single)]
        assert np.array_equal(*same) and same[0].dtype == same[1].dtype
    ok(invoke(runner, "decompress", single, tmp_path / "r1", "--model", tiny_model, "--quiet"))
    ok(invoke(runner, "decompress", merged, tmp_path / "r2", "--model", tiny_model, "--quiet"))
    assert snapshot(tmp_path / "r1") == snapshot(tmp_path / "r2") and len(snapshot(tmp_path / "r1")) == 25


@pytest.mark.parametrize("extra", [(), ("--raw",)])
def test_chunk_aligned_shards_merge_byte_identical(runner, tiny_model, tmp_path, big_job, extra):
    if extra:  # --raw keeps no transparency
        shutil.rmtree(big_job / "modes")
        write_pngs(big_job / "modes", make_images(8, size=12, seed=17))
    single, parts = _single_and_shards(runner, big_job, tmp_path, tiny_model, [64, 64, 74], *extra)
    merged = tmp_path / "merged.npy"
    ok(invoke(runner, "merge", *parts, merged, "--quiet"))
    assert merged.read_bytes() == single.read_bytes()
    images = _manifest(single)["images"]
    assert [c[0] for c in images["chunks"]] == [64, 56, 8, 62, 2, 6, 4]  # sizes change at 120, 190, 198; 64k cuts
    ok(invoke(runner, "decompress", merged, tmp_path / "r", "--model", tiny_model, "--quiet"))
    assert len(snapshot(tmp_path / "r")) == 202


def test_merge_refuses_incomplete_or_foreign_shards(runner, tiny_model, tmp_path, job):
    parts = _compress_shards(runner, job, tmp_path, tiny_model, 3)
    out = tmp_path / "m.npy"
    before = snapshot(tmp_path)
    assert "[2]" in one_line_error(invoke(runner, "merge", parts[0], parts[2], out), 1)
    one_line_error(invoke(runner, "merge", parts[0], parts[0], parts[1], parts[2], out), 1, "given twice")
    other = tmp_path / "other"
    write_pngs(other, make_images(5, seed=3))
    foreign = tmp_path / "foreign-2.npy"
    ok(invoke(runner, "compress", other, foreign, "--model", tiny_model, "--shard", "2/3", "--quiet", "--gray"))
    one_line_error(invoke(runner, "merge", parts[0], foreign, parts[2], out), 1, "another job")
    whole = tmp_path / "whole.npy"
    ok(invoke(runner, "compress", job, whole, "--model", tiny_model, "--quiet", "--gray"))
    one_line_error(invoke(runner, "merge", whole, parts[1], out), 1, "not a shard")
    (job / "a" / "img0003.png").write_bytes(b"broken")
    skipped = tmp_path / "skipped-1.npy"
    assert invoke(runner, "compress", job, skipped, "--model", tiny_model, "--shard", "1/3", "--quiet", "--gray",
                  "--on-error", "skip").exit_code == 1
    one_line_error(invoke(runner, "merge", skipped, parts[1], parts[2], out), 1, "every image")
    assert not out.exists()
    assert {k: v for k, v in snapshot(tmp_path).items() if k in before and k != "in/a/img0003.png"} == {
        k: v for k, v in before.items() if k != "in/a/img0003.png"}  # the shards were not touched
    one_line_error(invoke(runner, "compress", job, tmp_path / "e.npy", "--model", tiny_model, "--shard", "1/30"), 2,
                   "empty")


def test_xargs_parallel_shards_with_the_installed_script(tiny_model, tmp_path, big_job):
    """Three `convae` processes at once under `xargs -P 3`, then `convae merge`: same bytes as one process."""
    convae = convae_script()
    assert shutil.which("xargs")
    cmd = [
        "xargs", "-P", "3", "-I", "K", convae, "compress", str(big_job), str(tmp_path / "part-K.npy"),
        "--shard", "K/3", "--model", str(tiny_model), "--quiet", "--gray",
    ]
    r = subprocess.run(cmd, input="1\n2\n3\n", capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr
    parts = [str(tmp_path / f"part-{k}.npy") for k in (1, 2, 3)]
    r = subprocess.run([convae, "merge", *parts, str(tmp_path / "all.npy"), "--quiet"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    single = tmp_path / "single.npy"
    r = subprocess.run([convae, "compress", str(big_job), str(single), "--model", str(tiny_model), "--json",
                        "--gray"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and json.loads(r.stdout)["images"] == 202
    assert (tmp_path / "all.npy").read_bytes() == single.read_bytes()
