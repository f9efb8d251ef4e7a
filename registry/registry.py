"""Register variants by decorator, list them with wildcards, create them by name.

Modelled on timm's ``_registry.py``: architectures register by decorator, pretrained variants are data
beside them (``convae.zoo``). Unlike timm, a name registered twice is an error that names both
sources, and an unknown name raises a typed error listing close matches.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from convae.registry.errors import DuplicateModelError, UnknownModelError

_SPECS: dict[str, ModelSpec] = {}


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one variant without building it."""

    name: str
    factory: Callable[..., Any]
    source: str
    description: str = ""
    pretrained: str | None = None  # file name under the package's weights/ folder
    config: dict[str, Any] = field(default_factory=dict)
    architecture: str = ""  # the architecture it builds (its own name for an architecture)
    family: str | None = None  # variants of one family differ in ``quality`` only
    quality: int | None = None


def _add(spec: ModelSpec) -> None:
    if spec.name in _SPECS:
        raise DuplicateModelError(
            f"model name {spec.name!r} registered twice: by {_SPECS[spec.name].source} and by {spec.source}"
        )
    _SPECS[spec.name] = spec


def register_model(
    name: str | None = None, *, pretrained: str | None = None, **config: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register architecture ``factory`` under ``name`` (default: the function's name).

    ``config`` keyword arguments are passed to the factory and recorded in weight metadata.
    """

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        key = name or factory.__name__
        doc = (factory.__doc__ or "").strip().splitlines()
        source = f"{factory.__module__}.{factory.__qualname__}"
        _add(ModelSpec(key, factory, source, doc[0] if doc else "", pretrained, dict(config), key))
        return factory

    return wrap


def register_pretrained(name: str, architecture: str, weights: str, *, source: str, description: str = "",
                        family: str | None = None, quality: int | None = None, **config: Any) -> ModelSpec:
    """Register trained variant ``name``: ``architecture`` with ``config`` and the shipped file ``weights``
    (a name in convae's weights folder, or an absolute path: a plugin's own file).

    A single-rate architecture may carry its weights under its own name (``seed``).
    """
    arch = _SPECS.get(architecture)
    if arch is None:
        raise UnknownModelError(f"{source}: unknown architecture {architecture!r} for {name!r}")
    spec = ModelSpec(name, arch.factory, source, description or arch.description, weights,
                     {**arch.config, **config}, architecture, family, quality)
    if name == architecture and arch.pretrained is None:
        _SPECS[name] = replace(spec, source=arch.source)
    else:
        _add(spec)
    return _SPECS[name]


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text.lower())]


def list_models(
    include: str | Iterable[str] = "*", exclude: str | Iterable[str] = (), pretrained: bool = False
) -> list[str]:
    """Registered names matching any ``include`` wildcard and no ``exclude`` one, naturally sorted."""
    _ensure_loaded()
    includes = [include] if isinstance(include, str) else list(include)
    excludes = [exclude] if isinstance(exclude, str) else list(exclude)
    names = {n for n in _SPECS for pat in includes if fnmatch.fnmatchcase(n, pat)}
    names = {n for n in names if not any(fnmatch.fnmatchcase(n, pat) for pat in excludes)}
    if pretrained:
        names = {n for n in names if _SPECS[n].pretrained}
    return sorted(names, key=_natural_key)


def family_variants(family: str) -> list[ModelSpec]:
    """The variants of ``family``, by ascending quality."""
    _ensure_loaded()
    return sorted((s for s in _SPECS.values() if s.family == family), key=lambda s: s.quality or 0)


def get_spec(name: str) -> ModelSpec:
    """The spec of a variant; raises ``UnknownModelError`` naming close matches."""
    _ensure_loaded()
    if name not in _SPECS:
        close = difflib.get_close_matches(name, list(_SPECS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `convae models` to list them"
        raise UnknownModelError(f"unknown model {name!r}{hint}")
    return _SPECS[name]


def create_model(name: str, **overrides: Any) -> Any:
    """Build an untrained variant by name (config overrides are passed to the factory)."""
    spec = get_spec(name)
    model = spec.factory(**{**spec.config, **overrides})
    model.variant = spec.name
    model.config = {**spec.config, **overrides}
    return model


def _ensure_loaded() -> None:
    # Built-in variants (``convae.zoo``) and plugins both arrive through the entry-point group.
    from convae.registry.plugins import load_plugins

    load_plugins()
