"""Secrets out of every output: the one masking function and its rules.

`mask(text)` is applied as a safety net wherever text leaves the process (log lines
and journal fields, ``STATUS=``, check messages, alert titles and bodies, the spool,
config errors, the CLI's output). Its rules:

- a web URL (http, https, ws, wss, ftp, file) keeps its scheme, host, port and path;
  its userinfo, user and password alike, becomes ``****`` (``http://****@host/``), and
  each query or fragment parameter whose name looks secret gets the value ``****``
  (``?token=****&page=2``);
- any other URL (``scheme://...``: apprise's, which hold passwords, tokens and webhook
  ids anywhere) keeps only its scheme: ``mailtos://****``;
- outside URLs, ``name=value`` with a secret-looking name becomes ``name=****``
  (``--password=****``, ``API_KEY=****``), and ``Bearer <token>`` becomes
  ``Bearer ****``;
- every URL `remember`-ed (the alert channels') is masked wherever it, or the part of
  it after the scheme, appears, even where the rules above would show part of it (an
  apprise channel may be a native ``https://`` webhook whose path is the token).

A name looks secret when, lower-cased and without ``-``, ``_`` and ``.``, it contains
token, secret, passw, pwd, apikey, accesskey, privatekey, auth, signature, credential,
session or cookie, or when one of its words (split at ``-``, ``_``, ``.``) is key,
pass, sig, pw or pin: ``api_key``, ``X-Api-Key``, ``access_token``, ``passwd`` and
``sig`` do, ``monkey`` and ``keyboard`` do not.

`mask` is idempotent and never raises. `mask_url` is the stricter form for a value
known to be an apprise URL: the scheme only. `Redactor` scrubs one apprise URL's every
part out of an apprise failure reason.

No imports from the rest of the package, so that every layer can use it.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["MASK", "Redactor", "looks_secret", "mask", "mask_data", "mask_url", "remember"]

MASK = "****"

WEB_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})
"""Schemes whose URLs keep their host and path: the rest may hold secrets anywhere."""

_URL_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{1,31})://([^\s'\"<>`]*)")
_PAIR_RE = re.compile(
    r"(?<![\w.-])(-{0,2}[A-Za-z_][\w.-]*)=(\"[^\"]*\"|'[^']*'|[^\s&;,'\"<>)\]}]*)"
)
_BEARER_RE = re.compile(r"\b([Bb]earer)\s+[A-Za-z0-9._~+/=-]{6,}")
_PARAM_RE = re.compile(r"([^&;=]*)=([^&;]*)")
_SECRET_PARTS = (
    "token",
    "secret",
    "passw",
    "pwd",
    "apikey",
    "accesskey",
    "privatekey",
    "auth",
    "signature",
    "credential",
    "session",
    "cookie",
)
_SECRET_NAMES = frozenset({"key", "pass", "sig", "pw", "pin"})

_lock = threading.Lock()
_remembered: tuple[tuple[str, str], ...] = ()  # (literal, replacement), longest first


def looks_secret(name: str) -> bool:
    """True when a parameter, option or field name suggests its value is a secret."""
    words = [word for word in re.split(r"[-_.\s]+", name.lower()) if word]
    key = "".join(words)
    return bool(key) and (
        any(word in _SECRET_NAMES for word in words) or any(part in key for part in _SECRET_PARTS)
    )


def mask_url(url: str, *, keep_host: bool = False) -> str:
    """Show only a URL's scheme: the rest may hold passwords and tokens.

    With `keep_host`, a web URL (http, https...) also shows its host and port, its
    userinfo masked and its path, query and fragment as ``...`` (a webhook's path may
    be its token): for a user's value quoted in a config error.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return MASK
    if not rest:
        return f"{scheme}://"
    if not keep_host or scheme.lower() not in WEB_SCHEMES:
        return f"{scheme}://{MASK}"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    shown = _URL_RE.sub(_url, f"{scheme}://{authority}")
    if rest in (authority, f"{authority}/"):
        return shown + rest[len(authority) :]
    return f"{shown}/..."


def remember(url: str) -> None:
    """Mask this URL (an alert channel's) in every later `mask`, wherever it appears."""
    global _remembered
    rest = url.partition("://")[2]
    if not rest:
        return
    replacement = mask_url(url)
    pairs = {url: replacement, unquote(url): replacement}
    if len(rest) >= 6:
        pairs[rest] = MASK
        pairs[unquote(rest)] = MASK
    with _lock:
        merged = dict(_remembered)
        merged.update(pairs)
        _remembered = tuple(sorted(merged.items(), key=lambda item: len(item[0]), reverse=True))


def _params(text: str) -> str:
    """``a=1&token=x`` with every secret-named value masked."""

    def one(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if value and value != MASK and looks_secret(unquote(name)):
            return f"{name}={MASK}"
        return match.group(0)

    return _PARAM_RE.sub(one, text)


def _url(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    if scheme.lower() not in WEB_SCHEMES:
        return f"{scheme}://{MASK}" if rest else match.group(0)
    rest, hash_, fragment = rest.partition("#")
    rest, question, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    _userinfo, at, host = authority.rpartition("@")
    if at:
        authority = f"{MASK}@{host}"
    elif _bad_port(authority):
        # "user:pa/ss@host": a password holding a slash; hide up to its last "@".
        _userinfo, at, after = rest.rpartition("@")
        if not at:
            return f"{scheme}://{MASK}"
        authority, slash, path = after.partition("/")
        authority = f"{MASK}@{authority}"
    text = f"{scheme}://{authority}{slash}{path}"
    if question:
        text += f"?{_params(query)}"
    if hash_:
        text += f"#{_params(fragment)}"
    return text


def _bad_port(authority: str) -> bool:
    """True when what follows the authority's last ":" is no port (IPv6 aside)."""
    if authority.startswith("[") or ":" not in authority:
        return False
    port = authority.rpartition(":")[2]
    return not port.isdigit() and port != ""


def _pair(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(2)
    if value in ("", MASK) or not looks_secret(name):
        return match.group(0)
    return f"{name}={MASK}"


def mask(text: str) -> str:
    """`text` with every secret the rules above recognise replaced by ``****``."""
    if not text:
        return text
    for literal, replacement in _remembered:
        if literal in text:
            text = text.replace(literal, replacement)
    if "://" in text:
        text = _URL_RE.sub(_url, text)
    if "=" in text:
        # A URL's query was handled above; its masked values are left as they are.
        text = _PAIR_RE.sub(_pair, text)
    if "earer" in text:
        text = _BEARER_RE.sub(lambda match: f"{match.group(1)} {MASK}", text)
    return text


def mask_data(value: Any, key: str = "") -> Any:
    """`mask` applied to every string inside JSON-like data (dicts, lists, tuples); a
    string under a secret-looking key (`looks_secret`) becomes ``****`` whole."""
    if isinstance(value, str):
        if value and key and looks_secret(key):
            return MASK
        return mask(value)
    if isinstance(value, dict):
        return {k: mask_data(v, k if isinstance(k, str) else "") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_data(item) for item in value)
    return value


_SPLIT_RE = re.compile(r"[/:@?&=#,;\s]+")


class Redactor:
    """Removes every part of one apprise URL (but its scheme) from a text.

    Stricter than `mask`, for apprise's failure reasons, which quote parts of the URL
    out of context: host names count as secrets too (Slack's and Telegram's tokens sit
    where a host would); IP addresses, `localhost` and port numbers do not. Any URL in
    the text is reduced to its scheme, which also covers apprise's partly masked forms.
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
        if len(token) < 3 or token in (scheme, port, "localhost", MASK):
            return False
        try:
            ipaddress.ip_address(token.strip("[]"))
        except ValueError:
            return True
        return False

    def __call__(self, text: str) -> str:
        text = _URL_RE.sub(lambda match: f"{match.group(1)}://{MASK}", text)
        for token in self._tokens:
            text = text.replace(token, MASK)
        return mask(text)
