"""Sessions: tests, stress, lint, demo, bench, rd. Each installs the project from this repo's files."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
PYTHON = os.environ.get("CONVAE_PYTHON", "3.11")


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (extra pytest arguments pass through)."""
    _install(session)
    session.run("pytest", "-q", *session.posargs)


@nox.session(python=PYTHON)
def stress(session: nox.Session) -> None:
    """The long reliability runs (docs/RELIABILITY.md): 20,000+ mutated code files, kill -9 trials, memory."""
    _install(session)
    session.run("pytest", "-q", "-s", "-m", "stress", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Train briefly, compress a folder, decompress it, print sizes and PSNR."""
    _install(session)
    session.run("bash", "scripts/demo.sh", *session.posargs, external=True)


@nox.session(python=PYTHON)
def rd(session: nox.Session) -> None:
    """Rate-distortion report into rd/out/ (extra arguments pass to `convae eval --rd`, e.g. --quick --limit 50)."""
    _install(session)
    session.run("convae", "eval", "--rd", "--out", "rd/out", *session.posargs)


@nox.session(python=PYTHON)
def zoo(session: nox.Session) -> None:
    """Retrain the shipped variants (scripts/train_zoo.sh; STEP names pass through)."""
    _install(session)
    session.run("bash", "scripts/train_zoo.sh", *session.posargs, external=True, env={"SHIP": "1"})


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Speed benchmark against the blog's pipeline and Pillow; writes benchmarks/results.json (try --quick)."""
    _install(session)
    session.run("python", "benchmarks/run.py", *session.posargs)
