"""Text for one line of a message, a log field or a status: the one clip and squash.

No imports from the rest of the package, so that every layer can use it.
"""

from __future__ import annotations

__all__ = ["clip", "one_line"]


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in '...' when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str, limit: int | None = None) -> str:
    """Squash whitespace (newlines included) to single spaces, trimmed at both ends; with
    ``limit``, cut to that many characters (see `clip`)."""
    text = " ".join(text.split())
    return text if limit is None else clip(text, limit)
