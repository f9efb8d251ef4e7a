"""``convae train --data DIR`` with no ``--model``: every choice made from the data, each with its reason.

The base is ``photov`` (every rate in one model, ``-q 0..100``) warm-started from its shipped
weights: RGB images fine-tune it as it is; gray images get a 1-channel ``photov`` whose first and
last layers are the shipped ones folded to one channel, so it starts as ``photov`` coding the image
as R = G = B (no gray photo family ships; the gray ``fm*`` models are 28x28 Fashion-MNIST codecs).
Crops, batch and learning rate follow the images' size and count; a seeded split is held out.
"""

from __future__ import annotations

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
CROP = 128  # the photov recipe's crop (scripts/train_zoo.sh)
PIXELS_PER_BATCH = 8 * 128 * 128  # the photov recipe's batch, in pixels
MAX_BATCH = 32
LR = 2e-4  # the photov recipe's peak rate; constant here, /10 each time validation stalls
DEFAULT_SECONDS = 20 * 60
DEFAULT_VAL = 0.1
MAX_VAL = 200  # held-out images validated: enough for a stable mean, cheap enough to run often
PATIENCE = 5  # validations without improvement before the rate drops (twice), then before stopping
DROPS = 2
COLOUR_LEVELS = 2  # channels more than this apart make an image colour (the codec's rule)


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


def crop_for(images: ImageSet, stride: int, crop: int | None) -> tuple[tuple[int, int] | int, str]:
    """Random training crops: ``CROP`` square of larger images; a smaller side is edge-padded to the next
    multiple of the stride, as the codec pads it, so small images train whole."""
    if crop is not None:
        return crop, f"random {crop}x{crop} crops (--crop)"
    h, w, desc = _sizes(images)
    ch, cw = (CROP if v >= CROP else -(-v // stride) * stride for v in (h, w))
    why = f"random {cw}x{ch} crops of images {desc}"
    if ch > h or cw > w:
        why += f" (edge-padded to a multiple of {BASE}'s stride {stride}, as the codec pads them)"
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


def plan_run(spec: str, val: str | None, seconds: float | None, seed: int, given: Overrides) -> Plan:
    """Load ``spec``, choose base, split, crops, batch, rate and stop rule; ``Plan.lines`` say why."""
    data = load_dataset(spec, 3, exclude=given.exclude, limit=given.limit)
    gray = is_gray(data.train)
    if gray:
        data = load_dataset(spec, 1, exclude=given.exclude, limit=given.limit)
    channels = 1 if gray else 3
    train, valset, how = held_out(data.train, parse_val(val), channels, seed)
    data = Dataset(data.spec, train, valset, {**data.info, "validation": how})
    stride = 8
    crop, crop_why = crop_for(train, stride, given.crop)
    pixels = crop * crop if isinstance(crop, int) else crop[0] * crop[1]
    batch = given.batch_size if given.batch_size is not None else max(1, min(MAX_BATCH, PIXELS_PER_BATCH // pixels,
                                                                                 len(train) // 4))
    recipe = Recipe("auto", batch_size=batch, lr=given.lr if given.lr is not None else LR,
                    epochs=given.epochs if given.epochs is not None else 100000, schedule="constant")
    stop = StopRule(seconds=seconds or DEFAULT_SECONDS, patience=PATIENCE, drops=DROPS)
    plan = Plan(BASE, {"in_channels": 1} if gray else {}, given.init or INIT, data, recipe, crop, stop)
    _explain(plan, gray, len(train), how, crop_why, given, seconds)
    return plan


def _explain(plan: Plan, gray: bool, n: int, how: str, crop_why: str, given: Overrides, seconds: float | None) -> None:
    """The printed and recorded reason for every automatic choice."""
    base = (f"{BASE} with 1 channel (gray images: no gray photo family ships and the gray fm* models are 28x28 "
            f"Fashion-MNIST codecs, stride 4; its first and last layers are {plan.init}'s folded to gray)") if gray \
        else f"{BASE} (RGB images; one model for every rate, -q 0..100)"
    plan.choose("model", BASE + ("/gray" if gray else ""), base)
    plan.choose("init", plan.init, f"fine-tune from {plan.init}" + (" (--init)" if given.init else
                                                                    " (the shipped photo weights)"))
    plan.choose("rates", "levels 0-8", "every rate trains: a random level in 0-8 (-q 0..100) per batch")
    plan.choose("validation", how, how)
    plan.choose("crop", list(plan.crop) if isinstance(plan.crop, tuple) else plan.crop, crop_why)
    r = plan.recipe
    plan.choose("batch_size", r.batch_size, f"batch {r.batch_size}" + (" (--batch-size)" if given.batch_size else
                f" (about {PIXELS_PER_BATCH:,} pixels a step, at least 4 steps an epoch of {n} images)"))
    plan.choose("lr", r.lr, f"learning rate {r.lr:g}" + (" (--lr)" if given.lr else
                f" (Adam, constant; divided by 10 each time validation stalls, {DROPS} times)"))
    limit = format_duration(plan.stop.seconds or 0)
    plateau = f"{PATIENCE} checks, after the rate dropped {DROPS} times"
    plan.choose("time", plan.stop.seconds, f"stop after {limit}" + (" (--time)" if seconds else
                " (the default; --time to change)") + f" or when validation stops improving ({plateau})"
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


def build(plan: Plan) -> tuple[Any, dict[str, str]]:
    """The plan's model, warm-started from ``plan.init``; what to record about the warm start."""
    from convae.registry import create_model
    from convae.weightfile import read_weights
    from convae.zoo import init_weights, warm_start

    net = create_model(plan.model, **plan.config)
    if plan.config.get("in_channels") != 1:
        return net, warm_start(net, plan.init)
    path, name = init_weights(plan.init)
    state, meta, sha = read_weights(path)
    if meta.get("in_channels", "3") != "3":
        raise UsageError(f"--init {plan.init}: the gray fold starts from an RGB model; {name} has "
                         f"{meta['in_channels']} channel(s)")
    own = dict(net.named_parameters())
    shared = {k: v for k, v in fold_to_gray(state).items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(shared, strict=False)
    return net, {"init_from": name, "init_variant": meta["variant"], "init_sha256": sha,
                 "init_tensors": str(len(shared)), "init_fold": "rgb-to-gray"}
