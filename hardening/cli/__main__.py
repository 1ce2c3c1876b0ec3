"""`python -m hardening.cli`."""

from hardening.cli import main

main()
