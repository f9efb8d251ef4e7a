"""The model catalogue: one row per registered variant and user model, with its measured rates (`convae models`)."""

from __future__ import annotations

import json
import math
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

from convae.errors import ConvaeError
from convae.quality import DEFAULT_LEVEL, quality_of
from convae.registry import create_model, family_variants, get_spec, list_models
from convae.zoo import list_user_models, load_model, shipped_weights


def describe_models(pattern: str = "*") -> list[dict[str, Any]]:
    """One row per variant matching ``pattern`` (wildcards), naturally sorted (for `convae models`)."""
    rows, measured = [], measured_rates()
    for name in list_models(pattern):
        net = create_model(name)
        latent = net.latent_shape(28, 28)
        bits = net.quantizer.bits
        rows.append({
            "name": name,
            "description": get_spec(name).description,
            "params": sum(p.numel() for p in net.parameters()),
            "latent_28": list(latent),
            "latent_256": list(net.latent_shape(256, 256)),
            "in_channels": net.in_channels,
            "default_bpp": bits * math.prod(latent) / (28 * 28) / net.in_channels if bits else None,
            "pretrained": shipped_weights(name) is not None,
            **_rates(name, measured, hasattr(net, "set_quality")),
        })
    for path in list_user_models(pattern):
        try:
            rows.append(describe_user_model(path))
        except ConvaeError as exc:  # one bad file in the user model folder hides nothing else
            warnings.warn(f"skipped user model {path.stem}: {exc}", stacklevel=2)
    return rows


def describe_user_model(path: Path) -> dict[str, Any]:
    """``convae models``' row for a user model: what it is, and its recorded validation at ``-q 50``."""
    loaded = load_model(str(path))
    net, meta = loaded.model, loaded.metadata
    try:
        val = json.loads(meta.get("validation", "null")) or {}
    except json.JSONDecodeError:
        val = {}
    mid = (val.get("points") or {}).get("50") or {}
    variable = hasattr(net, "set_quality")
    return {
        "name": path.stem,
        "description": f"user model {path}: {net.variant} trained on {meta.get('dataset', '?')}",
        "params": sum(p.numel() for p in net.parameters()),
        "latent_28": list(net.latent_shape(28, 28)),
        "latent_256": list(net.latent_shape(256, 256)),
        "in_channels": net.in_channels,
        "default_bpp": None,
        "pretrained": True,
        "user": True,
        "quality": "any" if variable else None,
        "qualities": [0, 100] if variable else [],
        "bpp": mid.get("bpp"),
        "psnr": mid.get("psnr"),
        "eval_set": "user models: their held-out validation at -q 50 (estimated bpp)" if mid else None,
    }


def measured_rates() -> dict[str, dict[str, Any]]:
    """Each shipped variant's bpp and PSNR on its eval set, measured once by ``scripts/measure_zoo.py``."""
    return json.loads((resources.files("convae") / "weights" / "measured.json").read_text())


def _rates(name: str, measured: dict[str, dict[str, Any]], variable: bool = False) -> dict[str, Any]:
    """A variant's quality, its family's shipped qualities, and its measured ``bpp``/``psnr`` (None if unmeasured);
    a ``variable``-rate model's default quality (where it was measured) and its range 0..100."""
    spec, m = get_spec(name), measured.get(name, {})
    shipped = [s.quality for s in family_variants(spec.family) if shipped_weights(s.name)] if spec.family else []
    quality = quality_of(DEFAULT_LEVEL) if variable else spec.quality
    return {"quality": quality, "qualities": [0, 100] if variable else shipped, "bpp": m.get("bpp"),
            "psnr": m.get("psnr"), "eval_set": m.get("eval_set")}
