"""Predicates for validating untrusted JSON values (manifests); failures raise ``ValueError``."""

from __future__ import annotations

from typing import Any


def is_int(v: Any, lo: int = 0, hi: int = 1 << 62) -> bool:
    """``v`` is an int (not a bool) in ``[lo, hi]``."""
    return type(v) is int and lo <= v <= hi


def is_str(v: Any, max_len: int = 4096) -> bool:
    """``v`` is a non-empty string of at most ``max_len`` characters, without NUL."""
    return isinstance(v, str) and 0 < len(v) <= max_len and "\x00" not in v


def check(ok: bool, what: str) -> None:
    """Raise ``ValueError(what)`` unless ``ok``."""
    if not ok:
        raise ValueError(what)
