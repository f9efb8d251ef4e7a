"""The model zoo: the pretrained variants shipped in the package, and loading a model by name or path.

``FAMILIES`` is the table (like CompressAI's ``cfgs``): a family is one architecture with one
configuration, trained at several rates; quality ``q`` of family ``f`` is variant ``f-qq``, whose
weights are ``weights/f-qq.safetensors``. Importing this module registers every shipped variant.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

import convae.models  # noqa: F401  (registers the architectures)
from convae.errors import UsageError, WeightsError
from convae.models.base import Autoencoder
from convae.registry import (
    UnknownModelError,
    create_model,
    family_variants,
    get_spec,
    list_models,
    register_pretrained,
)
from convae.weightfile import read_weights

DEFAULT_MODEL = "photov"  # every rate in one file: -q 0..100 as in JPEG/WebP/AVIF


@dataclass(frozen=True)
class Family:
    """One architecture and configuration, shipped at the rates of ``lambdas`` (quality -> lambda)."""

    architecture: str
    description: str
    config: dict[str, Any]
    lambdas: dict[int, float]


FM = {"in_channels": 1, "n": 48, "m": 32, "depth": 2, "post": 0}
PHOTO = {"in_channels": 3, "n": 48, "m": 64, "depth": 3, "post": 0}
FMH = {**FM, "hyper": 48, "z_channels": 16, "mean_steps": 4}
PHOTOH = {**PHOTO, "hyper": 64, "z_channels": 24, "mean_steps": 4}
FMC = {**FMH, "ctx_hidden": 32, "post": 32, "mean_steps": 8}
FMH_LAMBDAS = {1: 0.0006, 2: 0.0015, 3: 0.005, 4: 0.02, 5: 0.06}

FAMILIES: dict[str, Family] = {
    "fm": Family("factorized", "Fashion-MNIST, 7x7x32 latents, factorized prior", FM,
                 {1: 0.0006, 2: 0.0015, 3: 0.005, 4: 0.02}),
    "fmh": Family("hyperprior", "Fashion-MNIST, 7x7x32 latents, mean-scale hyperprior", FMH, FMH_LAMBDAS),
    "fmc": Family("context", "Fashion-MNIST, 7x7x32 latents, mean-scale hyperprior + checkerboard/channel "
                  "context, post-filter", FMC, {**FMH_LAMBDAS, 6: 0.25}),
    "photo": Family("factorized", "RGB photos of any size, stride 8, factorized prior", PHOTO, {2: 0.01}),
    "photoh": Family("hyperprior", "RGB photos of any size, stride 8, mean-scale hyperprior", PHOTOH,
                     {0: 0.001, 1: 0.003, 2: 0.01, 3: 0.03}),
}
# Architectures shipped with weights under their own name. photov: every rate of the photo codec in one file
# (-q 0..100); photo-q2 (the factorized photo model) was retired for its room (retired.json).
SINGLE_RATE = {"seed": "seed.safetensors", "photov": "photov.safetensors"}


def _register_zoo() -> None:
    for name, weights in SINGLE_RATE.items():
        register_pretrained(name, name, weights, source=__name__)
    for family, f in FAMILIES.items():
        for quality, lmbda in f.lambdas.items():
            name = f"{family}-q{quality}"
            register_pretrained(name, f.architecture, f"{name}.safetensors", source=__name__,
                                description=f"{f.description}, lambda {lmbda}", family=family, quality=quality,
                                **f.config, lmbda=lmbda)


_register_zoo()


@dataclass
class LoadedModel:
    """A model in eval mode with where it came from."""

    model: Autoencoder
    sha256: str
    source: str  # registry name for shipped weights, else the file path
    metadata: dict[str, str] = field(default_factory=dict)


def shipped_weights(name: str) -> Path | None:
    """Path of a variant's shipped weights, if any: inside convae's package, or (an absolute path) a plugin's."""
    spec = get_spec(name)
    if not spec.pretrained:
        return None
    own = Path(spec.pretrained)
    path = own if own.is_absolute() else Path(str(resources.files("convae") / "weights" / spec.pretrained))
    return path if path.is_file() else None


def shipped_qualities(name: str) -> dict[int, str]:
    """Quality -> variant name of every shipped rate of ``name``'s family, ascending (empty for a single rate)."""
    family = get_spec(name).family
    if family is None:
        return {}
    return {s.quality: s.name for s in family_variants(family) if shipped_weights(s.name)}


def with_quality(name: str | None, quality: float) -> str:
    """The shipped variant of ``name``'s family (the default model's if None) at rate ``quality``.

    ``with_quality("fmh-q2", 4) == "fmh-q4"``; a family without that rate raises ``UsageError`` naming its rates.
    """
    name = name or DEFAULT_MODEL
    if is_weights_path(name):
        raise UsageError("--quality picks a shipped variant by name; it does not apply to a weights file")
    name = _as_variant(name)
    family = get_spec(name).family
    if family is None:
        raise UsageError(f"--quality: {name!r} has one rate only (no -qN variants)")
    shipped = shipped_qualities(name)
    if quality not in shipped:
        raise UsageError(f"--quality {quality}: {family} ships qualities {', '.join(map(str, shipped))}")
    return shipped[quality]


def _as_variant(name: str) -> str:
    """A family's own name (``photoh``, as in ``-m photoh -q 1``) stands for its first variant; others stay."""
    if name not in list_models(name) and (variants := family_variants(name)):
        return variants[0].name
    return name


def load_at_quality(name: str | None, quality: float | None) -> LoadedModel:
    """``load_model`` at ``quality``: a shipped family's ``-qN`` variant, or a variable-rate model's ``-q 0..100``."""
    name = name or DEFAULT_MODEL
    mine = user_model(name)
    name = str(mine) if mine is not None else name
    if quality is not None and not is_weights_path(name):
        name = _as_variant(name)
    if quality is not None and (is_weights_path(name) or get_spec(name).family is None):
        loaded = load_model(name)
        if hasattr(loaded.model, "set_quality"):
            loaded.model.set_quality(quality)
            return loaded
    return load_model(name if quality is None else with_quality(name, quality))


def retired_weights(sha256: str) -> dict[str, str] | None:
    """``{"variant", "shipped_in"}`` if weights with this sha256 once shipped and were since replaced."""
    table = json.loads((resources.files("convae") / "weights" / "retired.json").read_text())
    return table["weights"].get(sha256)


def is_weights_path(name_or_path: str) -> bool:
    """True when the argument names a file rather than a registry variant (a user model's NAME names its file).

    A registered name always means the variant, whatever files the current folder holds; a weights file
    with such a name is given as ``./NAME``."""
    if name_or_path.endswith(".safetensors") or "/" in name_or_path:
        return True
    if name_or_path in list_models(name_or_path):
        return False
    return user_model(name_or_path) is not None or Path(name_or_path).is_file()


def user_models_dir() -> Path:
    """The user model folder: ``$CONVAE_HOME/models`` (default ``~/.convae/models``); ``NAME.safetensors`` there
    is model ``NAME``."""
    home = os.environ.get("CONVAE_HOME") or "~/.convae"
    try:
        return Path(home).expanduser() / "models"
    except RuntimeError as exc:  # "~user" of no such user, or no home folder at all
        raise UsageError(f"CONVAE_HOME={home!r}: cannot find that home folder ({exc}); set CONVAE_HOME to a "
                         "folder path") from None


USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]*")  # a user model's NAME: no dot, no folder


def _is_plain_name(text: str) -> bool:
    return bool(USER_NAME.fullmatch(text))


def user_model(name: str) -> Path | None:
    """``NAME.safetensors`` in the user model folder, when ``name`` is a plain name no registered variant has."""
    if not _is_plain_name(name) or list_models(name):
        return None
    path = user_models_dir() / f"{name}.safetensors"
    return path if path.is_file() else None


def user_model_path(out: str) -> Path:
    """``train --out``: a plain NAME (no suffix, no folder) is the user model folder's ``NAME.safetensors``."""
    if not _is_plain_name(out):
        return Path(out)
    if list_models(out):
        raise UsageError(f"--out {out}: a registered variant has that name; choose another NAME")
    folder = user_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{out}.safetensors"


def list_user_models(pattern: str = "*") -> list[Path]:
    """The user model folder's weights whose NAME matches ``pattern``, sorted (registered names shadow them)."""
    folder = user_models_dir()
    found = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    return [p for p in found if fnmatch.fnmatchcase(p.stem, pattern) and _is_plain_name(p.stem)
            and not list_models(p.stem)]


def load_model(name_or_path: str | None = None) -> LoadedModel:
    """Load a trained model: a registry name uses its shipped weights, a path its file, a user model NAME
    its file in the user model folder."""
    name_or_path = name_or_path or DEFAULT_MODEL
    mine = user_model(name_or_path)
    if mine is not None:
        name_or_path = str(mine)
    if is_weights_path(name_or_path):
        path, source = Path(name_or_path), name_or_path
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
    else:
        spec = get_spec(name_or_path)
        found = shipped_weights(spec.name)
        if found is None:
            raise WeightsError(
                f"model {spec.name!r} ships no pretrained weights; train it with "
                f"`convae train --model {spec.name} ...` and pass --model PATH.safetensors"
            )
        path, source = found, spec.name
    state, meta, sha = read_weights(path)
    return LoadedModel(_build(state, meta, path), sha, source, meta)


# Config options added after weights were first saved, with the value a file saved before implies.
LATER_OPTIONS = {"post": 0, "mean_steps": 4}


def _stored_config(meta: dict[str, str], path: Path) -> dict:
    """The config a weights file was saved with; options it predates take their value from before."""
    try:
        config = json.loads(meta.get("config", "{}"))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}: config metadata is not valid JSON") from exc
    if not isinstance(config, dict):
        raise WeightsError(f"{path}: config metadata is not a JSON object")
    try:
        known = get_spec(meta["variant"]).config
    except UnknownModelError:  # a variant this installation lacks: nothing to fill in
        return config
    return {**{k: v for k, v in LATER_OPTIONS.items() if k in known}, **config}


def _build(state: dict[str, torch.Tensor], meta: dict[str, str], path: Path) -> Autoencoder:
    config = _stored_config(meta, path)
    try:
        model = create_model(meta["variant"], **config)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: its config does not fit variant {meta['variant']!r} ({exc})") from exc
    _load_exact(model, state, str(path))
    return model.eval()


def _load_exact(model: Autoencoder, state: dict[str, torch.Tensor], what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(f"{what} does not fit variant {model.variant!r}: {first}") from exc


def init_weights(name_or_path: str) -> tuple[Path, str]:
    """``--init``'s weights file and the name to record: a shipped variant's name, or a file path."""
    if not is_weights_path(name_or_path):
        try:
            found = shipped_weights(name_or_path)
        except UnknownModelError as exc:
            raise WeightsError(f"--init {name_or_path}: neither a weights file nor a shipped variant ({exc})") from exc
        if found is None:
            raise WeightsError(f"--init {name_or_path}: variant ships no weights; give a .safetensors file")
        return found, name_or_path
    if not Path(name_or_path).is_file():
        raise WeightsError(f"--init: weights file {name_or_path} does not exist")
    return Path(name_or_path), Path(name_or_path).name


def warm_start(model: Autoencoder, path: Path | str) -> dict[str, str]:
    """Load ``path``'s weights (or a shipped variant's, by name) into ``model`` to fine-tune; what to record.

    Weights of the same variant and configuration must fit exactly. Weights of another variant or
    configuration lend every parameter whose name and shape match (e.g. the transforms of ``fm-q3``
    to ``fmh-q3``), never buffers: those hold the calibrated quantiser and entropy-coding state,
    which training fits anew.
    """
    path, name = init_weights(str(path))
    state, meta, sha = read_weights(path)
    record = {"init_from": name, "init_variant": meta["variant"], "init_sha256": sha,
              "init_train_seconds": meta.get("train_seconds", "")}
    if meta["variant"] != model.variant or _stored_config(meta, path) != model.config:
        own = dict(model.named_parameters())
        shared = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not shared:
            raise WeightsError(f"--init {path} does not fit variant {model.variant!r} "
                               f"(no tensor of {meta['variant']!r} matches by name and shape)")
        model.load_state_dict(shared, strict=False)
        return record | {"init_tensors": str(len(shared))}
    _load_exact(model, state, f"--init {path}")
    return record
