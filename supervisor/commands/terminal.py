"""What the terminal allows: colour, and how wide a row may be.

Colour follows the conventions other tools do: only on a terminal, never when
`NO_COLOR` is set and not empty (https://no-color.org) or `--no-color` is given, and
never when `TERM=dumb`. Rows are cut to the terminal's width only on a terminal; a
pipe or a file gets them whole, as `systemctl` does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

__all__ = ["Terminal", "paint"]

_CODES = {"green": "32", "yellow": "33", "red": "31", "bold": "1", "dim": "2"}


@dataclass(frozen=True)
class Terminal:
    colour: bool = False
    width: int | None = None
    """Columns a row may take; None: no limit (not a terminal, or --full)."""

    @classmethod
    def of(
        cls,
        out: TextIO,
        *,
        no_colour: bool = False,
        full: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> Terminal:
        env = os.environ if environ is None else environ
        try:
            tty = out.isatty()
        except (AttributeError, ValueError):  # a closed or odd stream
            tty = False
        colour = tty and not no_colour and not env.get("NO_COLOR") and env.get("TERM") != "dumb"
        width = None if full or not tty else shutil.get_terminal_size((80, 24)).columns
        return cls(colour, width)

    def paint(self, text: str, style: str | None) -> str:
        return paint(text, style) if self.colour else text


def paint(text: str, style: str | None) -> str:
    """`text` in one of the styles of `_CODES` (or as it is for None)."""
    if style is None or not text:
        return text
    return f"\033[{_CODES[style]}m{text}\033[0m"
