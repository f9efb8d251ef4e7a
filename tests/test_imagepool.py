"""Image workers: processes and threads give the same pixels and files, reading ahead stays bounded,
a dead worker is a one-line error, and the command line (processes, forked before PyTorch loads)
makes the same bytes as the library in a process that already has PyTorch (threads)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convae.codec.imagepool as imagepool
from convae.codec.api import compress, decompress
from convae.codec.imagepool import ImagePool, written_bytes
from convae.codec.manifest import ImageEntry
from convae.errors import ConvaeError, DataError
from convae.images import read_image, to_channels
from tests.codec_util import convae_script, mode_images, snapshot
from tests.conftest import make_images, write_pngs


def _files(folder: Path) -> list[Path]:
    files = sorted(mode_images(folder).values())
    (folder / "broken.png").write_bytes(b"not a png")
    return [*files, folder / "broken.png"]


@pytest.mark.parametrize("channels", [1, 3])
def test_to_channels_gives_the_pixels_of_a_direct_read(tmp_path, channels):
    for path in _files(tmp_path)[:-1]:
        direct, native = read_image(path, channels), read_image(path)
        fitted = to_channels(native, channels)
        assert native.pixels.shape[2] in (1, 3)
        np.testing.assert_array_equal(fitted.pixels, direct.pixels, err_msg=path.name)
        assert (fitted.mode, fitted.has_alpha) == (direct.mode, direct.has_alpha)
        np.testing.assert_array_equal(fitted.alpha if fitted.alpha is not None else [],
                                      direct.alpha if direct.alpha is not None else [])


@pytest.mark.parametrize("processes", [True, False])
def test_pool_reads_every_file_in_order_with_its_size(tmp_path, processes):
    files = _files(tmp_path) * 3  # several tasks' worth
    with ImagePool(100, processes=processes) as pool:
        pool.per_task = 4
        got = list(pool.read(files))
    assert pool.processes is processes
    assert len(got) == len(files)
    for path, (decoded, size) in zip(files, got, strict=True):
        assert size == path.stat().st_size
        if path.name == "broken.png":
            assert isinstance(decoded, DataError) and "not an image file" in str(decoded)
        else:
            np.testing.assert_array_equal(decoded.pixels, read_image(path).pixels, err_msg=path.name)


@pytest.mark.parametrize("processes", [True, False])
def test_pool_writes_the_same_pngs_either_way(tmp_path, processes):
    pixels = make_images(5, seed=4)
    items = [(ImageEntry(f"{i}.png", 28, 28, "L", False, 0), f"{i}.png", pixels[i][:, :, None], None) for i in range(5)]
    folder = tmp_path / ("p" if processes else "t")
    folder.mkdir()
    with ImagePool(784, processes=processes) as pool:
        total = written_bytes(pool.write(items, folder))
    assert total == sum(p.stat().st_size for p in folder.iterdir()) > 0
    for i in range(5):
        np.testing.assert_array_equal(np.asarray(Image.open(folder / f"{i}.png")), pixels[i])


def test_reading_ahead_stops_at_the_budget_until_results_are_taken(tmp_path, monkeypatch):
    files = write_pngs(tmp_path, make_images(40, seed=5))
    monkeypatch.setattr(imagepool, "READ_AHEAD_BYTES", 1)  # any finished task fills the budget
    submitted = []

    class Counting(ThreadPoolExecutor):
        def submit(self, fn, *args):
            submitted.append(args)
            return super().submit(fn, *args)

    monkeypatch.setattr(imagepool, "ThreadPoolExecutor", Counting)
    with ImagePool(100, processes=False) as pool:
        pool.per_task = 2
        reads = pool.read(files)
        deadline = time.monotonic() + 30
        while not submitted and time.monotonic() < deadline:  # the submitting thread has started
            time.sleep(0.01)
        time.sleep(0.3)  # time enough to read all 20 tasks, were nothing holding them back
        # at most the tasks in flight when the first finished task filled the budget (one, if it finished
        # before the second was submitted)
        assert 1 <= len(submitted) <= 2 * pool.workers
        got = list(reads)
    assert len(submitted) == 20
    assert [d.pixels.sum() for d, _ in got] == [read_image(p).pixels.sum() for p in files]


def test_reading_until_every_file_was_read(tmp_path, monkeypatch):
    files = write_pngs(tmp_path, make_images(6, seed=7))
    gate = threading.Event()

    def held_read(path):
        gate.wait(30)
        return read_image(path)

    monkeypatch.setattr(imagepool, "read_image", held_read)
    with ImagePool(100, processes=False) as pool:
        pool.per_task = 2
        assert not pool.reading()
        reads = pool.read(files)
        assert pool.reading()  # the first task is held at its first file
        gate.set()
        got = list(reads)
        deadline = time.monotonic() + 30
        while pool.reading() and time.monotonic() < deadline:  # the last task's callback may still be running
            time.sleep(0.01)
        assert not pool.reading()
    assert len(got) == len(files)


def test_leaving_the_pool_early_stops_the_reading(tmp_path, monkeypatch):
    files = write_pngs(tmp_path, make_images(30, seed=6))
    monkeypatch.setattr(imagepool, "READ_AHEAD_BYTES", 1)  # the submitting thread waits for room...
    before = threading.active_count()
    with ImagePool(100, processes=True) as pool:
        pool.per_task = 1
        reads = pool.read(files)
        next(reads)
    assert threading.active_count() <= before  # ...and is told to stop, not left waiting


def test_a_dead_worker_is_a_one_line_error(tmp_path, monkeypatch):
    files = write_pngs(tmp_path, make_images(3, seed=7))
    monkeypatch.setattr(imagepool, "read_image", lambda path: os._exit(9))  # the forked worker inherits it
    with pytest.raises(ConvaeError, match="worker process died"), ImagePool(100, processes=True) as pool:
        list(pool.read(files))


def test_the_command_line_makes_the_bytes_the_library_makes(tmp_path, tiny_model, image_folder):
    """The CLI in a fresh process reads in forked workers beside PyTorch's import; this test's process
    has PyTorch loaded, so the library uses threads: codes and reconstructions must be byte-identical."""
    lib, cli = tmp_path / "lib", tmp_path / "cli"
    compress([image_folder], lib.with_suffix(".npy"), model=str(tiny_model))
    decompress(lib.with_suffix(".npy"), lib, model=str(tiny_model))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for args in (["compress", image_folder, cli.with_suffix(".npy")], ["decompress", cli.with_suffix(".npy"), cli]):
        done = subprocess.run([convae_script(), *map(str, args), "--model", str(tiny_model), "--quiet"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
    assert cli.with_suffix(".npy").read_bytes() == lib.with_suffix(".npy").read_bytes()
    assert snapshot(cli) == snapshot(lib) and len(snapshot(cli)) == 12
    # no staging folder left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli", "cli.npy", "images", "lib", "lib.npy"]
    (tmp_path / "made-by-mkdir").mkdir()  # renamed into place whole, with the permissions mkdir gives
    assert oct(cli.stat().st_mode & 0o777) == oct((tmp_path / "made-by-mkdir").stat().st_mode & 0o777)



def test_no_processes_to_be_had_means_threads(tmp_path, monkeypatch):
    files = write_pngs(tmp_path, make_images(3, seed=8))

    class NoFork(imagepool.ProcessPoolExecutor):
        def submit(self, fn, *args):
            raise BlockingIOError(11, "Resource temporarily unavailable")  # what fork says at a process limit

    monkeypatch.setattr(imagepool, "ProcessPoolExecutor", NoFork)
    with ImagePool(100, processes=True) as pool:
        assert not pool.processes
        assert len(list(pool.read(files))) == 3


def test_forking_only_before_pytorch_with_no_other_thread_and_outside_daemonic_processes():
    code = ("import multiprocessing as mp, threading\nfrom convae.codec.imagepool import forking_is_safe\n"
            "def child(q):\n    q.put(forking_is_safe())\n"
            "fork = mp.get_context('fork')\nq = fork.Queue()\np = fork.Process(target=child, args=(q,), daemon=True)\n"
            "p.start()\nin_daemon = q.get(timeout=60)\np.join()\nq.close()\nq.join_thread()\n"
            "stop = threading.Event()\nt = threading.Thread(target=stop.wait)\nt.start()\n"
            "with_thread = forking_is_safe()\nstop.set()\nt.join()\n"
            "before = forking_is_safe()\nimport torch\n"
            "print(before, in_daemon, with_thread, forking_is_safe())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "False", "False"]


def test_the_codec_and_the_command_line_load_pytorch_only_when_they_need_it():
    """The image workers can fork before PyTorch loads only if nothing imports it earlier."""
    code = ("import sys\nimport convae.codec.api, convae.cli.app\nfrom convae.cli.app import _device\n"
            "assert _device('cpu') == 'cpu'\nfrom convae.codec.imagepool import forking_is_safe\n"
            "print('torch' in sys.modules, forking_is_safe())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def test_a_worker_dying_between_tasks_is_an_error_not_a_hang(tmp_path):
    """The pool breaks before a later task can be submitted: the reader raises instead of waiting forever."""
    files = write_pngs(tmp_path, make_images(8, seed=9))
    outcome: list = []
    with ImagePool(100, processes=False) as pool:
        pool.per_task = 1
        submit, calls = pool._pool.submit, []

        def breaking(fn, *args):
            calls.append(fn)
            if len(calls) > 2:
                raise BrokenProcessPool("a worker died")
            return submit(fn, *args)

        pool._pool.submit = breaking

        def consume():
            try:
                list(pool.read(files))
            except ConvaeError as exc:
                outcome.append(str(exc))

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        reader.join(60)
    assert outcome == ["an image worker process died (out of memory?); nothing was written"]
