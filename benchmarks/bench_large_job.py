"""Peak memory of `convae compress` / `decompress` on a large folder of 28x28 PNGs (prints one JSON document).

Generates N small PNGs (default 100,000) in a temporary folder and runs the installed ``convae``
script on them as subprocesses, at N/10 images and at N images in the same run: if memory is
bounded, peak RSS barely moves while N grows tenfold. Each child's own peak RSS comes from
``os.wait4`` (stdlib). The baseline is the peak RSS of a process that only imports convae's CLI,
torch and the codec, measured in the same run.

    python benchmarks/bench_large_job.py --n 20000
    nice -n 10 python benchmarks/bench_large_job.py            # 100,000 images
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def convae_script() -> str:
    beside = Path(sys.executable).with_name("convae")
    found = str(beside) if beside.is_file() else shutil.which("convae")
    if not found:
        sys.exit("the convae console script is not installed")
    return found


def write_pngs(folder: Path, n: int, seed: int = 0) -> int:
    """``n`` smooth random 28x28 grayscale PNGs in 100 subfolders; returns their total bytes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28] / 28
    total = 0
    for i in range(n):
        img = np.zeros((28, 28))
        for cx, cy, r, a in rng.uniform([0.2, 0.2, 0.1, 0.3], [0.8, 0.8, 0.3, 1.0], (3, 4)):
            img += a * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        path = folder / f"d{i % 100:02d}" / f"img{i:06d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
        total += path.stat().st_size
    return total


def run(cmd: list[str]) -> dict:
    """Run ``cmd``; its wall time and its own peak RSS (MiB), from ``os.wait4``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (ru_maxrss in KiB on Linux)
        seconds = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code != 0:
            sys.exit(f"{' '.join(cmd)} failed ({code}): {err.read().decode()[-2000:]}")
        return {"seconds": round(seconds, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                "stdout": out.read().decode()}


def model_for(convae: str, given: str | None, work: Path) -> str:
    """The weights to use: ``--model``, else the shipped ``seed``, else a 1-epoch ``seed`` on 2,000 generated images."""
    if given:
        return given
    check = subprocess.run([convae, "models", "seed", "--json"], capture_output=True, text=True)
    if check.returncode == 0 and json.loads(check.stdout.splitlines()[0]).get("pretrained"):  # JSON Lines
        return "seed"
    data = work / "train"
    data.mkdir()
    write_pngs(data, 2000, seed=1)
    weights = work / "seed.safetensors"
    run([convae, "train", "--model", "seed", "--data", str(data), "--epochs", "1", "--out", str(weights), "--quiet"])
    return str(weights)


def measure(convae: str, model: str, n: int, work: Path) -> dict:
    folder = work / f"pngs-{n}"
    folder.mkdir()
    start = time.perf_counter()
    png_bytes = write_pngs(folder, n)
    generate = time.perf_counter() - start
    codes, recon = work / f"codes-{n}.npy", work / f"recon-{n}"
    comp = run([convae, "compress", str(folder), str(codes), "--model", model, "--json"])
    summary = json.loads(comp.pop("stdout"))
    dec = run([convae, "decompress", str(codes), str(recon), "--model", model, "--json"])
    dec_summary = json.loads(dec.pop("stdout"))
    written = sum(1 for _ in recon.rglob("*.png"))
    assert written == n, f"decompress wrote {written} of {n} PNGs"
    result = {
        "images": n, "png_bytes": png_bytes, "generate_seconds": round(generate, 1),
        "compress": {**comp, "images_per_s": round(n / comp["seconds"], 1),
                     "images_per_s_after_startup": summary["images_per_s"], "output_bytes": summary["output_bytes"],
                     "bytes_per_image": round(summary["output_bytes"] / n, 1)},
        "decompress": {**dec, "images_per_s": round(n / dec["seconds"], 1),
                       "images_per_s_after_startup": dec_summary["images_per_s"]},
    }
    shutil.rmtree(folder)
    shutil.rmtree(recon)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="images in the large run (a run at n/10 comes first)")
    ap.add_argument("--model", help="registry name or weights path (default: shipped seed, else train one briefly)")
    ap.add_argument("--workdir", type=Path, help="where to put the temporary folder (default: the system's)")
    args = ap.parse_args()
    convae = convae_script()
    with tempfile.TemporaryDirectory(prefix="convae-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        model = model_for(convae, args.model, work)
        baseline = run([sys.executable, "-c", "import convae.cli.app, convae.codec.api, torch"])
        baseline.pop("stdout")
        runs = [measure(convae, model, n, work) for n in (max(1, args.n // 10), args.n)]
    small, large = runs
    report = {
        "benchmark": "bench_large_job",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "model": model if not model.endswith(".safetensors") else "seed (trained 1 epoch by this script)",
        "baseline_import_only": baseline,
        "runs": runs,
        "rss_growth_mib_for_10x_images": {
            "compress": round(large["compress"]["peak_rss_mib"] - small["compress"]["peak_rss_mib"], 1),
            "decompress": round(large["decompress"]["peak_rss_mib"] - small["decompress"]["peak_rss_mib"], 1),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
