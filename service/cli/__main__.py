"""`python -m service.cli`: the same as the `distillguard` command."""

from . import main

main()
