"""`python -m coordinator.ctl`: coordctl without the console script."""

from coordinator.ctl.cli import main

main()
