"""Scrubbing an apprise URL's secrets out of failure reasons before they are logged."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["Redactor"]

_URL_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{1,31})://[^\s'\"<>]*")
_SPLIT_RE = re.compile(r"[/:@?&=#,;\s]+")


class Redactor:
    """Removes every part of one apprise URL (but its scheme) from a text.

    Host names count as secrets too (Slack's and Telegram's tokens sit where a host
    would); IP addresses, `localhost` and port numbers do not. Any URL in the text is
    reduced to its scheme, which also covers apprise's partly masked forms.
    """

    def __init__(self, url: str) -> None:
        scheme, _, rest = url.partition("://")
        head, _, query = rest.partition("?")
        values = [value for _key, value in parse_qsl(query)]  # keys are not secret
        tokens: set[str] = set(_SPLIT_RE.split(head))
        for value in values:
            tokens.add(value)
            tokens.update(_SPLIT_RE.split(value))
        port: str | None = None
        try:
            parts = urlsplit(url)
            tokens.update(
                value
                for value in (parts.username, parts.password, parts.hostname)
                if value is not None
            )
            tokens.update(parts.path.split("/"))
            tokens.add(parts.fragment)
            port = str(parts.port) if parts.port is not None else None
        except ValueError:
            pass  # the crude split above still covers it
        tokens |= {unquote(token) for token in tokens}
        self._tokens = sorted(
            (token for token in tokens if self._secret(token, scheme, port)),
            key=len,
            reverse=True,
        )

    @staticmethod
    def _secret(token: str, scheme: str, port: str | None) -> bool:
        if len(token) < 3 or token in (scheme, port, "localhost"):
            return False
        try:
            ipaddress.ip_address(token.strip("[]"))
        except ValueError:
            return True
        return False

    def __call__(self, text: str) -> str:
        text = _URL_RE.sub(lambda match: f"{match.group(1)}://****", text)
        for token in self._tokens:
            text = text.replace(token, "****")
        return text
