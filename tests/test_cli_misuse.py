"""Every command, every misuse: one table of wrong command lines, each a one-line error with the documented
exit code (docs/BATCH.md: 2 for usage, 1 for data and files), no traceback, and no file created."""

from __future__ import annotations

import pytest

from tests.codec_util import invoke, one_line_error
from tests.conftest import make_images, write_pngs

# (arguments, exit code, text the error must hold); {imgs} a folder of images, {codes} a code file made from
# it, {empty} an empty folder, {out} a path that does not exist, {txt} a text file.
CASES = [
    (["models", "a", "b"], 2, "unexpected extra argument"),
    (["models", "--json", "--nosuch"], 2, "no such option --nosuch"),
    (["compress", "{imgs}"], 2, "give at least one input and the output"),
    (["compress", "{imgs}", "{out}.npy", "-q", "101"], 2, "101"),
    (["compress", "{imgs}", "{out}.npy", "-q", "-1"], 2, "-1"),
    (["compress", "{imgs}", "{out}.npy", "-q", "high"], 2, "--quality"),
    (["compress", "{imgs}", "{out}.npy", "--threads", "0"], 2, "no such option --threads"),
    (["compress", "{imgs}", "{out}.npy", "--batch-size", "0"], 2, "--batch-size"),
    (["compress", "{imgs}", "{out}.npy", "--batch-size", "-5"], 2, "--batch-size"),
    (["compress", "{imgs}", "{out}.npy", "--shard", "3/2"], 2, "--shard"),
    (["compress", "{imgs}", "{out}.npy", "--shard", "0/2"], 2, "--shard"),
    (["compress", "{imgs}", "{out}.npy", "--shard", "one/two"], 2, "--shard"),
    (["compress", "{imgs}", "{out}.npy", "--target-psnr", "-3"], 2, "--target-psnr"),
    (["compress", "{imgs}", "{out}.npy", "--max-bpp", "0"], 2, "--max-bpp"),
    (["compress", "{empty}", "{out}.npy"], 1, "holds no images"),
    (["compress", "{imgs}", "{codes}"], 1, "--force"),  # an existing output: never overwritten silently
    (["compress", "{codes}", "{out}.npy"], 1, "not an image file"),  # a code file given as an image
    (["compress", "{imgs}", "{imgs}"], 2, ".npy"),  # the input folder given as the output
    (["decompress", "{codes}"], 2, "missing argument"),
    (["decompress", "{codes}", "{out}", "extra"], 2, "unexpected extra argument"),
    (["decompress", "{imgs}", "{out}"], 1, "{imgs}"),
    (["decompress", "{txt}", "{out}"], 1, "not a convae code file"),
    (["decompress", "{codes}", "{out}", "--format", "gif"], 2, "--format"),
    (["decompress", "{codes}", "{imgs}"], 1, "--force"),  # the input folder given as the output
    (["decompress", "{codes}", "{out}", "--threads", "-2"], 2, "--threads"),
    (["info"], 2, "missing argument"),
    (["info", "{imgs}"], 1, "folder"),
    (["info", "{codes}", "{codes}"], 2, "unexpected extra argument"),
    (["merge", "{codes}"], 2, "give the shard files and the output"),
    (["merge", "{codes}", "{codes}"], 1, "not a shard"),  # the input given as the output
    (["merge", "{codes}", "{txt}", "{out}.npy"], 1, "not a convae code file"),
    (["merge", "{part1}", "{part2}", "{part1}", "--force"], 2, "also an input"),  # --force never eats an input
    (["compress", "{codes}", "{codes}", "--force"], 2, "also an input"),
    (["eval"], 2, "--data is required"),
    (["eval", "--data", "{empty}"], 1, "holds no images"),
    (["eval", "--data", "{imgs}", "--limit", "-1"], 2, "--limit -1"),
    (["eval", "--data", "{imgs}", "-m", "nosuchmodel"], 2, "nosuchmodel"),
    (["train", "--out", "{out}.safetensors"], 2, "--data"),
    (["train", "--data", "{imgs}", "--out", "{out}.safetensors", "--time", "soon"], 2, "--time"),
    (["train", "--data", "{imgs}", "--out", "{out}.safetensors", "--time", "0s"], 2, "--time"),
    (["train", "--data", "{imgs}", "--out", "{out}.safetensors", "--val", "2"], 2, "--val"),
    (["train", "--data", "{imgs}", "--out", "{out}.safetensors", "--lr", "-1"], 2, "--lr"),
    (["train", "--data", "{imgs}", "--out", "{out}.safetensors", "--batch-size", "0"], 2, "--batch-size"),
    (["train", "--data", "{imgs}", "--out", "{out}.safetensors", "--lmbda", "0.1"], 2, "--lmbda"),
    (["train", "--data", "{empty}", "--out", "{out}.safetensors"], 1, "holds no images"),
    (["train", "--data", "{imgs}", "--out", "{out}.safetensors", "-m", "seed", "--crop", "100000"], 2,
     "larger than every training image"),  # it would pad each image to 100000 x 100000
]


@pytest.fixture(scope="module")
def places(tmp_path_factory, tiny_model) -> dict[str, str]:
    from convae.codec.api import compress

    root = tmp_path_factory.mktemp("misuse")
    write_pngs(root / "imgs", make_images(4, seed=2))
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not an image, not a code file\n")
    compress([root / "imgs"], root / "codes.npy", model=str(tiny_model))
    for k in (1, 2):
        compress([root / "imgs"], root / f"part{k}.npy", model=str(tiny_model), shard=(k, 2))
    return {"imgs": str(root / "imgs"), "codes": str(root / "codes.npy"), "empty": str(root / "empty"),
            "txt": str(root / "notes.txt"), "root": str(root), "part1": str(root / "part1.npy"),
            "part2": str(root / "part2.npy")}


def _tree(root: str) -> list[str]:
    from pathlib import Path

    return sorted(str(p) for p in Path(root).rglob("*"))


@pytest.mark.parametrize(("args", "code", "needle"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_misuse_is_one_line_with_the_documented_exit_code(runner, places, tmp_path, args, code, needle):
    subs = {**places, "out": str(tmp_path / "out")}
    argv = [a.format(**subs) for a in args]
    before = _tree(places["root"])
    err = one_line_error(invoke(runner, *argv), code)
    assert needle.format(**subs) in err, err
    assert _tree(places["root"]) == before and list(tmp_path.iterdir()) == []  # nothing created, nothing changed
