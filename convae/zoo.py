"""Load a ready model by registry name (shipped weights) or by weights path."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from convae.errors import UsageError, WeightsError
from convae.models.base import Autoencoder
from convae.registry import UnknownModelError, create_model, get_spec, list_models
from convae.weightfile import read_weights

DEFAULT_MODEL = "photoh-q2"


@dataclass
class LoadedModel:
    """A model in eval mode with where it came from."""

    model: Autoencoder
    sha256: str
    source: str  # registry name for shipped weights, else the file path
    metadata: dict[str, str] = field(default_factory=dict)


def shipped_weights(name: str) -> Path | None:
    """Path of a variant's shipped weights inside the package, if any."""
    spec = get_spec(name)
    if not spec.pretrained:
        return None
    path = Path(str(resources.files("convae") / "weights" / spec.pretrained))
    return path if path.is_file() else None


def with_quality(name: str | None, quality: int) -> str:
    """The shipped variant of ``name``'s family (the default model's if None) at rate ``quality``.

    ``with_quality("fmh-q2", 4) == "fmh-q4"``; a family without that rate raises ``UsageError`` naming its rates.
    """
    name = name or DEFAULT_MODEL
    if is_weights_path(name):
        raise UsageError("--quality picks a shipped variant by name; it does not apply to a weights file")
    family = re.fullmatch(r"(.+)-q\d+", get_spec(name).name)
    if family is None:
        raise UsageError(f"--quality: {name!r} has one rate only (no -qN variants)")
    rates = sorted(int(m.rsplit("-q", 1)[1]) for m in list_models(f"{family[1]}-q*") if shipped_weights(m))
    if quality not in rates:
        raise UsageError(f"--quality {quality}: {family[1]} ships qualities {', '.join(map(str, rates))}")
    return f"{family[1]}-q{quality}"


def retired_weights(sha256: str) -> dict[str, str] | None:
    """``{"variant", "shipped_in"}`` if weights with this sha256 once shipped and were since replaced."""
    table = json.loads((resources.files("convae") / "weights" / "retired.json").read_text())
    return table["weights"].get(sha256)


def is_weights_path(name_or_path: str) -> bool:
    """True when the argument names a file rather than a registry variant."""
    return name_or_path.endswith(".safetensors") or "/" in name_or_path or Path(name_or_path).is_file()


def load_model(name_or_path: str | None = None) -> LoadedModel:
    """Load a trained model: a registry name uses its shipped weights, a path its file."""
    name_or_path = name_or_path or DEFAULT_MODEL
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


def warm_start(model: Autoencoder, path: Path) -> dict[str, str]:
    """Load the weights at ``path`` into ``model`` to fine-tune from; metadata to record.

    Weights of the same variant and configuration must fit exactly. Weights of another variant or
    configuration lend every parameter whose name and shape match (e.g. the transforms of ``fm-q3``
    to ``fmh-q3``), never buffers: those hold the calibrated quantiser and entropy-coding state,
    which training fits anew.
    """
    if not Path(path).is_file():
        raise WeightsError(f"--init: weights file {path} does not exist")
    state, meta, sha = read_weights(Path(path))
    record = {"init_from": Path(path).name, "init_variant": meta["variant"], "init_sha256": sha,
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
