"""Compact path lists: runs of numbered names (``img0000.png`` ... ``img0127.png``) stored as one item.

An item is a path string or a run ``[prefix, first, count, width, suffix]`` standing for
``prefix + str(first + i).zfill(width) + suffix`` for ``i`` in ``range(count)``. A path is split on
its last run of ASCII digits; runs of one path are written as the plain string.
"""

from __future__ import annotations

import re
from typing import Any

from convae.codec.checks import check, is_int

_LAST_DIGITS = re.compile(r"[0-9]+(?=[^0-9]*\Z)")
MAX_DIGITS = 18  # longer numbers never start a run: first + i stays a small int
MAX_PATH = 4096


def _split(path: str) -> tuple[str, int, str, str] | None:
    """``(prefix, number, digits, suffix)`` around the last run of ASCII digits, or None."""
    m = _LAST_DIGITS.search(path)
    if m is None or len(m.group()) > MAX_DIGITS:
        return None
    return path[: m.start()], int(m.group()), m.group(), path[m.end() :]


def _member(run: list[Any], i: int) -> str:
    prefix, first, _, width, suffix = run
    return f"{prefix}{str(first + i).zfill(width)}{suffix}"


def compact_paths(paths: list[str]) -> list[str | list[Any]]:
    """The compact form of ``paths`` (order kept); ``expand_paths`` inverts it."""
    items: list[str | list[Any]] = []
    for path in paths:
        parts = _split(path)
        last = items[-1] if items else None
        if parts and isinstance(last, list) and (parts[0], parts[3]) == (last[0], last[4]) \
                and parts[1] == last[1] + last[2] and str(parts[1]).zfill(last[3]) == parts[2]:
            last[2] += 1
        else:
            items.append([parts[0], parts[1], 1, len(parts[2]), parts[3]] if parts else path)
    return [_member(item, 0) if isinstance(item, list) and item[2] == 1 else item for item in items]


def expand_paths(items: Any, count: int) -> list[str]:
    """The ``count`` paths of a compact list; raises ``ValueError`` on a malformed one, before any large allocation."""
    check(isinstance(items, list) and len(items) <= count, "images.paths")
    paths: list[str] = []
    for item in items:
        if isinstance(item, str):
            paths.append(item)
            continue
        check(isinstance(item, list) and len(item) == 5, "bad path run")
        prefix, first, n, width, suffix = item
        check(isinstance(prefix, str) and isinstance(suffix, str) and is_int(first) and is_int(width, 1, MAX_PATH)
              and is_int(n, 1, count - len(paths)), "bad path run")
        check(len(prefix) + max(width, len(str(first + n - 1))) + len(suffix) <= MAX_PATH, "bad path run")
        paths += [_member(item, i) for i in range(n)]
    check(len(paths) == count, "images.paths disagrees with count")
    return paths
