"""The rate-distortion report (``convae eval --rd``, ``nox -s rd``).

Fashion-MNIST test set: every shipped ``fm-*``, ``fmh-*`` and ``fmc-*`` variant (and ``seed``) through the real
compress/decompress path (bits from the .npy plus its manifest), JPEG/WebP/AVIF one file per image and as one
mosaic of all images, PNG (lossless size) and PCA at 8 bits. Photos (BSDS500/val, never trained
on): the shipped ``photo-*`` and ``photoh-*`` variants against JPEG/WebP/AVIF per image, in grayscale
and RGB.

Writes one JSON per codec in CompressAI's results schema under ``OUT/DATASET/``, ``summary.json``
(all points and Bjøntegaard deltas), ``summary.md`` (the same as Markdown tables) and ``rd.png``.
A codec's JSON is reused when it was made from the same images, settings and weights, so a
rerun only measures what changed.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from convae import __version__
from convae.atomic import write_bytes
from convae.data import load_fashion_mnist
from convae.evaluation.baselines import Point, mosaic, pca, per_image
from convae.evaluation.bjontegaard import bd_psnr, bd_psnr_vs_best, bd_rate
from convae.evaluation.codec_eval import codec_point
from convae.images import find_images, read_image, write_png

QUALITIES = {"jpeg": [10, 20, 30, 50, 70, 90], "webp": [0, 10, 25, 50, 75, 90], "avif": [10, 25, 40, 55, 70, 85]}
QUICK_QUALITIES = {"jpeg": [20, 70], "webp": [10, 75], "avif": [25, 70]}
PCA_COMPONENTS = [8, 16, 32, 64, 128]
PHOTOV_QUALITIES = [0, 25, 50, 62.5, 75, 87.5, 100]  # levels 0, 2, 4, 5, 6, 7, 8 of the variable-rate photo model
TARGET_RANGE = (0.5, 2.0)  # bits per pixel of the BD-PSNR against the best of the WebP and AVIF mosaics
Log = Callable[[str], None]


def _schema(name: str, description: str, points: list[Point], config: dict[str, Any]) -> dict[str, Any]:
    rows = [p.as_dict() for p in points]
    keys = ("psnr", "ssim", "bpp", "encoding_time", "decoding_time", "mean_psnr")
    results = {k: [r[k] for r in rows] for k in keys}
    results["settings"] = [r["setting"] for r in rows]
    return {"name": name, "description": description, "results": results, "config": config}


class Report:
    """Measures codecs on one data set, caching each codec's JSON under ``out/dataset``."""

    def __init__(self, out: Path, dataset: str, images: list[np.ndarray], log: Log) -> None:
        self.dir = out / dataset
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dataset, self.images, self.log = dataset, images, log
        self.codecs: dict[str, dict[str, Any]] = {}

    def measure(self, name: str, description: str, config: dict[str, Any],
                compute: Callable[[], list[Point]]) -> None:
        """Store ``compute()``'s points as codec ``name`` unless a cached JSON has the same config."""
        path = self.dir / f"{name}.json"
        config = {"images": len(self.images), "convae": __version__, **config}
        if path.is_file():
            doc = json.loads(path.read_text())
            if doc.get("config") == config:
                self.log(f"{self.dataset}: {name}: reused {path}")
                self.codecs[name] = doc
                return
        self.log(f"{self.dataset}: {name}: measuring")
        doc = _schema(name, description, compute(), config)
        write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode())
        self.codecs[name] = doc


def classical(report: Report, qualities: dict[str, list[int]], tiled: bool) -> None:
    """JPEG, WebP (method 6), AVIF and PNG one file per image, and with ``tiled`` as one mosaic."""
    images = report.images
    for codec, qs in qualities.items():
        report.measure(codec, f"Pillow {codec.upper()}, one file per image", {"qualities": qs},
                       lambda c=codec, qs=qs: [per_image(images, c, q) for q in qs])
        if tiled:
            report.measure(f"{codec}-mosaic", f"Pillow {codec.upper()}, all images tiled into one file",
                           {"qualities": qs}, lambda c=codec, qs=qs: [mosaic(np.stack(images), c, q) for q in qs])
    report.measure("png", "Pillow PNG (lossless), one file per image", {}, lambda: [per_image(images, "png", None)])
    if tiled:
        report.measure("png-mosaic", "Pillow PNG (lossless), one mosaic", {},
                       lambda: [mosaic(np.stack(images), "png", None)])


def convae_family(report: Report, name: str, models: list[str], folder: Path, work: Path) -> None:
    """Variants ``models`` through compress + decompress of ``folder`` (one point each)."""
    from convae.codec.format import VERSION
    from convae.zoo import load_model

    shas = [load_model(m.partition("@")[0]).sha256 for m in models]
    report.measure(name, "convae: compress to .npy + manifest, decompress to PNG; bpp counts both files",
                   {"models": models, "sha256": shas, "format_version": VERSION},
                   lambda: [codec_point(m, folder, report.images, work) for m in models])


def convae_families(report: Report, families: dict[str, list[str]], work: Path) -> None:
    """Each family with models through :func:`convae_family`, on the report's images written as PNGs under ``work``."""
    if any(families.values()):
        _write_pngs(report.images, work / "images")
    for name, models in families.items():
        if models:
            convae_family(report, name, models, work / "images", work)


def _write_pngs(images: list[np.ndarray], folder: Path) -> None:
    """``images`` as ``0.png``, ``1.png``, ... (zero-padded) in ``folder``, emptied first."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    width = len(str(len(images) - 1))
    for i, a in enumerate(images):
        write_png(folder / f"{i:0{width}d}.png", a)


def shipped(pattern: str) -> list[str]:
    """Registered variants matching ``pattern`` whose weights ship with the package."""
    from convae.registry import list_models
    from convae.zoo import shipped_weights

    return [m for m in list_models(pattern, pretrained=True) if shipped_weights(m) is not None]


def run_fashion(fashion: Path, out: Path, limit: int | None, quick: bool, families: dict[str, list[str]],
                log: Log) -> Report:
    """The Fashion-MNIST test-set report (``families``: codec name -> convae models)."""
    sets = load_fashion_mnist(fashion)
    train = sets["train"].images.permute(0, 2, 3, 1).numpy()
    test = sets["test"].images[:limit].permute(0, 2, 3, 1).numpy()
    images = list(test)
    report = Report(out, "fashion-mnist", images, log)
    classical(report, QUICK_QUALITIES if quick else QUALITIES, tiled=True)
    ks = PCA_COMPONENTS[1::2] if quick else PCA_COMPONENTS
    report.measure("pca", "PCA fitted on the training set, k coefficients at 8 bits (basis in the decoder)",
                   {"components": ks}, lambda: pca(train, test, ks))
    convae_families(report, families, out / "work" / "fashion-mnist")
    return report


def run_photos(photos: Path, out: Path, limit: int | None, quick: bool, families: dict[str, list[str]],
               log: Log) -> list[Report]:
    """Grayscale and RGB reports on a folder of photographs (BSDS500/val; ``families``: codec name -> models)."""
    _, files = find_images([photos])
    files = files[:limit]
    reports = []
    for channels, tag in ((1, "gray"), (3, "rgb")):
        images = [read_image(p, channels).pixels for p in files]
        report = Report(out, f"photos-{tag}", images, log)
        for codec, qs in (QUICK_QUALITIES if quick else QUALITIES).items():
            report.measure(codec, f"Pillow {codec.upper()}, one file per image", {"qualities": qs},
                           lambda c=codec, qs=qs, im=images: [per_image(im, c, q) for q in qs])
        convae_families(report, families, out / "work" / f"photos-{tag}")
        reports.append(report)
    return reports


def _curve(doc: dict[str, Any]) -> tuple[list[float], list[float]]:
    pts = [(b, p) for b, p in zip(doc["results"]["bpp"], doc["results"]["psnr"], strict=True) if p is not None]
    return [b for b, _ in pts], [p for _, p in pts]


def _at_rate(doc: dict[str, Any], bpp: float) -> float:
    """Baseline PSNR at ``bpp`` by linear interpolation in log-rate (NaN outside its range)."""
    rates, psnrs = _curve(doc)
    order = np.argsort(rates)
    x, y = np.log10(np.asarray(rates)[order]), np.asarray(psnrs)[order]
    lx = math.log10(bpp)
    return float(np.interp(lx, x, y)) if x[0] <= lx <= x[-1] else math.nan


def deltas(report: Report) -> dict[str, Any]:
    """Bjøntegaard deltas of each convae family against each lossy baseline, and per-point PSNR gaps."""
    ours = {k: v for k, v in report.codecs.items() if k.startswith("convae")}
    refs = {k: v for k, v in report.codecs.items() if not k.startswith("convae") and not k.startswith("png")}
    out: dict[str, Any] = {}
    for name, doc in ours.items():
        curve = _curve(doc)
        entry: dict[str, Any] = {"bd": {}, "points": []}
        if len(curve[0]) >= 2:
            for ref, rdoc in refs.items():
                entry["bd"][ref] = {"bd_psnr_db": _round(bd_psnr(_curve(rdoc), curve)),
                                    "bd_rate_percent": _round(bd_rate(_curve(rdoc), curve))}
            valid = {k: v["bd_psnr_db"] for k, v in entry["bd"].items() if v["bd_psnr_db"] is not None}
            if valid:
                entry["best_baseline"] = min(valid, key=valid.get)
            mosaics = [_curve(report.codecs[k]) for k in ("webp-mosaic", "avif-mosaic") if k in report.codecs]
            if mosaics:
                entry["bd_psnr_vs_best_webp_avif_mosaic_0.5_2bpp"] = _round(
                    bd_psnr_vs_best(mosaics, curve, TARGET_RANGE))
        for setting, bpp, p in zip(doc["results"]["settings"], doc["results"]["bpp"], doc["results"]["psnr"],
                                   strict=True):
            gaps = {ref: _round(p - _at_rate(rdoc, bpp)) for ref, rdoc in refs.items()}
            entry["points"].append({"model": setting["model"], "bpp": bpp, "psnr": p, "psnr_gain_at_equal_bpp": gaps})
        out[name] = entry
    return out


def _round(v: float) -> float | None:
    return round(v, 3) if math.isfinite(v) else None


def run_rd(out: Path, fashion: Path | None, photos: Path | None, limit: int | None = None, quick: bool = False,
           fm_models: list[str] | None = None, photo_models: list[str] | None = None,
           log: Log = lambda _: None) -> dict[str, Any]:
    """Run the whole report; returns the summary (also written to ``out/summary.json``) and draws ``out/rd.png``."""
    from convae.evaluation.plots import plot_rd

    out.mkdir(parents=True, exist_ok=True)
    reports: list[Report] = []
    if fashion is not None:
        families = {"convae-fm": shipped("fm-*"), "convae-fmh": shipped("fmh-*"), "convae-fmc": shipped("fmc-*"),
                    "convae-seed": shipped("seed")}
        if fm_models is not None:
            families = {"convae-fm": fm_models}
        reports.append(run_fashion(fashion, out, limit, quick, families, log))
    if photos is not None:
        photo_families = {"convae-photo": shipped("photo-*"), "convae-photoh": shipped("photoh-*"),
                          "convae-photov": [f"photov@{q:g}" for q in PHOTOV_QUALITIES] if shipped("photov") else []}
        if photo_models is not None:
            photo_families = {"convae-photo": photo_models}
        reports += run_photos(photos, out, limit, quick, photo_families, log)
    summary = {
        "convae": __version__,
        "quick": quick,
        "limit": limit,
        "datasets": {
            r.dataset: {"images": len(r.images), "megapixels_per_image": _megapixels(r.images), "codecs": r.codecs,
                        "deltas": deltas(r)} for r in reports
        },
    }
    write_bytes(out / "summary.json", (json.dumps(summary, indent=1) + "\n").encode())
    write_bytes(out / "summary.md", markdown(summary).encode())
    plot_rd(summary, out / "rd.png")
    return summary


def rd_paths(data: str | None, photos: Path | None) -> tuple[Path, Path]:
    """Fashion-MNIST folder and photo folder for the report; defaults under ``$CONVAE_DATA`` (``../shared/data``)."""
    import os

    from convae.errors import DataError, UsageError

    root = Path(os.environ.get("CONVAE_DATA", "../shared/data"))
    if data is not None and not data.startswith("fashion-mnist:"):
        raise UsageError(f"--rd --data {data!r}: give fashion-mnist:PATH")
    fashion = Path(data.split(":", 1)[1]) if data else root / "fashion-mnist"
    photo_dir = photos or root / "photos" / "BSDS500" / "val"
    for path in (fashion, photo_dir):
        if not path.is_dir():
            raise DataError(f"{path}: not found (pass --data fashion-mnist:PATH / --photos, or set CONVAE_DATA)")
    return fashion, photo_dir


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per convae point: bpp, PSNR and the PSNR gain over each baseline at equal rate."""
    rows = []
    for dataset, data in summary["datasets"].items():
        for family in data["deltas"].values():
            for point in family["points"]:
                gains = {f"gain vs {k} (dB)": v for k, v in point["psnr_gain_at_equal_bpp"].items() if v is not None}
                rows.append({"dataset": dataset, "model": point["model"], "bpp": point["bpp"], "psnr": point["psnr"],
                             **gains})
    return rows


def markdown(summary: dict[str, Any]) -> str:
    """README-ready tables: every point of every codec, and the Bjøntegaard deltas of convae."""
    lines = []
    for dataset, data in summary["datasets"].items():
        mp = data["megapixels_per_image"]
        lines += [f"### {dataset} ({data['images']} images, {mp:.3g} MP each on average)", "",
                  "| codec | setting | bpp | PSNR (mean MSE) | mean PSNR | SSIM | encode ms/img | decode ms/img "
                  "| encode s/MP | decode s/MP |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for codec, doc in data["codecs"].items():
            r = doc["results"]
            for i, setting in enumerate(r["settings"]):
                label = setting.get("model", setting.get("quality", setting.get("components", "")))
                if "npy_bytes" in setting:  # convae: also the rate without the manifest
                    share = setting["npy_bytes"] / (setting["npy_bytes"] + setting["manifest_bytes"])
                    label = f"{label} (.npy alone: {r['bpp'][i] * share:.3f} bpp)"
                lines.append(f"| {codec} | {label} | {r['bpp'][i]:.3f} | {_fmt(r['psnr'][i])} | "
                             f"{_fmt(r['mean_psnr'][i])} | {r['ssim'][i]:.4f} | {1000 * r['encoding_time'][i]:.3f} | "
                             f"{1000 * r['decoding_time'][i]:.3f} | {r['encoding_time'][i] / mp:.3f} | "
                             f"{r['decoding_time'][i] / mp:.3f} |")
        for family, d in data["deltas"].items():
            if d["bd"]:
                lines += ["", f"Bjøntegaard deltas of {family} (positive BD-PSNR / negative BD-rate = convae better):",
                          "", "| baseline | BD-PSNR (dB) | BD-rate (%) |", "|---|---:|---:|"]
                lines += [f"| {ref} | {_fmt(v['bd_psnr_db'])} | {_fmt(v['bd_rate_percent'])} |"
                          for ref, v in d["bd"].items()]
            key = "bd_psnr_vs_best_webp_avif_mosaic_0.5_2bpp"
            if key in d:
                lines += ["", f"BD-PSNR of {family} over the per-rate best of WebP-mosaic and AVIF-mosaic, "
                              f"0.5-2 bpp: {_fmt(d[key])} dB"]
        lines.append("")
    return "\n".join(lines)


def _megapixels(images: list[np.ndarray]) -> float:
    """Mean image size in megapixels (height x width): turns per-image times into seconds per megapixel."""
    return sum(a.shape[0] * a.shape[1] for a in images) / len(images) / 1e6


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"
