"""Load variants from the ``convae.models`` entry-point group: convae's own (``convae.zoo``) and plugins."""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points

GROUP = "convae.models"
_loaded: set[str] = set()


class PluginWarning(UserWarning):
    """A plugin failed to import; the rest of convae keeps working."""


def load_plugins() -> list[str]:
    """Import every ``convae.models`` entry point once; warn (don't crash) on a broken one."""
    from convae.registry.errors import DuplicateModelError

    loaded = []
    for ep in entry_points(group=GROUP):
        key = f"{ep.name}={ep.value}"
        if key in _loaded:
            continue
        _loaded.add(key)
        try:
            ep.load()
        except DuplicateModelError:
            raise
        except Exception as exc:  # a broken plugin must not take the CLI down
            if ep.value.split(".")[0] == "convae":  # convae's own variants: a bug, not a broken plugin
                raise
            dist = ep.dist.name if ep.dist else "?"
            warnings.warn(
                f"convae plugin {ep.name!r} from {dist} failed to import: {type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=2,
            )
            continue
        loaded.append(ep.name)
    return loaded
