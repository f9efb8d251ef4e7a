"""The ``convae`` command line (installed as ``convae.cli``)."""
