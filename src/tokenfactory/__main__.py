"""`python -m tokenfactory` runs the CLI."""

from tokenfactory.cli import main

main()
