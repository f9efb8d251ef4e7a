"""``--time DURATION``: ``90s``, ``20m``, ``1h``, ``1h30m`` or plain seconds, as seconds."""

from __future__ import annotations

import re

from convae.errors import UsageError

UNITS = {"s": 1, "m": 60, "h": 3600}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smh])")


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``90s``, ``20m``, ``1.5h``, ``1h30m``, ``600``); a ``UsageError`` otherwise."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    elif value and _PART.sub("", value) == "":
        seconds = sum(float(n) * UNITS[u] for n, u in _PART.findall(value))
    else:
        raise UsageError(f"--time {text!r}: give a duration such as 90s, 20m, 1h or 1h30m")
    if seconds <= 0:
        raise UsageError(f"--time {text!r}: must be more than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """``1200`` -> ``20m``, ``90`` -> ``1m30s``, ``3600`` -> ``1h`` (for printed choices)."""
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"
