"""``convae train --data DIR`` with no ``--model``: every choice made from the data, each with its reason.

The base is a variable-rate model (every rate in one model, ``-q 0..100``) warm-started from shipped
weights: RGB images fine-tune ``photov`` as it is. Gray images have two candidates: a 1-channel
``photov`` (stride 8) whose first and last layers are the shipped ones folded to one channel, so it
starts as ``photov`` coding the image as R = G = B; and ``grayv`` (stride 4) from the Fashion-MNIST
``fmh-q3`` transforms, its gains centred on that model's rate. Each is fine-tuned briefly and the
lower validation loss wins. Crops, batch and learning rate follow the images' size and count; a
seeded split is held out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from convae.data import Dataset, ImageSet, load_dataset, load_folder
from convae.errors import UsageError
from convae.training.duration import format_duration
from convae.training.recipes import Recipe
from convae.training.stopping import StopRule

BASE = "photov"
INIT = "photov"  # the shipped variable-rate photo weights
GRAY_BASES = {"photov": "photov", "grayv": "fmh-q3"}  # gray candidates and the weights each starts from
TRIAL_SHARE, TRIAL_SECONDS = 0.05, 60  # each gray candidate's trial: 5 % of the budget, at most a minute
CROP = 128  # the photov recipe's crop (scripts/train_zoo.sh)
PIXELS_PER_BATCH = 8 * 128 * 128  # the photov recipe's batch, in pixels
MAX_BATCH = 32
LR = 2e-4  # the photov recipe's peak rate; constant here, /10 each time validation stalls
CLIP_NORM = 1.0  # gradient norm clip (as CompressAI's training example): small batches spiked without it
DEFAULT_SECONDS = 20 * 60
DEFAULT_VAL = 0.1
MAX_VAL = 200  # held-out images validated: enough for a stable mean, cheap enough to run often
PATIENCE = 5  # validations without improvement before the rate drops (twice), then before stopping
DROPS = 2
COLOUR_LEVELS = 2  # channels more than this apart make an image colour (the codec's rule)

Warm = tuple[Any, dict[str, str]]  # a warm-started model and what to record of its start


@dataclass
class Plan:
    """What the automatic run trains: the variant, its config overrides, data, recipe, crop and stop rule."""

    model: str
    config: dict[str, Any]
    init: str
    data: Dataset
    recipe: Recipe
    crop: tuple[int, int] | int
    stop: StopRule
    warm: Warm | None = None
    choices: dict[str, Any] = field(default_factory=dict)  # recorded in the weights' metadata ("auto")
    lines: list[str] = field(default_factory=list)  # printed once, one per choice

    def choose(self, key: str, value: Any, why: str) -> None:
        """Record one choice and the line that explains it."""
        self.choices[key] = value
        self.lines.append(f"{key}: {why}")


def is_gray(images: ImageSet) -> bool:
    """True when no image has channels more than ``COLOUR_LEVELS`` apart (the codec's colour rule)."""
    items = [images.images] if images.stacked else images.images
    return all(int((t.amax(-3) - t.amin(-3)).max()) <= COLOUR_LEVELS for t in items)  # type: ignore[union-attr]


def subset(images: ImageSet, index: list[int], name: str) -> ImageSet:
    """The images at ``index`` (stacked stays stacked)."""
    if images.stacked:
        return ImageSet(images.images[torch.tensor(index, dtype=torch.long)], name)  # type: ignore[index]
    return ImageSet([images.images[i] for i in index], name)


def parse_val(value: str | None) -> float | Path:
    """``--val``: a fraction in (0, 0.5] of the training images, or a folder of held-out images."""
    if value is None:
        return DEFAULT_VAL
    try:
        fraction = float(value)
    except ValueError:
        if not Path(value).is_dir():
            raise UsageError(f"--val {value!r}: give a fraction such as 0.1 or a folder of images") from None
        return Path(value)
    if not 0 < fraction <= 0.5:
        raise UsageError(f"--val {value}: a fraction must be more than 0 and at most 0.5")
    return fraction


def held_out(train: ImageSet, val: float | Path, channels: int, seed: int) -> tuple[ImageSet, ImageSet, str]:
    """Training and validation sets and how the split was made: a seeded random fraction, or a folder."""
    if isinstance(val, Path):
        images = load_folder(val, channels)
        return train, images, f"{len(images)} images of {val} (--val)"
    n = len(train)
    k = min(MAX_VAL, max(1, round(n * val)))
    if n - k < 1:
        raise UsageError(f"--data holds {n} image(s): training and holding one out needs at least 2 (or --val DIR)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    how = f"{k} of {n} images held out at random (--val {val:g}, seed {seed}" + (f", at most {MAX_VAL})" if
                                                                                   k == MAX_VAL else ")")
    return subset(train, sorted(order[k:]), train.name), subset(train, sorted(order[:k]), "validation"), how


def _sizes(images: ImageSet) -> tuple[int, int, str]:
    """Smallest height and width over ``images`` and a short description of their sizes."""
    shapes = [tuple(images.images.shape[-2:])] if images.stacked else sorted({tuple(t.shape[-2:])
                                                                              for t in images.images})
    h, w = min(s[0] for s in shapes), min(s[1] for s in shapes)
    desc = f"all {shapes[0][1]}x{shapes[0][0]}" if len(shapes) == 1 else f"of {len(shapes)} sizes, at least {w}x{h}"
    return h, w, desc


def crop_for(images: ImageSet, base: str, stride: int, crop: int | None) -> tuple[tuple[int, int] | int, str]:
    """Random training crops: ``CROP`` square of larger images; a smaller side is edge-padded to the next
    multiple of the stride, as the codec pads it, so small images train whole."""
    if crop is not None:
        return crop, f"random {crop}x{crop} crops (--crop)"
    h, w, desc = _sizes(images)
    ch, cw = (CROP if v >= CROP else -(-v // stride) * stride for v in (h, w))
    why = f"random {cw}x{ch} crops of images {desc}"
    if ch > h or cw > w:
        why += f" (edge-padded to a multiple of {base}'s stride {stride}, as the codec pads them)"
    return (ch, cw), why


@dataclass
class Overrides:
    """Expert flags given beside the automatic choices (None: choose)."""

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    crop: int | None = None
    init: str | None = None
    exclude: tuple[str, ...] = ()
    limit: int | None = None
    resume: Path | None = None  # the checkpoint a --resume continues: its base is kept, not chosen again


def plan_run(spec: str, val: str | None, seconds: float | None, seed: int, given: Overrides,
             say: Callable[[str], None] = lambda line: None) -> Plan:
    """Load ``spec``, choose base, split, crops, batch, rate and stop rule; ``Plan.lines`` say why.
    ``say`` hears what takes time before the plan is ready (the gray trials)."""
    data = load_dataset(spec, 3, exclude=given.exclude, limit=given.limit)
    gray = is_gray(data.train)
    if gray:
        data = load_dataset(spec, 1, exclude=given.exclude, limit=given.limit)
    channels = 1 if gray else 3
    train, valset, how = held_out(data.train, parse_val(val), channels, seed)
    data = Dataset(data.spec, train, valset, {**data.info, "validation": how})
    budget = seconds or DEFAULT_SECONDS
    _recipe(train, BASE, 8, given)  # bad --epochs, --batch-size, --lr fail here, before any trial
    model, init, warm, base_why, spent = choose_base(gray, data, given, budget, seed, say)
    crop, crop_why, recipe = _recipe(train, model, warm[0].stride, given)
    stop = StopRule(seconds=max(1.0, budget - spent), patience=PATIENCE, drops=DROPS)
    config = {"in_channels": 1} if gray and model == BASE else {}
    plan = Plan(model, config, init, data, recipe, crop, stop, warm)
    _explain(plan, base_why, len(train), how, crop_why, given, seconds, budget)
    return plan


def _recipe(train: ImageSet, model: str, stride: int, given: Overrides) -> tuple[Any, str, Recipe]:
    """Crop (and why), then batch and learning rate for ``model`` on ``train``."""
    crop, crop_why = crop_for(train, model, stride, given.crop)
    pixels = crop * crop if isinstance(crop, int) else crop[0] * crop[1]
    batch = given.batch_size if given.batch_size is not None else max(1, min(MAX_BATCH, PIXELS_PER_BATCH // pixels,
                                                                                 len(train) // 4))
    recipe = Recipe("auto", batch_size=batch, lr=given.lr if given.lr is not None else LR,
                    epochs=given.epochs if given.epochs is not None else 100000, schedule="constant",
                    clip_norm=CLIP_NORM)
    return crop, crop_why, recipe


def choose_base(gray: bool, data: Dataset, given: Overrides, budget: float, seed: int,
                say: Callable[[str], None] = lambda line: None) -> tuple[str, str, Warm, str, float]:
    """The base variant, the weights it starts from, the warm-started model (with its record), why, and
    the seconds its choice spent training.

    Gray images without ``--init`` fine-tune every ``GRAY_BASES`` candidate for ``TRIAL_SHARE`` of the
    budget (at most ``TRIAL_SECONDS``) and keep the one of lowest validation loss (the rate-distortion
    loss training lowers, over ``-q 0, 50, 100``), trial training included: before any training the
    folded photo model looks better on small gray images, after a minute the stride-4 one often is."""
    init = given.init
    if not gray:
        why = f"{BASE} (RGB images; one model for every rate, -q 0..100)"
        return BASE, init or INIT, _warm(BASE, init or INIT), why, 0.0
    if init is not None:
        meta = _metadata(init)  # RGB weights fold into photov/gray; gray ones keep their own base
        model = BASE if meta.get("in_channels", "3") == "3" or meta.get("variant") == BASE else "grayv"
        why = f"{_gray_name(model)} (the base that fits --init {init})"
        return model, init, _warm(model, init, gray=True), why, 0.0
    if given.resume is not None and given.resume.exists():
        model = next(m for m in GRAY_BASES if _fits(m, given.resume))
        return model, GRAY_BASES[model], _warm(model, GRAY_BASES[model], gray=True), \
            f"{_gray_name(model)} (the base of the checkpoint --resume continues)", 0.0
    seconds, t0 = min(TRIAL_SECONDS, TRIAL_SHARE * budget), time.perf_counter()
    say(f"gray images: fine-tuning {' and '.join(map(_gray_name, GRAY_BASES))} for {seconds:.3g} s each "
        "to choose the base")
    tried = {model: _trial(model, start, data, given, seconds, seed) for model, start in GRAY_BASES.items()}
    spent = time.perf_counter() - t0  # the trials' training and validation
    model = min(tried, key=lambda k: tried[k][2])
    scores = ", ".join(f"{_gray_name(k)} from {GRAY_BASES[k]} {v[2]:.4f}" for k, v in tried.items())
    net, record, _ = tried[model]
    why = (f"{_gray_name(model)} (gray images; the lower validation loss after {seconds:.3g} s of training "
           f"each: {scores})")
    return model, GRAY_BASES[model], (net, record | {"trial_seconds": str(round(spent, 1))}), why, spent


def _trial(model: str, start: str, data: Dataset, given: Overrides, seconds: float,
           seed: int) -> tuple[Any, dict[str, str], float]:
    """Candidate ``model`` from ``start`` after ``seconds`` of fine-tuning (its best validated weights);
    its record and that validation loss. Nothing is calibrated or saved: the winner trains on."""
    import tempfile

    from convae.training.train import train

    net, record = _warm(model, start, gray=True)
    crop, _, recipe = _recipe(data.train, model, net.stride, given)
    with tempfile.TemporaryDirectory(prefix="convae-trial-") as tmp:
        result = train(net, data, Path(tmp) / "trial.safetensors", recipe, seed=seed, crop=crop,
                       stop=StopRule(seconds=seconds, patience=None), save=False)
    return net, record, min(r["val_loss"] for r in result.history if "val_loss" in r)


def _fits(model: str, checkpoint: Path) -> bool:
    """True when gray candidate ``model``'s parameters have the names and shapes of ``checkpoint``'s model."""
    from convae.registry import create_model
    from convae.weightfile import read_raw

    shapes = {k[6:]: tuple(v.shape) for k, v in read_raw(checkpoint)[0].items() if k.startswith("model.")}
    net = create_model(model, **({"in_channels": 1} if model == BASE else {}))
    return all(shapes.get(k) == tuple(v.shape) for k, v in net.named_parameters())  # buffers follow calibration


def _gray_name(model: str) -> str:
    """How the plan names a gray base: ``photov/gray`` for the folded photo model, else the variant."""
    return f"{BASE}/gray" if model == BASE else model


def display_name(net: Any) -> str:
    """How a run names ``net``: its variant, ``photov/gray`` for the 1-channel photo model."""
    return _gray_name(net.variant) if net.in_channels == 1 else net.variant


def _metadata(init: str) -> dict[str, str]:
    """The metadata of the weights ``init`` names (a shipped variant, a user model or a file)."""
    from convae.weightfile import read_weights
    from convae.zoo import init_weights

    return read_weights(init_weights(init)[0])[1]


def _explain(plan: Plan, base_why: str, n: int, how: str, crop_why: str, given: Overrides,
             seconds: float | None, budget: float) -> None:
    """The printed and recorded reason for every automatic choice."""
    plan.choose("model", _gray_name(plan.model) if plan.config.get("in_channels") == 1 else plan.model, base_why)
    plan.choose("init", plan.init, f"fine-tune from {plan.init}" + (" (--init)" if given.init else
                                                                    " (shipped weights)"))
    plan.choose("rates", "levels 0-8", "every rate trains: a random level in 0-8 (-q 0..100) per batch")
    plan.choose("validation", how, how)
    plan.choose("crop", list(plan.crop) if isinstance(plan.crop, tuple) else plan.crop, crop_why)
    r = plan.recipe
    plan.choose("batch_size", r.batch_size, f"batch {r.batch_size}" + (" (--batch-size)" if given.batch_size else
                f" (about {PIXELS_PER_BATCH:,} pixels a step, at least 4 steps an epoch of {n} images)"))
    plan.choose("lr", r.lr, f"learning rate {r.lr:g}" + (" (--lr)" if given.lr else
                f" (Adam, constant; divided by 10 each time validation stalls, {DROPS} times)")
                + f"; gradient norm clipped to {r.clip_norm:g}")
    limit = format_duration(budget)
    plateau = f"{PATIENCE} checks, after the rate dropped {DROPS} times"
    left = budget - plan.stop.seconds
    trials = f", {format_duration(plan.stop.seconds)} left after the trials" if left >= 1 else ""
    plan.choose("time", plan.stop.seconds, f"stop after {limit}" + (" (--time" if seconds else
                " (the default; --time to change") + f"{trials}) or when validation stops improving ({plateau})"
                + (f", or after {r.epochs} epochs (--epochs)" if given.epochs else ""))


def fold_to_gray(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An RGB codec's tensors for 1 channel: gray in as R = G = B (first layer summed over its inputs),
    gray out as the mean of R, G, B (the decoder's last, linear, layer averaged over its outputs)."""
    out = dict(state)
    out["encoder.0.weight"] = state["encoder.0.weight"].sum(1, keepdim=True)
    last = max((k for k in state if k.startswith("decoder.") and k.endswith(".weight")),
               key=lambda k: int(k.split(".")[1]))
    out[last] = state[last].mean(1, keepdim=True)
    bias = last[: -len("weight")] + "bias"
    out[bias] = state[bias].mean(0, keepdim=True)
    return out


def build(plan: Plan) -> Warm:
    """The plan's model, warm-started from ``plan.init``; what to record about the warm start."""
    return plan.warm if plan.warm is not None else _warm(plan.model, plan.init, plan.config.get("in_channels") == 1)


def _warm(model: str, init: str, gray: bool = False) -> Warm:
    """Variant ``model`` (1-channel when ``gray``) warm-started from ``init``; what to record about it."""
    from convae.registry import create_model
    from convae.zoo import warm_start

    meta = _metadata(init)
    if model == BASE and gray and meta.get("in_channels", "3") == "3":
        return _fold(init)
    net = create_model(model, **({"in_channels": 1} if model == BASE and gray else {}))
    record = warm_start(net, init)
    lmbda = json.loads(meta.get("config", "{}")).get("lmbda")
    if hasattr(net, "centre_gains") and lmbda:
        net.centre_gains(float(lmbda))
        record["init_gains_centred_on_lmbda"] = str(lmbda)
    return net, record


def _fold(init: str) -> Warm:
    """A 1-channel ``photov`` whose layers are ``init``'s, the first and last folded from RGB to gray."""
    from convae.registry import create_model
    from convae.weightfile import read_weights
    from convae.zoo import init_weights

    net = create_model(BASE, in_channels=1)
    path, name = init_weights(init)
    state, meta, sha = read_weights(path)  # RGB weights: gray ones load as they are (``_warm``)
    own = dict(net.named_parameters())
    shared = {k: v for k, v in fold_to_gray(state).items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(shared, strict=False)
    return net, {"init_from": name, "init_variant": meta["variant"], "init_sha256": sha,
                 "init_tensors": str(len(shared)), "init_fold": "rgb-to-gray"}
