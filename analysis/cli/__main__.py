"""python -m analysis.cli: the same as the minigpt2 command."""
import sys

from .commands import main

sys.exit(main())
