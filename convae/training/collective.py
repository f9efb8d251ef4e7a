"""The few collectives the training loop uses; each works in one process, undistributed, too."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from convae.training.distributed import local_processes


def rank_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def global_mean(total: float, count: int) -> float:
    """``total / count`` summed over every process."""
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(t)
        total, count = float(t[0]), int(t[1])
    return total / max(count, 1)


def agree(flag: bool) -> bool:
    """``flag`` on any process, on every process (so all stop at the same step)."""
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([float(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())
    return flag


def leave_process_group(rank: int, device: str, threads: int) -> None:
    """Free the process group after the last collective, joining gloo's threads (alive at exit, they can abort it).

    Rank 0 then calibrates alone; on the CPU it takes the threads of this machine's finished processes too.
    """
    dist.destroy_process_group()
    if rank == 0 and device == "cpu":
        torch.set_num_threads(max(threads, min(threads * local_processes(), os.cpu_count() or 1)))
