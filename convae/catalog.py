"""Describe registered variants for `convae models` (name, size, latent shapes, rate)."""

from __future__ import annotations

import math
from typing import Any

from convae.registry import create_model, get_spec, list_models
from convae.zoo import shipped_weights


def describe_models(pattern: str = "*") -> list[dict[str, Any]]:
    """One row per variant matching ``pattern`` (wildcards), naturally sorted."""
    rows = []
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
        })
    return rows
