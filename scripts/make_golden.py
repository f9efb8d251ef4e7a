"""Regenerate tests/data/golden/ (one code file per shipped family, and expected.json): run from the repo root.

Only after a deliberate change (new shipped weights, a new format version): the golden tests exist
to catch every other change in the decoded bytes.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_golden import DATA, make_golden  # noqa: E402  (after the path is set)


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        expected = make_golden(DATA, Path(work))
    (DATA / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(expected['codes'])} code files and expected.json to {DATA.relative_to(REPO)}")


if __name__ == "__main__":
    main()
