"""Training recipes by name: the blog's original settings and convae's faster default."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Recipe:
    """Optimiser and schedule settings; every field can be overridden from the command line."""

    name: str
    batch_size: int
    lr: float
    epochs: int
    schedule: str  # "constant" or "onecycle"
    weight_decay: float = 0.0

    def override(self, **changes: object) -> Recipe:
        """A copy with the given non-None fields replaced."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict:
        """Plain dict (for metadata)."""
        return asdict(self)


RECIPES = {
    # The blog post: Adam 1e-3, batch 20, MSE, 50 epochs, constant learning rate.
    "blog": Recipe("blog", batch_size=20, lr=1e-3, epochs=50, schedule="constant"),
    # Large batches with a one-cycle schedule: same quality in a fraction of the time.
    "fast": Recipe("fast", batch_size=128, lr=1e-2, epochs=8, schedule="onecycle"),
}
DEFAULT_RECIPE = "fast"
