"""``convae``: train, evaluate and use convolutional-autoencoder image codecs from the shell.

Library imports happen inside the commands so ``--help`` and ``--version`` stay instant.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from convae.cli.console import errors, fail, print_json, progress, stderr, stdout
from convae.cli.pipes import STDIO, stdin_codes, stdin_inputs, stdout_codes, stdout_image
from convae.cli.usage import ConvaeGroup, ConvaeTyper

from convae._imports import torch_loading

DEFAULT_MODEL = "photov"  # convae.zoo.DEFAULT_MODEL, spelt out so --help needs no library import (tested)

app = ConvaeTyper(
    name="convae",
    help="Learned image codecs you can train, measure and script.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    cls=ConvaeGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _complete_model(incomplete: str) -> list[tuple[str, str]]:
    """Shell completion for --model: registry names (with their descriptions), else .safetensors files."""
    if "/" in incomplete or incomplete.startswith("."):
        import glob

        found = [p + "/" if os.path.isdir(p) else p for p in glob.glob(glob.escape(incomplete) + "*")]
        return [(p, "folder" if p.endswith("/") else "weights") for p in found if p.endswith(("/", ".safetensors"))]
    with torch_loading():
        from convae.registry import get_spec, list_models

    return [(name, get_spec(name).description or "") for name in list_models(f"{incomplete}*")]


def _named(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise typer.BadParameter("give a model name or a weights file (see convae models)")
    return value


ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", metavar="NAME|PATH", autocompletion=_complete_model, callback=_named,
    help=f"Registry name (default {DEFAULT_MODEL}; see [bold]convae models[/]) or PATH.safetensors.")]
DecoderModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", metavar="NAME|PATH", autocompletion=_complete_model, callback=_named,
    help="The weights the codes were made with: a registry name or PATH.safetensors (default: the one the "
    "manifest names).")]


def _whole_quality(value: float | None) -> float | int | None:
    """-q as typed: a whole number stays an int (it names a -qN variant); 62.5 is for variable-rate models."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number")
    return int(value) if value is not None and value.is_integer() else value


QualityOpt = Annotated[float | None, typer.Option(
    "--quality", "-q", metavar="N", callback=_whole_quality, help=f"Quality 0-100 (fractions too) for a "
    f"variable-rate model (the default {DEFAULT_MODEL}, your own); for a shipped family, N picks NAME-qN (photoh "
    "0-3, fmc 1-6). Higher = better quality, more bytes.")]
DataOpt = Annotated[str, typer.Option("--data", "-d", metavar="SPEC",
                                      help="fashion-mnist:PATH[:train|test] or a folder of images.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON Lines on stdout (one object per line) instead "
                                       "of a table.")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="Print nothing but errors (no progress bar, no table).")]
DeviceOpt = Annotated[Literal["auto", "cpu", "cuda"], typer.Option(
    "--device", help="auto: cuda for train when PyTorch sees a GPU, else cpu; cpu for compress and decompress.")]
BatchOpt = Annotated[int, typer.Option(metavar="N", help="Images per batch.")]
TrainOutOpt = Annotated[Path, typer.Option(
    "--out", "-o", metavar="FILE|NAME", help="Where to write the weights: FILE.safetensors, or a NAME (no suffix) for "
    "the user model folder, then usable as -m NAME (see docs/TRAINING.md).")]
TrainModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", metavar="NAME", help="Variant to train (expert). Omitted: photov at every rate, fine-tuned from "
    "the shipped photo weights, every choice made from the data and printed.")]
ValOpt = Annotated[str | None, typer.Option(metavar="FRACTION|DIR", help="Held-out validation: a fraction of --data "
                                            "(default 0.1 without --model) or a folder; bpp and PSNR are reported "
                                            "as it goes.")]
TimeOpt = Annotated[str | None, typer.Option("--time", metavar="DURATION", help="Stop after this much training: 90s, "
                                             "20m, 1h (default 20m without --model).")]
NprocOpt = Annotated[int, typer.Option(metavar="N", help="Launch N data-parallel processes with torchrun (DDP; on a "
                                       "CPU, N = cores with --threads 1 is about as fast as one process for small "
                                       "models).")]
InitOpt = Annotated[str | None, typer.Option(metavar="NAME|PATH", help="Start from these weights: a shipped variant "
                                             "(e.g. photov) or a .safetensors file; what fits by name and shape.")]


def _pixel_limit(value: int | None) -> int | None:
    """Hand --max-pixels to the library and its worker processes, which read CONVAE_MAX_PIXELS."""
    if value is not None:
        from convae.images import LIMIT_ENV

        os.environ[LIMIT_ENV] = str(value)
    return value


MaxPixelsOpt = Annotated[int | None, typer.Option(
    metavar="N", min=1, max=1 << 31, callback=_pixel_limit, help="Refuse images over N pixels as possible "
    "decompression bombs (default 67108864 = 8192x8192; also CONVAE_MAX_PIXELS). Memory grows with it.")]


def _version(value: bool) -> None:
    if value:
        from convae import __version__

        typer.echo(f"convae {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Learned image codecs you can train, measure and script."""


def _device(name: str) -> str:
    if name not in ("auto", "cpu", "cuda"):
        raise fail(f"--device {name!r}: use auto, cpu or cuda", 2)
    if name == "cpu":  # no PyTorch import: compress and decompress start their image workers first
        return name
    with torch_loading():
        import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise fail("--device cuda: no CUDA device is available", 2)
    return name


def _table(title: str, rows: dict, console: Any = stdout) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for k, v in rows.items():
        table.add_row(str(k), f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)


@app.command("models")
def models_cmd(
    pattern: Annotated[str, typer.Argument(metavar="PATTERN", help="Wildcard filter, e.g. 'fm-*'.")] = "*",
    json_out: JsonOpt = False,
) -> None:
    """List registered variants; the default model is marked.

    Example: [bold]convae models 'fm-*' --json[/]
    """
    with errors():
        from convae.zoo import DEFAULT_MODEL as default
        from convae.zoo.catalog import describe_models

        rows = [r | {"default": r["name"] == default} for r in describe_models(pattern)]
        if not rows:
            raise fail(f"no registered model matches {pattern!r}; `convae models` lists them all", 1)
        if json_out:
            print_json(*rows)
            return
        _models_table(rows)


def _models_table(rows: list[dict[str, Any]]) -> None:
    """``convae models`` as a Rich table, the default model marked."""
    from rich.table import Table

    sets = sorted({r["eval_set"] for r in rows if r["eval_set"]})
    default = "* the default model. " if any(r.get("default") for r in rows) else ""
    table = Table(title="convae variants", caption=default + "bpp, PSNR: measured on " + ("; ".join(sets) or "-")
                  + ". Pick a rate with -q N, or compress --target-psnr/--max-bpp.")
    for col in ("name", "quality", "bpp", "PSNR", "ch", "params", "latent 256x256", "weights"):
        table.add_column(col, no_wrap=col in ("name", "quality"))
    for r in rows:
        q = r["qualities"]
        rates = f"{r['quality']} ({q[0]}-{q[-1]})" if len(q) > 1 else str(r["quality"]) if q else "-"
        table.add_row(r["name"] + (" *" if r["default"] else ""), rates,
                      f"{r['bpp']:.3f}" if r["bpp"] is not None else "-",
                      f"{r['psnr']:.2f}" if r["psnr"] is not None else "-", str(r["in_channels"]), f"{r['params']:,}",
                      "x".join(map(str, r["latent_256"])), "yes" if r["pretrained"] else "no")
    stdout.print(table)


def _config_overrides(items: list[str], known: dict, model: str) -> dict:
    """``--config KEY=VALUE`` items as a dict; each key must be in the variant's config, each value JSON."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise fail(f"--config {item!r}: give KEY=VALUE with KEY one of {', '.join(sorted(known))} ({model})", 2)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            raise fail(f"--config {item!r}: {value!r} is not a JSON value (e.g. 0, 0.5, true)", 2) from None
    return out


def _model_config(model: str, known: dict, config: list[str], lmbda: float | None) -> dict:
    """The variant's config overrides from ``--config`` items and ``--lmbda`` (shorthand for --config lmbda=X)."""
    overrides = _config_overrides(config, known, model)
    if lmbda is not None:
        if "lmbda" not in known:
            raise fail(f"--lmbda: variant {model!r} has no rate term", 2)
        if "lmbda" in overrides:
            raise fail("give --lmbda or --config lmbda=..., not both", 2)
        overrides["lmbda"] = lmbda
    return overrides


def _extra_metadata(net: Any, meta: list[str], init: str | None) -> dict[str, str]:
    """What the weights record beyond training's own: ``--meta KEY=VALUE`` items, and what ``--init`` loaded."""
    extra = dict(item.split("=", 1) for item in meta if "=" in item)
    if len(extra) != len(meta):
        raise fail("--meta takes KEY=VALUE", 2)
    if init is not None:
        from convae.zoo import warm_start

        extra |= warm_start(net, init)
    return extra


def _set_threads(threads: int | None) -> None:
    """``--threads``: PyTorch's CPU threads in this process."""
    if threads is None:
        return
    if threads < 1:
        raise fail(f"--threads {threads}: must be at least 1", 2)
    import torch

    torch.set_num_threads(threads)


def _train_reports(bar: Any, model: str, recipe: Any, images: int, show: bool,
                   seconds: float | None = None, lines: tuple[str, ...] = ()) -> tuple[Callable, Callable]:
    """``train``'s step and epoch callbacks: the progress bar (images, or time with a budget), the opening
    lines (the automatic choices, the recipe) and one line per epoch."""
    task = bar.task_ids[0]
    clock = {"start": time.perf_counter(), "seen": 0}
    of = "" if seconds else f"/{recipe.epochs}"

    def on_step(n: int, loss: float) -> None:
        if not clock["seen"] and show:  # printed once training really starts (inputs are valid)
            for line in lines:
                stderr.print(f"auto {line}")
            world = int(os.environ.get("WORLD_SIZE", "1"))
            stderr.print(f"train {model}: global batch {recipe.batch_size} = {world} process(es) x"
                         f" {recipe.batch_size // world}, lr {recipe.lr} ({recipe.schedule})"
                         + ("" if seconds else f", {recipe.epochs} epochs"))
        clock["seen"] += n
        elapsed = time.perf_counter() - clock["start"]
        epoch = min(clock["seen"] // images + 1, recipe.epochs)
        info = f"epoch {epoch}{of}  mse {loss:.5f}  {clock['seen'] / max(elapsed, 1e-9):,.0f} img/s"
        if seconds:
            bar.update(task, completed=min(elapsed, seconds), info=info)
        else:
            bar.update(task, advance=n, info=info)

    def on_epoch(rec: dict) -> None:
        if show:
            test = f"  test {rec['test_mse']:.5f}" if rec["test_mse"] is not None and "val" not in rec else ""
            rate = f"  bpp {rec['bpp']:.3f}" if "bpp" in rec else ""
            stderr.print(f"epoch {rec['epoch']}{of}  train mse {rec['train_mse']:.5f}{test}{rate}"
                         f"  {rec['images_per_s']:.0f} img/s" + _val_text(rec))

    return on_step, on_epoch


def _val_text(rec: dict) -> str:
    """An epoch's validation as ``  val q0 0.120 bpp 27.31 dB | q50 ...`` (empty when it was not validated)."""
    if "val" not in rec:
        return ""
    points = [(f"q{q} " if q != "-" else "") + (f"{v['bpp']:.3f} bpp " if v["bpp"] is not None else "")
              + f"{v['psnr']:.2f} dB" for q, v in rec["val"].items()]
    return "  val " + " | ".join(points)


def _report_saved(out: Path, result: Any, meta: dict[str, Any]) -> None:
    """``train``'s last line: where the weights went, why the run ended, the final losses or best validation."""
    last = result.history[-1]
    best = meta.get("validation")
    stopped = f"; stopped: {meta['stopped']}" if meta.get("stopped") not in (None, "epochs done") else ""
    if best:
        text = _val_text({"val": best["points"]}).strip()
        stderr.print(f"saved {out} (sha256 {result.sha256[:12]}…){stopped}; best validation (epoch {best['epoch']}): "
                     f"{text}")
        return
    stderr.print(f"saved {out} (sha256 {result.sha256[:12]}…){stopped}; train MSE {last['train_mse']:.5f}"
                 + (f", test MSE {last['test_mse']:.5f}" if last["test_mse"] is not None else ""))


def _train_setup(model: str | None, args: dict[str, Any]) -> tuple[Any, Any, Any, Any, Any, dict[str, str]]:
    """The network, data, recipe, crop, stop rule and metadata of a run: chosen from the data without
    ``--model`` (each choice printed once), else from the flags."""
    from convae.registry import create_model, get_spec

    from convae.data import load_dataset
    from convae.training.auto import Overrides, build, held_out, parse_val, plan_run
    from convae.training.duration import parse_duration
    from convae.training.recipes import get_recipe
    from convae.training.stopping import StopRule

    seconds = parse_duration(args["time"]) if args["time"] is not None else None
    extra = _extra_metadata(None, args["meta"] or [], None)
    if model is None:
        if args["config"] or args["lmbda"] is not None:
            raise fail("--config and --lmbda need --model (the automatic run trains photov at every rate)", 2)
        given = Overrides(args["epochs"], args["batch_size"], args["lr"], args["crop"], args["init"],
                          tuple(args["exclude"] or ()), args["limit"],
                          args.get("checkpoint"))
        named = None if args["recipe"] is None else get_recipe(args["recipe"], epochs=args["epochs"],
                                                               batch_size=args["batch_size"], lr=args["lr"])
        plan = plan_run(args["data"], args["val"], seconds, args["seed"], given, args["say"])
        if named is not None:
            plan.recipe = named
            plan.choose("recipe", named.as_dict(), f"recipe {args['recipe']} (--recipe)")
        net, record = build(plan)
        return net, plan.data, plan.recipe, plan.crop, plan.stop, {**extra, **record, "auto": plan.choices,
                                                                   "auto_lines": plan.lines}
    chosen = get_recipe(args["recipe"] or "fast", epochs=args["epochs"], batch_size=args["batch_size"], lr=args["lr"])
    net = create_model(model, **_model_config(model, get_spec(model).config, args["config"] or [], args["lmbda"]))
    extra |= _extra_metadata(net, [], args["init"])
    ds = load_dataset(args["data"], net.in_channels, exclude=tuple(args["exclude"] or ()), limit=args["limit"])
    stop = None
    if args["val"] is not None or seconds is not None:
        if args["val"] is not None:
            ds.train, ds.test, how = held_out(ds.train, parse_val(args["val"]), net.in_channels, args["seed"])
            ds.info = {**ds.info, "validation": how}
        stop = StopRule(seconds=seconds, patience=None)
    return net, ds, chosen, args["crop"], stop, extra


@app.command("train")
def train_cmd(
    out: TrainOutOpt,
    data: DataOpt,
    model: TrainModelOpt = None,
    val: ValOpt = None,
    time_limit: TimeOpt = None,
    recipe: Annotated[str | None, typer.Option(metavar="NAME", help="Recipe: fast (default with --model) or blog.")]
    = None,
    epochs: Annotated[int | None, typer.Option(metavar="N", help="Epochs (recipe default if omitted).")] = None,
    batch_size: Annotated[int | None, typer.Option(metavar="N", help="Global batch size.")] = None,
    lr: Annotated[float | None, typer.Option(metavar="LR", help="(Peak) learning rate.")] = None,
    crop: Annotated[int | None, typer.Option(metavar="N", help="Train on random N x N patches.")] = None,
    seed: Annotated[int, typer.Option(metavar="N", help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT's checkpoint (the same flags as the run it "
                                         "continues).")] = False,
    nproc: NprocOpt = 1,
    threads: Annotated[int | None, typer.Option(metavar="N", help="Torch CPU threads per process.")] = None,
    init: InitOpt = None,
    limit: Annotated[int | None, typer.Option(metavar="N", help="Train on the first N training images only.")] = None,
    lmbda: Annotated[float | None, typer.Option(metavar="LAMBDA", help="Rate-distortion weight (variants with a "
                                                "rate term).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(metavar="GLOB", help="Leave out folder images matching this "
                                                      "glob.")] = None,
    meta: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE", help="Recorded in the weights' metadata.")]
    = None,
    config: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE", help="JSON value overriding the "
                                                     "variant's config.")] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a codec and save safetensors weights, loss history (JSON) and a loss plot (PNG).

    Example: [bold]convae train --data my-images/ --out faces --time 20m[/] (then [bold]convae compress imgs/
    out.npy -m faces -q 60[/]); expert: [bold]convae train --model seed --data fashion-mnist:PATH --epochs 5 --out
    seed.safetensors[/]
    """
    from convae._imports import freeze_imports

    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        from convae.training.distributed import launch

        code = launch(nproc)
        freeze_imports()  # the launcher's exit need not traverse torchrun's objects
        raise typer.Exit(code)
    with errors():
        with torch_loading():
            import torch

            import convae.training.train  # noqa: F401  (imported under torch_loading's message)
            from convae.training.distributed import setup_distributed
            from convae.zoo import user_model_path
        freeze_imports()  # this process's PyTorch objects: never traversed again (docs/PERFORMANCE.md)
        _set_threads(threads)
        dev = _device(device)
        rank = setup_distributed(dev)
        torch.manual_seed(seed)  # initialisation; train() seeds the data order
        args = {"data": data, "val": val, "time": time_limit, "recipe": recipe, "epochs": epochs, "lr": lr,
                "batch_size": batch_size, "crop": crop, "seed": seed, "init": init, "limit": limit, "lmbda": lmbda,
                "exclude": exclude, "meta": meta, "config": config}
        _train_run(user_model_path(str(out)), model, args, {"resume": resume, "force": force, "device": dev},
                   show=rank == 0 and not quiet)


def _train_run(out: Path, model: str | None, args: dict[str, Any], how: dict[str, Any], show: bool) -> None:
    """Set up and run one training (this process's share), with progress and the closing line."""
    from convae.training.auto import display_name
    from convae.training.collective import rank_world
    from convae.training.outputs import check_outputs, checkpoint_path
    from convae.training.train import train

    if rank_world()[0] == 0:
        check_outputs(out, how["resume"], how["force"])  # before the data loads and any trial trains
    resumed = checkpoint_path(out) if how["resume"] else None
    say = (lambda line: stderr.print(f"auto {line}")) if show else (lambda line: None)
    net, ds, chosen, crop_used, stop, extra = _train_setup(model, {**args, "checkpoint": resumed, "say": say})
    lines = tuple(extra.pop("auto_lines", ()))
    budget = stop.seconds if stop is not None else None
    total = int(budget) if budget else len(ds.train) * chosen.epochs
    name = display_name(net)
    with progress(total, f"train {name}", quiet=not show, info="") as bar:
        on_step, on_epoch = _train_reports(bar, name, chosen, len(ds.train), show, budget, lines)
        result = train(net, ds, out, chosen, seed=args["seed"], crop=crop_used, on_step=on_step, on_epoch=on_epoch,
                       extra_metadata=extra, stop=stop, **how)
    if show:
        _report_saved(out, result, result.metadata)


@app.command("eval")
def eval_cmd(
    data: Annotated[str | None, typer.Option("--data", "-d", metavar="SPEC", help="fashion-mnist:PATH[:train|test] "
                                             "or a folder of images (--rd: fashion-mnist:PATH, default under "
                                             "$CONVAE_DATA).")] = None,
    model: ModelOpt = None,
    quality: QualityOpt = None,
    bits: Annotated[int | None, typer.Option(metavar="N", help="Quantisation bits (uniform variants).")] = None,
    limit: Annotated[int | None, typer.Option(metavar="N", help="Evaluate only the first N images.")] = None,
    grid: Annotated[Path | None, typer.Option(metavar="PNG", help="Write originals above reconstructions to this "
                                              "PNG.")] = None,
    grid_count: Annotated[int, typer.Option(metavar="N", help="Images in the grid.")] = 16,
    rd: Annotated[bool, typer.Option("--rd", help="Rate-distortion report: shipped variants vs JPEG/WebP/AVIF/PCA.")]
    = False,
    photos: Annotated[Path | None, typer.Option(metavar="DIR", help="With --rd: photo evaluation folder (default "
                                                "BSDS500/val).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="With --rd: output folder.")] = Path("rd/out"),
    quick: Annotated[bool, typer.Option(help="With --rd: two qualities per codec (a smoke run).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Measure MSE, PSNR, SSIM and bits per pixel of a model on a data set, or (--rd) the RD report.

    Example: [bold]convae eval --model seed --data fashion-mnist:data/fmnist --json[/]
    """
    with errors():
        if rd:
            if quality is not None:
                raise fail("--quality does not apply to --rd, which compares every shipped rate", 2)
            return _rd_report(data, photos, out, limit, quick, json_out)
        if data is None:
            raise fail("--data is required (or pass --rd)", 2)
        if grid is not None and grid.exists():
            raise fail(f"{grid} already exists; remove it or choose another --grid", 1)
        if not data.startswith("fashion-mnist:") and Path(data).is_dir():
            return _eval_folder(Path(data), model, quality, bits, limit, grid, json_out)
        with torch_loading():
            from convae.evaluation.evaluate import evaluate

        result = evaluate(model, data, bits=bits, limit=limit, grid=grid, grid_count=grid_count, quality=quality)
        if json_out:
            print_json(result)
        else:
            _table(f"eval {result['model']} on {data}", result)


def _eval_folder(folder: Path, model: str | None, quality: int | None, bits: int | None, limit: int | None,
                 grid: Path | None, json_out: bool) -> None:
    """``convae eval --data DIR``: the model through compress and decompress, as a table or one JSON line."""
    if grid is not None:
        raise fail("--grid draws data set tiles; for a folder, decompress it and view the PNGs", 2)
    with torch_loading():
        from convae.evaluation.codec_eval import evaluate_folder
    result = evaluate_folder(model, folder, quality, bits, limit)
    if json_out:
        print_json(result)
    else:
        _table(f"eval {result['model']} on {folder}", result)


def _rd_report(data: str | None, photos: Path | None, out: Path, limit: int | None, quick: bool,
               json_out: bool) -> None:
    """``convae eval --rd``: the rate-distortion report, its summary as a table or one JSON line."""
    with torch_loading():
        from convae.evaluation.rd import rd_paths, run_rd, summary_rows

    fashion, photo_dir = rd_paths(data, photos)
    summary = run_rd(out, fashion, photo_dir, limit=limit, quick=quick, log=lambda m: stderr.print(m))
    if json_out:
        print_json(summary)
        return
    for row in summary_rows(summary):
        _table(f"{row.pop('dataset')}: {row.pop('model')}", row)
    stderr.print(f"wrote {out / 'summary.json'} and {out / 'rd.png'}")


def _run_codec(title: str, run: Callable[..., Any], *args: Any, device: str, json_out: bool, quiet: bool,
               piped: str | None = None, **kwargs: Any) -> Any:
    """Call ``codec.compress``/``codec.decompress`` under a progress bar, report its summary and return it.

    The bar (and Rich's refresh thread) starts at the first batch: the command forks its image
    workers before that, and forks only while no other thread runs. The library reports the run's
    image count with each batch; the bar gets it before its first frame, so it never shows ``0/?``.
    ``--device auto`` is the CPU here: no PyTorch import before the fork, and the codec's fast path.
    ``piped`` names the summary key whose output goes to stdout (``-``): the table then goes to stderr.
    """

    def advance(n: int, total: int) -> None:
        bar.update(bar.task_ids[0], advance=n, total=total)
        if not bar.live.is_started:
            bar.start()

    with progress(None, title, quiet, start=False, unit="img") as bar:
        summary = run(*args, device=_device("cpu" if device == "auto" else device), **kwargs, progress=advance)
    if piped:  # the caller reports once the data reached stdout
        summary.extra[piped] = "-"
    else:
        _report(summary.as_dict(), title, json_out, quiet, stdout)
    return summary


def _npy_output(command: str, out: Path, usage: str) -> None:
    """Refuse an output without the .npy suffix as a usage error, before any input is read."""
    if out.suffix != ".npy":
        raise fail(f"{command}: the output {str(out)!r} must end in .npy (usage: convae {command} {usage})", 2)


@app.command("compress")
def compress_cmd(
    paths: Annotated[list[Path], typer.Argument(metavar="INPUT... OUT.npy", show_default=False,
                                                help="Image files and/or folders, then the output OUT.npy "
                                                "(one file: codes and manifest).")],
    model: ModelOpt = None,
    quality: QualityOpt = None,
    bits: Annotated[int | None, typer.Option(metavar="N", help="Quantisation bits (default: the model's).")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Store plain integer latents, no entropy coding.")] = False,
    shard: Annotated[str | None, typer.Option(metavar="K/N", help="Only the K-th of N slices of the input list.")]
    = None,
    on_error: Annotated[Literal["stop", "skip"], typer.Option(help="Stop at an unreadable input, or skip it "
                                                              "(and exit 1).")] = "stop",
    verify: Annotated[bool, typer.Option("--verify", help="Also report PSNR/SSIM of the reconstructions (decodes "
                                         "the codes as well: about 1.5x the time).")] = False,
    gray: Annotated[bool, typer.Option("--gray", help="Code colour images as gray on purpose with a one-channel "
                                       "model (refused otherwise).")] = False,
    target_psnr: Annotated[float | None, typer.Option(metavar="DB", help="Pick the lowest quality of the model "
                                                      "whose PSNR over the whole job reaches DB (one quality per "
                                                      "job, found by bisection: ~7 passes for 0-100).")] = None,
    max_bpp: Annotated[float | None, typer.Option(metavar="X", help="Pick the highest quality of the model whose "
                                                  "code file stays within X bits per pixel (with --target-psnr: "
                                                  "the lowest meeting it within X).")] = None,
    effort: Annotated[int, typer.Option(metavar="N", min=0, help="Refine each image's latents in N gradient steps "
                                        "before coding: fewer bytes at the same quality (about 7% at 100), "
                                        "about 1 s per step and megapixel on one core. 0 = off.")] = 0,
    batch_size: BatchOpt = 256,
    device: DeviceOpt = "auto",
    max_pixels: MaxPixelsOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compress images into one code file OUT.npy (its manifest inside; np.load reads it).

    A single - reads one image from stdin; OUT.npy - writes the code file to stdout.

    Example: [bold]convae compress images/ out.npy -q 3[/]
    """
    if len(paths) < 2:
        raise fail("compress: give at least one input and the output (usage: convae compress INPUT... OUT.npy)", 2)
    *inputs, out = paths
    if out != STDIO:
        _npy_output("compress", out, "INPUT... OUT.npy")
    piped = paths[-1] == STDIO
    with errors():
        with stdin_inputs(inputs) as inputs, stdout_codes(out, json_out) as out:
            from functools import partial

            from convae.codec.api import compress, parse_shard

            k_n = parse_shard(shard)
            if target_psnr is not None or max_bpp is not None:
                if quality is not None:
                    raise fail("give -q N or --target-psnr/--max-bpp, not both", 2)
                from convae.codec.target import compress_to_target

                compress = partial(compress_to_target, target_psnr=target_psnr, max_bpp=max_bpp)
            summary = _run_codec("compress", compress, inputs, out, model=model, quality=quality, bits=bits,
                                 raw=raw, shard=k_n, on_error=on_error, force=force, verify=verify, effort=effort,
                                 batch_size=batch_size, device=device, json_out=json_out, quiet=quiet, gray=gray,
                                 piped="codes" if piped else None)
        if piped:
            _report(summary.as_dict(), "compress", json_out, quiet, stderr)
        if summary.skipped:
            raise typer.Exit(1)


@app.command("decompress")
def decompress_cmd(
    codes: Annotated[Path, typer.Argument(metavar="CODES.npy", help="The code file (or a 0.2 .npy with its .json); "
                                          "- reads it from stdin.")],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Folder for the images; - writes the one image "
                                            "of a one-image code file to stdout.")],
    model: DecoderModelOpt = None,
    fmt: Annotated[Literal["png", "npy"], typer.Option("--format", help="png: images at their original size and "
                                                       "mode; npy: one uint8 (H, W, C) array file per image.")]
    = "png",
    batch_size: BatchOpt = 256,
    device: DeviceOpt = "auto",
    max_pixels: MaxPixelsOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Decode a code file into one PNG per image, at original size and mode (or .npy arrays: --format npy).

    Example: [bold]convae decompress out.npy recon/[/]  or  [bold]convae decompress one.npy - > one.png[/]
    """
    piped = out_dir == STDIO
    with errors(), stdin_codes(codes) as codes:
        from convae.codec.api import decompress
        from convae.codec.format import open_codes

        if piped and (n := len(open_codes(codes).manifest.entries)) != 1:
            raise fail(f"-: {codes} holds {n} images; stdout takes one: give a folder instead", 2)
        with stdout_image(out_dir, json_out) as out_dir:
            summary = _run_codec("decompress", decompress, codes, out_dir, model=model, force=force,
                                 batch_size=batch_size, device=device, json_out=json_out, quiet=quiet, fmt=fmt,
                                 piped="out_dir" if piped else None)
        if piped:
            _report(summary.as_dict(), "decompress", json_out, quiet, stderr)


@app.command("info")
def info_cmd(
    codes: Annotated[Path, typer.Argument(metavar="CODES.npy", help="The codes file; - reads it from stdin.")],
    json_out: JsonOpt = False,
) -> None:
    """Show what a code file holds, without decoding it.

    Example: [bold]convae info out.npy --json[/]
    """
    with errors(), stdin_codes(codes) as path:
        from convae.codec.info import describe_codes

        info = describe_codes(path)
        if json_out:
            print_json(info)
        else:
            _table(f"{codes}", {k: v for k, v in info.items() if not isinstance(v, (list, dict))})


@app.command("merge")
def merge_cmd(
    paths: Annotated[list[Path], typer.Argument(metavar="SHARD.npy... OUT.npy", show_default=False,
                                                help="The shards' code files, then the output OUT.npy.")],
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Join the shards of a `compress --shard K/N` job into one code file.

    Example: [bold]convae merge part-*.npy all.npy[/]
    """
    if len(paths) < 2:
        raise fail("merge: give the shard files and the output (usage: convae merge SHARD.npy... OUT.npy)", 2)
    *shards, out = paths
    _npy_output("merge", out, "SHARD.npy... OUT.npy")
    with errors():
        from convae.codec.merge import merge

        result = merge(shards, out, force=force)
        _report(result, "merge", json_out, quiet)


def _report(result: dict, title: str, json_out: bool, quiet: bool, console: Any = stdout) -> None:
    """The run's summary: one JSON line, or a table on ``console`` unless ``quiet``; skipped inputs always on
    stderr."""
    if json_out:
        print_json(result)
    elif not quiet:
        from convae.cli.summary import summary_rows

        _table(title, summary_rows(result), console)
    for item in result.get("skipped", []):  # skipped inputs are errors: on stderr even with --quiet or --json
        typer.echo(f"convae: skipped: {' '.join(item['error'].split())}", err=True)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # cleaned up as for Ctrl-C (timeout, docker stop and batch schedulers send SIGTERM)


def main() -> None:
    """Console-script entry point: ``ConvaeGroup.main`` prints usage errors as one line (exit code 2)."""
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    app()
