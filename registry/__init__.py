"""The variant registry: register encoder/decoder variants by name, list them, create them.

Built-in variants (``convae.zoo``) and third-party distributions both arrive through the
``convae.models`` entry-point group.
"""

from convae.registry.errors import DuplicateModelError, UnknownModelError
from convae.registry.plugins import load_plugins
from convae.registry.registry import (
    ModelSpec,
    create_model,
    family_variants,
    get_spec,
    list_models,
    register_model,
    register_pretrained,
)

__all__ = [
    "DuplicateModelError",
    "ModelSpec",
    "UnknownModelError",
    "create_model",
    "family_variants",
    "get_spec",
    "list_models",
    "load_plugins",
    "register_model",
    "register_pretrained",
]
