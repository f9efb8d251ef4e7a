"""Built-in variants: importing this package registers each family's variants by name."""

from convae.models import context, factorized, hyperprior, seed, variable  # noqa: F401
from convae.models.base import Autoencoder

__all__ = ["Autoencoder"]
