"""``python -m keyplane.cli``."""

from keyplane.cli.main import main

main()
