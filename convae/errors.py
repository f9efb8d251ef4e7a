"""Typed errors with user-facing messages; the CLI maps them to one-line messages and exit codes."""


class ConvaeError(Exception):
    """Base class: a failure the user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(ConvaeError):
    """Bad arguments or options (exit code 2)."""

    exit_code = 2


class DataError(ConvaeError):
    """An input data set or image cannot be read."""


class WeightsError(ConvaeError):
    """Weights are missing, corrupt, or belong to another variant."""


class FormatError(ConvaeError):
    """A code file or its manifest is missing, corrupt, or inconsistent."""


class OutputError(ConvaeError):
    """An output cannot be written (exists without --force, unwritable, disk full)."""


class TrainingError(ConvaeError):
    """Training stopped (e.g. a non-finite loss)."""


class Interrupted(TrainingError):
    """Ctrl-C during training; the last epoch's checkpoint is kept for --resume."""

    exit_code = 130
