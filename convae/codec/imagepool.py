"""Workers that read and write image files while the model runs: processes where they can be, else threads.

Per-file PNG work is Python that holds the GIL, so only processes overlap it with the model's. The
codec commands fork them before PyTorch loads (a cheap fork, no PyTorch threads inherited), so the
first reads run during PyTorch's import; where forking is not safe (``forking_is_safe``), threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from convae.errors import ConvaeError, DataError
from convae.images import Decoded, array_bytes, read_image, restore, write_new, write_png

SMALL_IMAGE_BYTES = 1 << 14  # about a 64x64 RGB image
TASK_BYTES = 1 << 16  # file bytes per read task: few hand-offs for small images, one large image per task
READ_AHEAD_BYTES = 1 << 25  # memory of images read ahead of the caller: 18,000 28x28 images, 42 512x512 RGB
PR_SET_PDEATHSIG = 1  # prctl option: a signal for this process when its parent exits
IMAGE_OVERHEAD = 1 << 10  # bytes held per image besides its pixels (Python objects), counted against it


def forking_is_safe() -> bool:
    """True where worker processes can be forked cheaply and safely: on Linux, PyTorch not loaded yet,
    no other thread running (one could hold a lock the child needs), and not inside a daemonic
    process (which may not have children)."""
    return (sys.platform == "linux" and "torch" not in sys.modules and threading.active_count() == 1
            and not multiprocessing.current_process().daemon)


class ImagePool:
    """Reads image files ahead of the model and writes reconstructions as PNGs, off the main thread.

    ``image_bytes`` is about the size of one image (file or pixels): it sets how many threads a
    thread pool gets and how many files a read task holds, and ``small_images`` (at most
    ``SMALL_IMAGE_BYTES``), which also tells the caller whether the workers need cores of their own.
    """

    def __init__(self, image_bytes: float, processes: bool | None = None) -> None:
        cores = os.cpu_count() or 1
        self.processes = forking_is_safe() if processes is None else processes
        self.per_task = max(1, min(64, int(TASK_BYTES // max(image_bytes, 1))))
        self.small_images = image_bytes <= SMALL_IMAGE_BYTES
        if self.processes:
            self.workers = max(1, min(4, cores))
            fork = multiprocessing.get_context("fork")
            self._pool: Executor = ProcessPoolExecutor(self.workers, mp_context=fork, initializer=_worker_setup,
                                                       initargs=(os.getpid(),))
            try:
                self._pool.submit(os.getpid).result()  # the executor forks all its workers now, at its first task
            except (OSError, BrokenProcessPool):  # no processes to be had (a process limit): use threads
                self._pool.shutdown(wait=False, cancel_futures=True)
                self.processes = False
        if not self.processes:  # small images cost GIL-bound Python per file: a second thread only adds contention
            self.workers = 1 if self.small_images else max(1, min(4, cores))
            self._pool = ThreadPoolExecutor(self.workers)
        self._reads: list[_ReadAhead] = []

    def __enter__(self) -> ImagePool:
        return self

    def __exit__(self, *exc: object) -> None:
        for reads in self._reads:
            reads.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def read(self, files: list[Path]) -> Iterator[tuple[Decoded | DataError, int]]:
        """``(read_image(path) or its DataError, file bytes)`` per file, in order.

        Reading starts at once, in the background, and keeps going while the caller does other
        work (such as importing PyTorch), up to ``READ_AHEAD_BYTES`` of images not yet taken (pixels
        and ``IMAGE_OVERHEAD`` each) and two tasks per worker in flight. Pixels keep the file's own
        channels; ``images.to_channels`` fits them to a model.
        """
        tasks = [files[i : i + self.per_task] for i in range(0, len(files), self.per_task)]
        self._reads.append(_ReadAhead(self._pool, tasks, 2 * self.workers))
        return self._reads[-1].results()

    def reading(self) -> bool:
        """True while files handed to ``read`` are still being read (or waiting to be)."""
        return any(not reads.finished() for reads in self._reads)

    def write(self, decoded: list[tuple], folder: Path, fmt: str = "png") -> list[Future]:
        """Start writing ``(entry, name, pixels, alpha)`` items as PNGs (or ``fmt`` "npy" arrays) under
        ``folder``: one task per worker, each future giving the bytes written."""
        share = -(-len(decoded) // self.workers)
        return [self._pool.submit(_write_images, decoded[i : i + share], folder, fmt)
                for i in range(0, len(decoded), share)]


def _worker_setup(parent: int) -> None:
    """In a worker: leave Ctrl-C and SIGTERM to the parent, and die with it (even by ``kill -9``), not linger."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # Linux
    if os.getppid() != parent:  # the parent died before prctl took hold
        os._exit(1)


def written_bytes(futures: list[Future]) -> int:
    """Wait for ``ImagePool.write`` tasks; the bytes they wrote."""
    return sum(_result(f) for f in futures)


class _ReadAhead:
    """Submits read tasks from a thread, within a budget of pixels read but not yet taken."""

    def __init__(self, pool: Executor, tasks: list[list[Path]], in_flight: int) -> None:
        self._pool, self._max_in_flight = pool, in_flight
        self._ready: queue.Queue[Future | None] = queue.Queue()
        self._cv = threading.Condition()
        self._in_flight = self._held = 0
        self._stop = False
        self._thread = threading.Thread(target=self._submit_all, args=(tasks,), daemon=True)
        self._thread.start()

    def _submit_all(self, tasks: list[list[Path]]) -> None:
        for task in tasks:
            with self._cv:
                self._cv.wait_for(lambda: self._stop or (self._in_flight < self._max_in_flight
                                                         and self._held < READ_AHEAD_BYTES))
                if self._stop:
                    return
                self._in_flight += 1
            try:
                future = self._pool.submit(_read_files, task)
            except RuntimeError as exc:  # a worker died (BrokenProcessPool), or the caller stopped and shut down
                future = Future()
                future.set_exception(exc)  # for results() to raise, not to wait for more
                self._ready.put(future)
                return
            future.add_done_callback(self._done)
            self._ready.put(future)
        self._ready.put(None)

    def _done(self, future: Future) -> None:
        held = 0 if future.cancelled() or future.exception() else _held_bytes(future.result())
        with self._cv:
            self._in_flight -= 1
            self._held += held
            self._cv.notify()

    def finished(self) -> bool:
        """True once the submitting thread has ended (every task submitted, or stopped) and no task is in flight."""
        if self._thread.is_alive():  # checked first: once it has ended, nothing new can be put in flight
            return False
        with self._cv:
            return self._in_flight == 0

    def results(self) -> Iterator[tuple[Decoded | DataError, int]]:
        """The tasks' results, in order (a generator: closing it stops the submitting)."""
        try:
            while (future := self._ready.get()) is not None:
                results = _result(future)
                with self._cv:
                    self._held -= _held_bytes(results)
                    self._cv.notify()
                yield from results
        finally:
            self.stop()

    def stop(self) -> None:
        """Submit nothing more (tasks already submitted still run)."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()


def _held_bytes(results: list[tuple[Decoded | DataError, int]]) -> int:
    return sum(IMAGE_OVERHEAD + (d.pixels.nbytes if isinstance(d, Decoded) else 0) for d, _ in results)


def _result(future: Future) -> Any:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise ConvaeError("an image worker process died (out of memory?); nothing was written") from exc


def _read_files(paths: list[Path]) -> list[tuple[Decoded | DataError, int]]:
    out: list[tuple[Decoded | DataError, int]] = []
    for path in paths:
        try:
            decoded: Decoded | DataError = read_image(path)
        except DataError as exc:
            decoded = exc
        size = 0
        with contextlib.suppress(OSError):
            size = path.stat().st_size
        out.append((decoded, size))
    return out


def _write_images(decoded: list[tuple], folder: Path, fmt: str) -> int:
    """Write ``(entry, name, pixels, alpha)`` items as new PNGs or ``.npy`` arrays (``fmt``) in ``folder`` (a
    fresh staging folder, so an existing file is an error); returns the bytes written."""
    if fmt == "npy":
        return sum(write_new(folder / name, array_bytes(pixels, e.mode, alpha, e.has_alpha))
                   for e, name, pixels, alpha in decoded)
    return sum(write_png(folder / name, restore(pixels, e.mode, alpha, e.has_alpha))
               for e, name, pixels, alpha in decoded)
