"""``python -m p2ptools`` runs the command line."""

from p2ptools.cli import main

main()
