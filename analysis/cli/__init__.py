"""The command line (`minigpt2 ...`, `python -m analysis.cli ...`): the top layer, above views and report."""
from .commands import build_parser, main

__all__ = ["main", "build_parser"]
