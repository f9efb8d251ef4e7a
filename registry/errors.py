"""Registry errors."""

from convae.errors import ConvaeError, UsageError


class UnknownModelError(UsageError):
    """No variant of that name; the message names close matches."""


class DuplicateModelError(ConvaeError):
    """Two sources registered the same variant name."""
