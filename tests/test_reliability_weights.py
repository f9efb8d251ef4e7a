"""Safe loading: tampered or fake weights passed as --model are refused in one line, never unpickled.

Also weights whose numbers were damaged into NaN or infinity: they would code garbage, so they are refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from convae.weightfile import read_weights
from tests.codec_util import invoke, ok, one_line_error


def _header(data: bytes) -> tuple[int, dict]:
    n = int.from_bytes(data[:8], "little")
    return n, json.loads(data[8 : 8 + n])


def _with_header(data: bytes, change) -> bytes:
    """``data`` with its JSON header changed by ``change(header)`` (tensor bytes kept)."""
    n, header = _header(data)
    change(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def _first_float(data: bytes) -> int:
    """Offset in the file of the first float32 tensor's first value."""
    n, header = _header(data)
    name = min((k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32"),
               key=lambda k: header[k]["data_offsets"][0])
    return 8 + n + header[name]["data_offsets"][0]


def _tamper(kind: str, good: bytes, tmp_path: Path) -> bytes:
    if kind == "pickle":
        torch.save({"weight": torch.zeros(3)}, tmp_path / "p.pt")
        return (tmp_path / "p.pt").read_bytes()
    if kind == "header-flip":
        return good[:20] + bytes([good[20] ^ 0x55]) + good[21:]
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "empty":
        return b""
    if kind == "huge-header-length":
        return (1 << 60).to_bytes(8, "little") + good[8:]
    if kind == "variant-edited":
        return _with_header(good, lambda h: h["__metadata__"].update(variant="fmh-q2"))
    if kind == "config-edited":
        return _with_header(good, lambda h: h["__metadata__"].update(config='{"channels": 3}'))
    if kind == "not-convae":
        return _with_header(good, lambda h: h.pop("__metadata__"))
    if kind == "tensor-renamed":
        return _with_header(good, lambda h: h.update({"x" + k: h.pop(k) for k in [k for k in h if "bias" in k][:1]}))
    if kind in ("nan", "inf"):
        at = _first_float(good)
        value = b"\x00\x00\xc0\x7f" if kind == "nan" else b"\x00\x00\x80\x7f"
        return good[:at] + value + good[at + 4 :]
    raise AssertionError(kind)


KINDS = ["pickle", "header-flip", "truncated", "empty", "huge-header-length", "variant-edited", "config-edited",
         "not-convae", "tensor-renamed", "nan", "inf"]


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_weights_are_refused_by_every_command(runner, tiny_model, tmp_path, image_folder, kind):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(_tamper(kind, tiny_model.read_bytes(), tmp_path))
    out = tmp_path / "c.npy"
    one_line_error(invoke(runner, "compress", image_folder, out, "--model", bad), 1, bad)
    assert not out.exists()
    ok(invoke(runner, "compress", image_folder, out, "--model", tiny_model, "--quiet"))
    one_line_error(invoke(runner, "decompress", out, tmp_path / "r", "--model", bad), 1, bad)
    assert not (tmp_path / "r").exists()


def test_a_pickle_is_never_unpickled(runner, tiny_model, tmp_path, image_folder):
    """A pickle whose loading would run code: refused without running it."""
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (Path.touch, (marker,))

    import pickle

    (tmp_path / "evil.safetensors").write_bytes(pickle.dumps(Boom()))
    one_line_error(invoke(runner, "compress", image_folder, tmp_path / "c.npy", "--model",
                          tmp_path / "evil.safetensors"), 1)
    assert not marker.exists()


def test_the_good_weights_still_load(tiny_model, tmp_path):
    shutil.copy(tiny_model, tmp_path / "copy.safetensors")
    assert read_weights(tmp_path / "copy.safetensors")[2] == read_weights(tiny_model)[2]
