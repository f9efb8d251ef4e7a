"""Register variants by decorator, list them with wildcards, create them by name.

Modelled on timm's ``_registry.py``; unlike it, a name registered twice is an error that names
both sources, and an unknown name raises a typed error listing close matches.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from convae.registry.errors import DuplicateModelError, UnknownModelError

_SPECS: dict[str, ModelSpec] = {}
_DEPRECATED: dict[str, str] = {}


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one variant without building it."""

    name: str
    factory: Callable[..., Any]
    source: str
    description: str = ""
    pretrained: str | None = None  # file name under the package's weights/ folder
    config: dict[str, Any] = field(default_factory=dict)


def register_model(
    name: str | None = None, *, pretrained: str | None = None, **config: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``factory`` under ``name`` (default: the function's name).

    ``config`` keyword arguments are passed to the factory and recorded in weight metadata.
    """

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        key = name or factory.__name__
        source = f"{factory.__module__}.{factory.__qualname__}"
        if key in _SPECS:
            raise DuplicateModelError(
                f"model name {key!r} registered twice: by {_SPECS[key].source} and by {source}"
            )
        doc = (factory.__doc__ or "").strip().splitlines()
        _SPECS[key] = ModelSpec(key, factory, source, doc[0] if doc else "", pretrained, dict(config))
        return factory

    return wrap


def deprecate(old: str, new: str) -> None:
    """Map an old variant name to its new one, so old code files still resolve."""
    _DEPRECATED[old] = new


def unregister(name: str) -> None:
    """Remove a variant (tests and plugin reloads)."""
    _SPECS.pop(name, None)


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


def resolve_name(name: str) -> str:
    """The current name for ``name``, following the deprecation map."""
    _ensure_loaded()
    return _DEPRECATED.get(name, name)


def get_spec(name: str) -> ModelSpec:
    """The spec of a variant; raises ``UnknownModelError`` naming close matches."""
    _ensure_loaded()
    key = resolve_name(name)
    if key not in _SPECS:
        close = difflib.get_close_matches(key, list(_SPECS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `convae models` to list them"
        raise UnknownModelError(f"unknown model {name!r}{hint}")
    return _SPECS[key]


def create_model(name: str, **overrides: Any) -> Any:
    """Build an untrained variant by name (config overrides are passed to the factory)."""
    spec = get_spec(name)
    model = spec.factory(**{**spec.config, **overrides})
    model.variant = spec.name
    model.config = {**spec.config, **overrides}
    return model


def _ensure_loaded() -> None:
    # Built-in variants register on import of convae.models; plugins through entry points.
    from convae.registry.plugins import load_plugins

    import convae.models  # noqa: F401

    load_plugins()
