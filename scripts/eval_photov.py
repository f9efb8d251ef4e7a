"""Evaluate a variable-rate ``photov`` weights file at several levels beside photoh-q0..q3 (issue 21).

Real coded bytes: ``convae.codec.api.compress`` writes the whole code file (manifest included) and
``verify`` decodes the very symbols written; bpp over the photos' pixels, PSNR-RGB of the mean MSE.
``WEIGHTS`` may be ``warm``: photov built from photoh-q2's tensors and buffers (calibrated quantiser
and entropy tables included), the untrained warm start, which at level 5 must equal photoh-q2.
Run: ``python scripts/eval_photov.py WEIGHTS [N_PHOTOS] [LEVELS, e.g. 0,2,4,5,6,8]``; prints JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from convae.registry import create_model

from convae.codec.api import compress
from convae.weightfile import read_weights, save_weights
from convae.zoo import shipped_weights

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT.parent / "shared/data/photos/BSDS500/val"


def warm_file(out: Path) -> Path:
    """photov holding photoh-q2's weights and calibrated buffers (the gains at init): the warm start."""
    net = create_model("photov")
    state, _, sha = read_weights(shipped_weights("photoh-q2"))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"enc_gain", "dec_gain"}:
        raise SystemExit(f"photoh-q2 does not fit photov: missing {missing}, unexpected {unexpected}")
    save_weights(net, out, {"init_from": "photoh-q2", "init_sha256": sha, "note": "untrained warm start"})
    return out


def point(files: list[Path], out: Path, model: str, quality: float | None = None) -> dict[str, Any]:
    """bpp and PSNR-RGB of ``files`` coded by ``model`` (at ``quality`` 0..100 for a variable-rate file)."""
    s = compress(files, out, model=model, verify=True, force=True, quality=quality)  # type: ignore[arg-type]
    row = s.as_dict()
    return {"bpp": round(row["bpp"], 4), "psnr": round(row["psnr"], 3),
            "mean_psnr": round(row["verify"]["mean_psnr"], 3), "bytes": out.stat().st_size}


def main(weights: str, n: int, levels: list[float]) -> dict[str, Any]:
    """Every level of ``weights`` and every photoh variant on the first ``n`` BSDS500/val photos."""
    files = sorted(VAL.glob("*.jpg"))[:n]
    report: dict[str, Any] = {"weights": weights, "photos": f"BSDS500/val, first {len(files)} (sorted)",
                              "photov": {}, "photoh": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(warm_file(Path(tmp) / "warm.safetensors")) if weights == "warm" else weights
        for t in levels:
            report["photov"][f"level {t:g}"] = point(files, Path(tmp) / "v.npy", path, 100 * t / 8)
            print(f"level {t:g}", report["photov"][f"level {t:g}"], file=sys.stderr, flush=True)
        for q in range(4):
            report["photoh"][f"photoh-q{q}"] = point(files, Path(tmp) / "h.npy", f"photoh-q{q}")
    return report


if __name__ == "__main__":
    args = sys.argv[1:] or ["warm"]
    count = int(args[1]) if len(args) > 1 else 10
    ladder = [float(v) for v in args[2].split(",")] if len(args) > 2 else [0, 2, 4, 5, 6, 8]
    print(json.dumps(main(args[0], count, ladder), indent=1))
