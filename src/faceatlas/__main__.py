"""``python -m faceatlas`` runs the command line."""

from faceatlas.cli import main

main()
