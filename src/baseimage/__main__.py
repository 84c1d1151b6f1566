"""`python -m baseimage` runs the command line."""

from baseimage.cli import main

main()
