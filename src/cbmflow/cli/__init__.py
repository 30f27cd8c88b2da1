"""The command line (an edge on top of the stages): :mod:`.parser` dispatches to the command's module
lazily; :mod:`.exits` is the one exit-code table.
"""

from __future__ import annotations

from cbmflow.cli.parser import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
