"""The variant registry: register encoder/decoder variants by name, list them, create them.

Third-party distributions add variants through the ``convae.models`` entry-point group.
"""

from convae.registry.errors import DuplicateModelError, UnknownModelError
from convae.registry.plugins import load_plugins
from convae.registry.registry import (
    ModelSpec,
    create_model,
    deprecate,
    get_spec,
    list_models,
    register_model,
    resolve_name,
)

__all__ = [
    "DuplicateModelError",
    "ModelSpec",
    "UnknownModelError",
    "create_model",
    "deprecate",
    "get_spec",
    "list_models",
    "load_plugins",
    "register_model",
    "resolve_name",
]
