"""Distributed-training plumbing: process-group setup under torchrun, `--nproc` launching, the peer-failure error.

Failures never hang: torchrun stops every process as soon as one exits with an error, and a
process that stops answering makes the others fail after ``CONVAE_DIST_TIMEOUT`` seconds (default 120).
"""

from __future__ import annotations

import datetime
import logging
import os
import sys

from convae.errors import TrainingError

TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("CONVAE_DIST_TIMEOUT", "120")))


def setup_distributed(device: str) -> int:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU); returns this rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        # torch.distributed.nn.functional binds the default group as default arguments when first imported (building
        # an optimizer imports it, via torch._dynamo). Imported after init_process_group, it would keep the group
        # alive past destroy_process_group, and a gloo thread that finished late could abort the process at exit.
        import torch.distributed.nn.functional

        backend = "nccl" if device == "cuda" else "gloo"
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=TIMEOUT)
    return dist.get_rank()


def local_processes() -> int:
    """How many processes of this job run on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def peer_failed(rank: int, reason: str) -> TrainingError:
    """The one-line error of process ``rank`` when another process of the job fails or stops answering."""
    return TrainingError(f"process {rank}: another training process failed or stopped answering ({reason})")


def launch_args(argv: list[str], nproc: int) -> list[str]:
    """torchrun arguments that re-run this command line (minus ``--nproc``) on ``nproc`` local processes."""
    args: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            args.append(a)
    return ["--standalone", f"--nproc-per-node={nproc}", "-m", "convae", *args]


def launch(nproc: int) -> int:
    """Re-run this command under torchrun on ``nproc`` processes; returns the exit code.

    When a process fails, torchrun stops the others; this prints one line naming the first
    failure and returns its exit code (its own error line comes from that process).
    """
    from convae._imports import torch_loading

    with torch_loading():
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.run import parse_args, run

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(parse_args(launch_args(sys.argv[1:], nproc)))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode if failure.exitcode > 0 else 1
        how = f"exit code {failure.exitcode}" if failure.exitcode > 0 else f"signal {-failure.exitcode}"
        print(f"convae: error: training process {rank} of {nproc} failed ({how}); stopped the others",
              file=sys.stderr)
        return code
    return 0
