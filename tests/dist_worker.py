"""Run the convae command line as one torchrun worker, with test hooks set by environment variables.

``CONVAE_TEST_DUMP=DIR``: after training, every rank writes its parameters to ``DIR/rankR.safetensors``, with the
names of its live threads in the file's metadata.
``CONVAE_TEST_FAIL=R:exit:N`` or ``R:hang:N``: rank R exits with code 7, or stops answering, at its N-th batch.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from convae.cli.app import main
from safetensors.torch import save_file

import convae.data
import convae.training.train

RANK = int(os.environ.get("RANK", "0"))


def _dump_after_training() -> None:
    folder = Path(os.environ["CONVAE_TEST_DUMP"])
    original = convae.training.train.train

    def train(model, *args, **kwargs):
        result = original(model, *args, **kwargs)
        threads = [Path(task, "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()]
        save_file({k: v.detach().contiguous() for k, v in model.named_parameters()}, folder / f"rank{RANK}.safetensors",
                  {"threads": ",".join(threads)})
        return result

    convae.training.train.train = train


def _fail_at_batch(mode: str, at: int) -> None:
    original = convae.data.ImageSet.batch
    calls = [0]

    def batch(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            if mode == "hang":
                time.sleep(600)
            os._exit(7)
        return original(self, *args, **kwargs)

    convae.data.ImageSet.batch = batch


if "CONVAE_TEST_DUMP" in os.environ:
    _dump_after_training()
if os.environ.get("CONVAE_TEST_FAIL", "").startswith(f"{RANK}:"):
    _, how, at = os.environ["CONVAE_TEST_FAIL"].split(":")
    _fail_at_batch(how, int(at))
sys.argv = ["convae", *sys.argv[1:]]
main()
