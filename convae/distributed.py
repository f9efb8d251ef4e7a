"""DistributedDataParallel plumbing: process-group setup under torchrun, and `--nproc` launching."""

from __future__ import annotations

import datetime
import os
import sys

TIMEOUT = datetime.timedelta(seconds=int(os.environ.get("CONVAE_DIST_TIMEOUT", "120")))


def setup_distributed(device: str) -> int:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU); returns this rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank()


def launch(nproc: int) -> int:
    """Re-run this command under ``torchrun --nproc_per_node nproc``; returns its exit code."""
    import subprocess

    args = [a for a in sys.argv[1:] if not a.startswith("--nproc")]
    if "--nproc" in sys.argv:
        i = sys.argv.index("--nproc")
        args = sys.argv[1:i] + sys.argv[i + 2 :]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "convae", *args]
    return subprocess.call(cmd)
