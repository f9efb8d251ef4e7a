"""``python -m convae`` runs the command line (torchrun uses this)."""

from convae.cli.app import main

main()
