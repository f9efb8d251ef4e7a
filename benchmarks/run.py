"""convae's speed benchmark: training and coding against the blog's pipeline and Pillow, in one run.

Shared machines are noisy, so every headline figure is a ratio against a baseline measured in the
same run, on the same machine, with the same threads. Every measurement runs as its own process
(whole command, process start included) so peak RSS is per command. Writes ``results.json`` and
prints a table. ``--quick`` is a ~2-minute version (fewer blog-pipeline steps, 50 large images instead of 200).

    python benchmarks/run.py [--quick] [--device auto|cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("CONVAE_DATA", HERE.parent.parent / "shared" / "data"))
TARGET_MSE = 0.00923  # the blog pipeline's test MSE after its 50 epochs (issue 4)
BLOG_EPOCHS, TRAIN_IMAGES = 50, 60000
PHOTO_SETS = ("Urban100", "SunHays80", "McMaster", "BSDS500/test")  # never BSDS500/val, the evaluation set


def measure(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``cmd`` to completion: wall seconds, peak RSS (MiB) of its processes, stdout.

    Peak RSS is the kernel's high-water mark (VmHWM) of the command's process (read from /proc every
    10 ms) and of every process under it (image workers, training processes; every 100 ms), added
    up: each process's own peak, so a sum of peaks that need not coincide.
    ``ru_maxrss`` would also count this runner, whose memory a child inherits until it execs. Dirty
    pages left by earlier steps are flushed first (untimed), so no command pays for another's writes.
    """
    out, err = log.with_suffix(".out"), log.with_suffix(".err")
    peaks: dict[int, int] = {}
    os.sync()
    with out.open("w") as o, err.open("w") as e:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=o, stderr=e, env=env)
        for tick in itertools.count():
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            # the command's own process every 10 ms; the tree under it (a slower walk) every 100 ms
            for p in _process_tree(proc.pid) if tick % 10 == 0 else [proc.pid]:
                peaks[p] = max(peaks.get(p, 0), _high_water_kib(p))
            time.sleep(0.01)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed ({proc.returncode}): {' '.join(cmd)}\n{err.read_text()[-3000:]}")
    return {"seconds": round(seconds, 3), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mib": round((sum(peaks.values()) or usage.ru_maxrss) / 1024, 1), "stdout": out.read_text()}


def _process_tree(pid: int) -> list[int]:
    """``pid`` and every live process under it (from /proc/PID/task/*/children)."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # the process may have ended
                todo.extend(int(c) for c in task.read_text().split())
    return tree


def _high_water_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def last_json(text: str) -> dict[str, Any]:
    """The JSON document a command printed (the whole stdout, or its last line)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.strip().splitlines()[-1])


def write_fashion_pngs(folder: Path, count: int) -> int:
    """The first ``count`` Fashion-MNIST test images as 28x28 grayscale PNGs."""
    from convae.data import read_idx_images

    folder.mkdir(parents=True)
    for i, a in enumerate(read_idx_images(DATA / "fashion-mnist" / "t10k-images-idx3-ubyte.gz")[:count]):
        Image.fromarray(a, "L").save(folder / f"{i:05d}.png")
    return count


def write_large_pngs(folder: Path, count: int, photos: Path) -> tuple[int, str]:
    """``count`` 512x512 RGB PNGs: photos centre-cropped and resized, or generated when none are found."""
    folder.mkdir(parents=True)
    files = [p for s in PHOTO_SETS for p in sorted((photos / s).glob("*")) if p.is_file()] if photos.is_dir() else []
    for i in range(count):
        if files:
            with Image.open(files[i % len(files)]) as img:
                out = ImageOps.fit(img.convert("RGB"), (512, 512), Image.Resampling.LANCZOS)
        else:
            rng = np.random.default_rng(i)
            yy, xx = np.mgrid[0:512, 0:512] / 512.0
            rgb = [np.sin(xx * rng.uniform(2, 20) + yy * rng.uniform(2, 20) + rng.uniform(0, 6)) for _ in range(3)]
            out = Image.fromarray((np.stack(rgb, -1) * 100 + 127 + rng.normal(0, 8, (512, 512, 3))).clip(0, 255)
                                  .astype(np.uint8), "RGB")
        out.save(folder / f"{i:04d}.png")
    source = f"{photos} ({', '.join(PHOTO_SETS)}), centre crop + resize" if files else "generated (no photos found)"
    return count, source


def large_model(trained: Path) -> tuple[str, str]:
    """The default model of ``convae compress`` for the large images, else the benchmark's seed (grayscale)."""
    from convae.errors import ConvaeError
    from convae.zoo import DEFAULT_MODEL, load_model

    try:
        load_model(DEFAULT_MODEL)
        return DEFAULT_MODEL, f"{DEFAULT_MODEL} (the default model, pretrained RGB)"
    except ConvaeError:
        return str(trained), "seed trained in this run (grayscale: RGB is converted to L; no pretrained RGB model)"


def bench_training(args: argparse.Namespace, work: Path, env: dict[str, str]) -> tuple[dict[str, Any], Path]:
    """Blog pipeline throughput (a few steps, extrapolated) and convae's default recipe to the target MSE.

    convae trains twice with the same threads in all: one process using every thread, and (on a CPU
    with more than one thread) ``--nproc N --threads 1``, one single-thread process per thread, which
    the headline ratios use. The blog pipeline runs half its steps before convae's runs and half after
    (A-B-A), so a machine that speeds up or slows down during the run moves both sides of the ratio alike.
    """
    py = sys.executable
    fashion = DATA / "fashion-mnist"
    half = 250 if args.quick else 1500
    blog_cmd = [py, str(HERE / "blog_pipeline.py"), "--data", str(fashion), "--steps", str(half),
                "--threads", str(args.threads), "--device", args.device]
    procs = args.threads if args.device == "cpu" and args.threads > 1 else 1
    configs = {"one_process": ["--threads", str(args.threads)]}
    if procs > 1:
        configs["processes"] = ["--nproc", str(procs), "--threads", "1"]
    blogs = [measure(blog_cmd, env, work / "blog-before")]
    trained = {name: convae_training(flags, work / f"train-{name}", env, args.device)
               for name, flags in configs.items()}
    blogs.append(measure(blog_cmd, env, work / "blog-after"))
    halves = [last_json(b["stdout"]) for b in blogs]
    blog_ips = round(sum(h["images"] for h in halves) / sum(h["seconds"] for h in halves), 1)
    blog_50 = BLOG_EPOCHS * TRAIN_IMAGES / blog_ips
    runs = {name: run for name, (run, _) in trained.items()}
    headline_name = "processes" if procs > 1 else "one_process"
    headline = runs[headline_name]
    result = {
        "blog_pipeline": {
            "what": "torchvision FashionMNIST + ToTensor + DataLoader(batch_size=20, shuffle=True), Adam 1e-3, MSE",
            "steps_measured": sum(h["steps"] for h in halves),
            "images_per_s": blog_ips,
            "images_per_s_before_and_after_convae": [h["images_per_s"] for h in halves],
            "peak_rss_mib": max(b["peak_rss_mib"] for b in blogs),
            "seconds_for_50_epochs": round(blog_50, 1),
            "seconds_for_50_epochs_is": f"extrapolated from {sum(h['steps'] for h in halves)} steps measured in this"
                                        " run, half before and half after convae's training",
        },
        "convae": headline,
        "convae_runs": runs,
        "ratios": {
            "training_images_per_s_vs_blog": round(headline["images_per_s"] / blog_ips, 2),
            "time_to_blog_quality_speedup": (round(blog_50 / headline["wall_seconds_whole_command"], 1)
                                             if headline["reached_target"] else None),
            **{f"training_images_per_s_vs_blog_{name}": round(run["images_per_s"] / blog_ips, 2)
               for name, run in runs.items()},
        },
    }
    return result, trained[headline_name][1]


def convae_training(flags: list[str], folder: Path, env: dict[str, str], device: str) -> tuple[dict[str, Any], Path]:
    """``convae train --model seed``, default recipe, with ``flags``: loop images/s, test MSE, and the weights."""
    from convae.weightfile import read_weights

    folder.mkdir()
    weights = folder / "seed.safetensors"
    cmd = [sys.executable, "-m", "convae", "train", "--model", "seed", "--data",
           f"fashion-mnist:{DATA / 'fashion-mnist'}", "--out", str(weights), "--device", device, "--quiet", *flags]
    run = measure(cmd, env, folder / "train")
    history = json.loads(weights.with_name("seed.history.json").read_text())["history"]
    loop_seconds = sum(h["seconds"] for h in history)
    reached = next((h for h in history if h["test_mse"] <= TARGET_MSE), None)
    _, meta, _ = read_weights(weights)
    return {
        "command": " ".join(["convae train --model seed (default recipe)", *flags]),
        "recipe": json.loads(meta["recipe"]),
        "epochs": len(history),
        "images_per_s": round(len(history) * TRAIN_IMAGES / loop_seconds, 1),
        "test_mse_per_epoch": [round(h["test_mse"], 6) for h in history],
        "final_test_mse": round(history[-1]["test_mse"], 6),
        "target_test_mse": TARGET_MSE,
        "reached_target": history[-1]["test_mse"] <= TARGET_MSE,
        "first_epoch_at_target": reached["epoch"] if reached else None,
        "wall_seconds_whole_command": run["seconds"],
        "train_loop_seconds": round(loop_seconds, 1),
        "peak_rss_mib": run["peak_rss_mib"],
    }, weights


def bench_codec(args: argparse.Namespace, folder: Path, count: int, model: str, work: Path,
                env: dict[str, str]) -> dict[str, Any]:
    """convae compress + decompress vs Pillow WebP and JPEG encode + decode of the same PNGs.

    The three codecs run in turn, ``args.repeats`` rounds; each figure is the median over the rounds.
    """
    py = sys.executable
    tag = folder.name
    commands = {
        "convae": lambda out: (
            [py, "-m", "convae", "compress", str(folder), str(out / "codes.npy"), "--model", model, "--device",
             args.device, "--json", "--quiet"],
            [py, "-m", "convae", "decompress", str(out / "codes.npy"), str(out / "png"), "--model", model, "--device",
             args.device, "--json", "--quiet"]),
        **{fmt: (lambda out, fmt=fmt: (
            [py, str(HERE / "pillow_codec.py"), "encode", str(folder), str(out / "coded"), "--format", fmt],
            [py, str(HERE / "pillow_codec.py"), "decode", str(out / "coded"), str(out / "png"), "--format", fmt]))
           for fmt in ("webp", "jpeg")},
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in commands}
    for i in range(args.repeats):
        for name, make in commands.items():
            out = work / f"{tag}-{name}-{i}"
            out.mkdir()
            enc, dec = make(out)
            e, d = measure(enc, env, out / "encode"), measure(dec, env, out / "decode")
            runs[name].append({"encode": e, "decode": d, "bytes": last_json(e["stdout"])["output_bytes"]})
    result: dict[str, Any] = {"images": count, "model": model, "repeats": args.repeats}
    for name, rounds in runs.items():
        def med(step: str, key: str, rounds: list = rounds) -> float:
            return statistics.median(r[step][key] for r in rounds)

        result[name] = {
            "encode_images_per_s": round(count / med("encode", "seconds"), 1),
            "decode_images_per_s": round(count / med("decode", "seconds"), 1),
            "encode_plus_decode_seconds": round(statistics.median(r["encode"]["seconds"] + r["decode"]["seconds"]
                                                                  for r in rounds), 3),
            "encode_plus_decode_seconds_each_round": [round(r["encode"]["seconds"] + r["decode"]["seconds"], 3)
                                                      for r in rounds],
            "cpu_seconds": {"encode": med("encode", "cpu_seconds"), "decode": med("decode", "cpu_seconds")},
            "peak_rss_mib": {"encode": med("encode", "peak_rss_mib"), "decode": med("decode", "peak_rss_mib")},
            "bytes": rounds[0]["bytes"],
        }
    mine = result["convae"]["encode_plus_decode_seconds"]
    result["ratios"] = {f"convae_speed_vs_{f}": round(result[f]["encode_plus_decode_seconds"] / mine, 2)
                        for f in ("webp", "jpeg")}
    return result


def table(results: dict[str, Any]) -> None:
    """The headline ratios as a Rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"convae benchmark ({'quick' if results['quick'] else 'full'}, {results['machine']['device']}, "
                    f"{results['machine']['threads']} threads)")
    for col in ("measure", "convae", "baseline", "ratio", "target"):
        t.add_column(col)
    tr = results["training"]
    for name, run in tr["convae_runs"].items():
        t.add_row(f"training images/s ({run['command'].split(')')[-1].strip() or 'one process'})",
                  f"{run['images_per_s']:.0f}", f"{tr['blog_pipeline']['images_per_s']:.0f} (blog)",
                  f"{tr['ratios'][f'training_images_per_s_vs_blog_{name}']}x",
                  ">= 4x" if run == tr["convae"] else "")
    ttq = tr["ratios"]["time_to_blog_quality_speedup"]
    t.add_row(f"seconds to test MSE <= {TARGET_MSE}", f"{tr['convae']['wall_seconds_whole_command']:.0f}"
              f" (MSE {tr['convae']['final_test_mse']:.5f})", f"{tr['blog_pipeline']['seconds_for_50_epochs']:.0f}"
              " (blog, 50 epochs, extrapolated)", f"{ttq}x" if ttq else "not reached", ">= 20x")
    for key, label in (("fashion", "Fashion-MNIST test PNGs"), ("large", "512x512 RGB PNGs")):
        c = results["codec"][key]
        for fmt in ("webp", "jpeg"):
            t.add_row(f"{label} ({c['images']}): encode+decode s", f"{c['convae']['encode_plus_decode_seconds']:.1f}",
                      f"{c[fmt]['encode_plus_decode_seconds']:.1f} (Pillow {fmt})",
                      f"{c['ratios'][f'convae_speed_vs_{fmt}']}x", ">= 1x" if (key, fmt) == ("fashion", "webp") else "")
    Console().print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~2 minutes: fewer blog-pipeline steps and large images")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for every process")
    ap.add_argument("--repeats", type=int, default=0, help="codec rounds, median taken (default: 3, quick: 1)")
    ap.add_argument("--photos", type=Path, default=DATA / "photos")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if not (DATA / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        raise SystemExit(f"Fashion-MNIST not found under {DATA} (set CONVAE_DATA)")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
    started = time.time()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="convae-bench-") as tmp:
        work = Path(tmp)
        training, weights = bench_training(args, work, env)
        n_small = write_fashion_pngs(work / "fashion", 10000)
        n_large, large_source = write_large_pngs(work / "large", 50 if args.quick else 200, args.photos)
        big_model, big_desc = large_model(weights)
        codec = {
            "fashion": bench_codec(args, work / "fashion", n_small, str(weights), work, env),
            "large": {**bench_codec(args, work / "large", n_large, big_model, work, env), "model": big_desc,
                      "source": large_source},
        }
        codec["fashion"]["model"] = "seed trained in this run"
    results = {
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "device": args.device,
                    "python": platform.python_version(), "torch": torch.__version__,
                    "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in os.getloadavg()],
                    "note": "absolute times are noisy on a shared machine; compare the ratios"},
        "seconds": round(time.time() - started, 1),
        "training": training,
        "codec": codec,
        "targets": {
            "training_4x_blog": training["ratios"]["training_images_per_s_vs_blog"] >= 4,
            "blog_quality_20x_sooner": (training["ratios"]["time_to_blog_quality_speedup"] or 0) >= 20,
            "fashion_codec_at_least_webp_speed": codec["fashion"]["ratios"]["convae_speed_vs_webp"] >= 1,
        },
    }
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    table(results)


if __name__ == "__main__":
    main()
