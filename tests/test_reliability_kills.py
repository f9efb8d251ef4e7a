"""Faults: ``kill -9`` at random moments of compress, decompress, merge and train, and two jobs on one output.

After every kill, each visible output is complete and byte-identical to an uninterrupted run's (or
absent); what a kill may leave is a hidden ``.NAME.*.tmp`` staging file or folder beside the output,
which no command reads as an output (docs/RELIABILITY.md). An interrupted training's checkpoint, when
one was written, resumes to a finished run. The fast run does ``FAST_TRIALS`` kills per command,
``nox -s stress`` ``STRESS_TRIALS``; both print the counts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import make_images, write_pngs

FAST_TRIALS = 2
STRESS_TRIALS = 15
Check = Callable[[Path], str]  # inspects a work folder after a kill; returns the outcome's name


def convae(*args: object) -> list[str]:
    return [sys.executable, "-m", "convae", *[str(a) for a in args]]


def timed(cmd: list[str], cwd: Path) -> float:
    """Run ``cmd`` to the end (it must succeed); its wall time."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return time.perf_counter() - t0


def visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def hidden_leftovers_only(folder: Path, keep: set[str]) -> None:
    """Anything but ``keep`` and the outputs checked by the caller must be a hidden staging ``*.tmp``."""
    for p in folder.iterdir():
        if p.name not in keep:
            assert p.name.startswith(".") and p.name.endswith(".tmp"), f"stray file after a kill: {p.name}"


def kill_trials(cmd: Callable[[Path], list[str]], setup: Callable[[Path], None], check: Check, trials: int,
                seconds: float, root: Path, seed: int) -> dict[str, int]:
    """``trials`` runs of ``cmd`` killed with SIGKILL at a random moment in the first ``seconds``; outcome counts."""
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    for i in range(trials):
        work = root / f"trial{i}"
        work.mkdir()
        setup(work)
        proc = subprocess.Popen(cmd(work), cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * seconds)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        outcome = check(work)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_model) -> dict[str, Path]:
    """Inputs, an uninterrupted code file, shards and decoded folder to compare each killed run with."""
    root = tmp_path_factory.mktemp("kills")
    write_pngs(root / "images", make_images(600, seed=3))
    ref = {"root": root, "images": root / "images", "model": tiny_model}
    ref["seconds_compress"] = timed(convae("compress", "images", "ref.npy", "-m", tiny_model, "--quiet"), root)
    ref["seconds_decompress"] = timed(convae("decompress", "ref.npy", "ref-out", "-m", tiny_model, "--quiet"), root)
    for k in (1, 2):
        timed(convae("compress", "images", f"part{k}.npy", "-m", tiny_model, "--shard", f"{k}/2", "--quiet"), root)
    ref["seconds_merge"] = timed(convae("merge", "part1.npy", "part2.npy", "merged.npy", "--quiet"), root)
    return ref


def _report(name: str, counts: dict[str, int]) -> None:
    print(f"\nkill -9 during {name}: {sum(counts.values())} kills, {counts}")


def _compress(job: dict, trials: int) -> dict[str, int]:
    ref = (job["root"] / "ref.npy").read_bytes()

    def check(work: Path) -> str:
        hidden_leftovers_only(work, {"o.npy"})
        out = work / "o.npy"
        if not out.exists():
            return "no output"
        assert out.read_bytes() == ref, "a killed compress left a code file that differs from the full run's"
        return "complete output"

    return kill_trials(lambda w: convae("compress", job["images"], "o.npy", "-m", job["model"], "--quiet"),
                       lambda w: None, check, trials, job["seconds_compress"], job["root"] / "c", 1)


def _decompress(job: dict, trials: int) -> dict[str, int]:
    ref = {p.relative_to(job["root"] / "ref-out"): p.read_bytes() for p in visible(job["root"] / "ref-out")}

    def check(work: Path) -> str:
        hidden_leftovers_only(work, {"out"})
        out = work / "out"
        if not out.exists():
            return "no output"
        got = {p.relative_to(out): p.read_bytes() for p in visible(out)}
        assert got == ref, f"a killed decompress left {len(got)} of {len(ref)} images or other bytes"
        return "complete output"

    return kill_trials(lambda w: convae("decompress", job["root"] / "ref.npy", "out", "-m", job["model"], "--quiet"),
                       lambda w: None, check, trials, job["seconds_decompress"], job["root"] / "d", 2)


def _merge(job: dict, trials: int) -> dict[str, int]:
    ref = (job["root"] / "merged.npy").read_bytes()

    def check(work: Path) -> str:
        hidden_leftovers_only(work, {"m.npy"})
        if not (work / "m.npy").exists():
            return "no output"
        assert (work / "m.npy").read_bytes() == ref
        return "complete output"

    parts = [job["root"] / "part1.npy", job["root"] / "part2.npy"]
    return kill_trials(lambda w: convae("merge", *parts, "m.npy", "--quiet"), lambda w: None, check, trials,
                       job["seconds_merge"], job["root"] / "m", 3)


def _train(job: dict, trials: int) -> dict[str, int]:
    args = ["train", "--model", "seed", "--data", job["images"], "--epochs", "4", "--batch-size", "64", "--out",
            "w.safetensors", "--quiet"]
    seconds = timed(convae(*args), job["root"])
    outputs = {"w.safetensors", "w.ckpt.safetensors", "w.history.json", "w.loss.png"}

    def check(work: Path) -> str:
        hidden_leftovers_only(work, outputs)
        if not (work / "w.ckpt.safetensors").exists():
            assert not (work / "w.safetensors").exists()
            return "no checkpoint yet"
        r = subprocess.run(convae(*args, "--resume", "--force"), cwd=work, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, f"the checkpoint a kill left does not resume: {r.stderr}"
        assert (work / "w.safetensors").exists()
        return "resumed to the end"

    return kill_trials(lambda w: convae(*args), lambda w: None, check, trials, seconds, job["root"] / "t", 4)


COMMANDS = {"compress": _compress, "decompress": _decompress, "merge": _merge, "train": _train}


@pytest.mark.parametrize("command", COMMANDS)
def test_kill_9_leaves_no_partial_output(job, command):
    (job["root"] / command[0]).mkdir(exist_ok=True)
    counts = COMMANDS[command](job, FAST_TRIALS)
    _report(command, counts)
    assert sum(counts.values()) == FAST_TRIALS


@pytest.mark.stress
@pytest.mark.parametrize("command", COMMANDS)
def test_kill_9_leaves_no_partial_output_stress(job, command):
    folder = job["root"] / command[0]
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    folder.mkdir()
    counts = COMMANDS[command](job, STRESS_TRIALS)
    _report(command, counts)
    assert sum(counts.values()) == STRESS_TRIALS


def test_two_jobs_writing_one_output_never_interleave(job, tmp_path):
    """Two compress runs of different inputs race for ``o.npy``: it ends as one run's file, whole, or not at all."""
    write_pngs(tmp_path / "other", make_images(600, seed=9))
    refs = set()
    for name in ("images", "other"):
        src = job["images"] if name == "images" else tmp_path / "other"
        subprocess.run(convae("compress", src, f"{name}.npy", "-m", job["model"], "--quiet"), cwd=tmp_path,
                       check=True, timeout=300)
        refs.add((tmp_path / f"{name}.npy").read_bytes())
    for trial in range(2):
        out = tmp_path / f"race{trial}.npy"
        procs = [subprocess.Popen(convae("compress", src, out, "-m", job["model"], "--quiet"), cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for src in (job["images"], tmp_path / "other")]
        codes = [p.wait(timeout=300) for p in procs]
        assert sorted(codes) == [0, 1], [p.stderr.read() for p in procs]  # one wins; the other never reports success
        assert out.read_bytes() in refs  # one whole job's file, never a mix
        for p, code in zip(procs, codes, strict=True):
            if code:
                assert "already exists" in p.stderr.read()  # the loser is refused, never writes over
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_two_decompress_jobs_into_one_existing_folder_leave_one_jobs_images(job, tmp_path):
    """The loser of a race for the same names in an existing folder is refused and takes its files back."""
    write_pngs(tmp_path / "other", make_images(600, seed=9))
    subprocess.run(convae("compress", tmp_path / "other", "other.npy", "-m", job["model"], "--quiet"), cwd=tmp_path,
                   check=True, timeout=300)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_bytes(b"kept")
    sources = [job["root"] / "ref.npy", tmp_path / "other.npy"]
    procs = [subprocess.Popen(convae("decompress", src, out, "-m", job["model"], "--quiet"), cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for src in sources]
    codes = [p.wait(timeout=300) for p in procs]
    assert sorted(codes) == [0, 1], [p.stderr.read() for p in procs]
    subprocess.run(convae("decompress", sources[codes.index(0)], "alone", "-m", job["model"], "--quiet"),
                   cwd=tmp_path, check=True, timeout=300)
    got = {p.relative_to(out): p.read_bytes() for p in visible(out)}
    want = {p.relative_to(tmp_path / "alone"): p.read_bytes() for p in visible(tmp_path / "alone")}
    assert got == {**want, Path("keep.txt"): b"kept"}  # exactly the winner's images, none of the loser's


def _processes_naming(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and text in (d / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(d.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_sigterm_cleans_up_like_ctrl_c_and_kill_9_leaves_no_workers(job, tmp_path):
    """SIGTERM (timeout, docker stop, schedulers): exit 130, no temp file, no output. After either signal no
    image worker outlives the command. (About one run in four under load ends by SIGINT after its cleanup:
    a shell's ``$?`` is 130 either way, so both count; the cause is not found yet.)"""
    for sig, codes in ((signal.SIGTERM, (130, -signal.SIGINT)), (signal.SIGKILL, (-9,))):
        work = tmp_path / sig.name
        work.mkdir()
        proc = subprocess.Popen(convae("compress", job["images"], "o.npy", "-m", job["model"], "--quiet"),
                                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5 * job["seconds_compress"])
        proc.send_signal(sig)
        assert proc.wait(timeout=60) in codes, proc.stderr.read()
        deadline = time.monotonic() + 10
        while _processes_naming(str(job["images"])) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _processes_naming(str(job["images"])), f"image workers outlived a {sig.name}"
        if sig == signal.SIGTERM:
            assert list(work.iterdir()) == [], "SIGTERM left files behind"
            assert "interrupted" in proc.stderr.read()


def test_a_kill_leaves_the_previous_forced_output_intact(job, tmp_path):
    """``--force`` over an old code file, killed mid-run: the old file stays until the new one is whole."""
    old = tmp_path / "o.npy"
    subprocess.run(convae("compress", job["images"], old, "-m", job["model"], "--raw", "--quiet"), check=True,
                   timeout=300)
    before = old.read_bytes()
    ref = (job["root"] / "ref.npy").read_bytes()
    rng = random.Random(7)
    for _ in range(FAST_TRIALS):
        proc = subprocess.Popen(convae("compress", job["images"], old, "-m", job["model"], "--force", "--quiet"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 0.9) * job["seconds_compress"])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert old.read_bytes() in (before, ref)
        if old.read_bytes() == ref:  # the new run finished first: put the old one back for the next trial
            old.write_bytes(before)
