"""What the HTTP probe sends and where: a request's bytes, built once per check, and the
TLS client contexts, made once per set of TLS settings."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

__all__ = ["USER_AGENT", "ClientTls", "Target", "client_context", "target"]

USER_AGENT = "host-supervisor"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# What RFC 3986 lets stand in a path and a query; anything else is percent-encoded, as
# a browser (and aiohttp before) would send it. A '%' already there is kept.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


@dataclass(frozen=True)
class ClientTls:
    """How an https connection is checked: `verify` the server's certificate and name
    against `ca` (a PEM file; default the system's CAs), and present `cert` with `key`
    when the server asks for a client certificate."""

    verify: bool = True
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


def client_context(tls: ClientTls) -> ssl.SSLContext:
    """A TLS client context for `tls` (TLS 1.2 or later). Raises OSError or ssl.SSLError
    when a file cannot be used."""
    if tls.verify:
        context = ssl.create_default_context(cafile=tls.ca)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert is not None:
        context.load_cert_chain(tls.cert, tls.key)
    return context


@dataclass(frozen=True)
class Target:
    """One request, ready to send: where to connect and the bytes to write."""

    scheme: str
    host: str
    """For the connect: a name, or an address without brackets."""
    port: int
    origin: tuple[object, ...]
    """Connections are kept and reused per origin: scheme, host, port, TLS settings."""
    request: bytes
    head: bool
    method: str
    keep: bool
    """Keep the connection for the next run (the check's `keep_alive`)."""
    secure: bool
    tls: ClientTls
    """How to check the server when `secure` (https), or after a redirect to https."""


def target(
    url: str,
    method: str,
    headers: dict[str, str],
    *,
    keep_alive: bool,
    tls: ClientTls,
) -> Target:
    """The request for `url`; ValueError for a URL or header that cannot be sent."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        raise ValueError(f"not an http:// or https:// URL with a host: {url}")
    port = parts.port or _DEFAULT_PORTS[scheme]
    wire_host = host if host.isascii() else host.encode("idna").decode("ascii")
    host_header = f"[{wire_host}]" if ":" in wire_host else wire_host
    if parts.port is not None and parts.port != _DEFAULT_PORTS[scheme]:
        host_header += f":{parts.port}"
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_QUERY_SAFE)
    ours = {
        "host": ("Host", host_header),
        "user-agent": ("User-Agent", USER_AGENT),
        "accept": ("Accept", "*/*"),
    }
    if parts.username is not None or parts.password is not None:
        ours["authorization"] = ("Authorization", _basic(parts.username, parts.password))
    if method in _BODY_METHODS:
        ours["content-length"] = ("Content-Length", "0")
    if not keep_alive:
        ours["connection"] = ("Connection", "close")
    for name, value in headers.items():  # the check's own replace ours
        ours[name.lower()] = (name, value)
    lines = [f"{method} {path} HTTP/1.1"]
    for name, value in ours.values():
        if not _header_ok(name, value):
            raise ValueError(f"header {name!r} cannot be sent: a name or value with a line break")
        lines.append(f"{name}: {value}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    secure = scheme == "https"
    return Target(
        scheme=scheme,
        host=wire_host,
        port=port,
        origin=(scheme, wire_host, port, tls if secure else None),
        request=request,
        head=method == "HEAD",
        method=method,
        keep=keep_alive,
        secure=secure,
        tls=tls,
    )


def _basic(username: str | None, password: str | None) -> str:
    """Basic credentials from the URL's user info, percent-decoded (as aiohttp sent them)."""
    pair = f"{unquote(username or '')}:{unquote(password or '')}"
    try:
        raw = pair.encode("latin-1")
    except UnicodeEncodeError:
        raw = pair.encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _header_ok(name: str, value: str) -> bool:
    return bool(name) and not any(c in name + value for c in "\r\n\0") and ":" not in name
