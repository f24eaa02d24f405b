"""The one whitespace squash and clip of messages."""

from __future__ import annotations

from supervisor.text import clip, one_line


def test_one_line_squashes_whitespace_and_newlines() -> None:
    assert one_line("  a\n\tb  c \r\n") == "a b c"


def test_one_line_with_a_limit_cuts_with_dots() -> None:
    assert one_line("x" * 10, 10) == "x" * 10
    assert one_line("abc  def\nghi", 8) == "abc d..."


def test_clip_keeps_whitespace() -> None:
    assert clip("a\nb", 3) == "a\nb"
    assert clip("a\nbcd", 4) == "a..."
