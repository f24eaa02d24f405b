"""The main config's `http:` (an opt-in listener for /metrics and the status page) and
`node_exporter:` (the same metrics written to a file for node_exporter's textfile
collector, for hosts that want no new listener)."""

from __future__ import annotations

import ipaddress
import re
import ssl
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from supervisor.config.tls_files import cert_pair_problems
from supervisor.config.types import AbsolutePath, FrozenModel, located_error
from supervisor.config.values import PositiveDuration

__all__ = [
    "Cidr",
    "HttpConfig",
    "HttpTLS",
    "NodeExporterConfig",
    "http_tls_problems",
    "is_loopback",
    "split_listen",
]

_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$")


def split_listen(value: str) -> tuple[str, int]:
    """("127.0.0.1", 9810) from "127.0.0.1:9810", ("::1", 9810) from "[::1]:9810";
    ValueError saying what would work. The host is an address, or `localhost`."""
    match = _LISTEN.match(value)
    if match is None:
        raise ValueError(f"expected ADDRESS:PORT like 127.0.0.1:9810 or [::1]:9810, got {value!r}")
    host = match["v6"] or match["host"]
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not between 1 and 65535")
    if host != "localhost":
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"{host!r} is not an IP address: write the address to listen on "
                "(127.0.0.1, ::1, 0.0.0.0, an interface's address) or localhost"
            ) from None
        if match["v6"] is None and address.version == 6:
            raise ValueError(f"write an IPv6 address in brackets: [{host}]:{port}")
    return host, port


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1); 0.0.0.0 is not."""
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def _listen(value: str) -> str:
    split_listen(value)
    return value


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(
            f"expected an address or network like 10.0.0.0/8 or 2001:db8::/32, got {value!r}"
        ) from None


Listen = Annotated[str, AfterValidator(_listen)]
Cidr = Annotated[str, AfterValidator(_cidr)]


class HttpTLS(FrozenModel):
    """The listener's certificate and key: HTTPS instead of HTTP."""

    cert: AbsolutePath = Field(
        description="Server certificate file (PEM), with its chain. Required.",
        examples=["/etc/host-supervisor/http/cert.pem"],
    )
    key: AbsolutePath = Field(
        description="Private key file (PEM) of cert; root's, mode 0600. Required.",
        examples=["/etc/host-supervisor/http/key.pem"],
    )


class HttpConfig(FrozenModel):
    """An HTTP listener serving /metrics (Prometheus text format), the status page at /
    and /status.json; read-only, nothing on it acts."""

    listen: Listen | None = Field(
        default=None,
        description="ADDRESS:PORT to listen on, e.g. 127.0.0.1:9810 or [::1]:9810. An address "
        "that is not loopback needs tls and allow. Default: no listener.",
        examples=["127.0.0.1:9810"],
    )
    tls: HttpTLS | None = Field(
        default=None,
        description="Serve HTTPS with this certificate and key. Default: plain HTTP (loopback "
        "only).",
        examples=[
            {
                "cert": "/etc/host-supervisor/http/cert.pem",
                "key": "/etc/host-supervisor/http/key.pem",
            }
        ],
    )
    allow: tuple[Cidr, ...] | None = Field(
        default=None,
        max_length=256,
        description="Client addresses or networks (CIDR) that may connect; others are answered "
        "403. Default: anyone who can reach the address (loopback only).",
        examples=[["10.0.0.0/24", "127.0.0.1"]],
    )

    @model_validator(mode="after")
    def _exposed(self) -> HttpConfig:
        if self.listen is None:
            for name in ("tls", "allow"):
                if getattr(self, name) is not None:
                    raise located_error((name,), f"{name} needs listen: set the address too")
            return self
        host, port = split_listen(self.listen)
        if not is_loopback(host) and (self.tls is None or not self.allow):
            missing = " and ".join(
                what
                for what, absent in (
                    ("tls (cert and key)", self.tls is None),
                    ("allow (the client networks)", not self.allow),
                )
                if absent
            )
            raise located_error(
                ("listen",),
                f"{self.listen} is reachable from other hosts: set {missing} to serve it "
                f"beyond this host, or listen on 127.0.0.1:{port}",
            )
        return self


class NodeExporterConfig(FrozenModel):
    """The metrics of /metrics, written to a file for node_exporter's textfile collector."""

    textfile: AbsolutePath = Field(
        description="The .prom file to write (replaced atomically), in node_exporter's "
        "--collector.textfile.directory. Required.",
        examples=["/var/lib/node_exporter/textfile_collector/host-supervisor.prom"],
    )
    interval: PositiveDuration = Field(
        default="15s",
        validate_default=True,
        description="How often the file is written, 1s to 1h. Default 15s.",
        examples=["15s"],
    )

    @model_validator(mode="after")
    def _check(self) -> NodeExporterConfig:
        if not self.textfile.endswith(".prom"):
            raise located_error(
                ("textfile",), f"node_exporter reads only files ending in .prom: {self.textfile}"
            )
        if not 1 <= self.interval <= 3600:
            raise located_error(
                ("interval",), f"interval must be from 1s to 1h, got {self.interval:g}s"
            )
        return self


def http_tls_problems(tls: HttpTLS) -> list[tuple[str, str]]:
    """(field, message) for a certificate or key that cannot be used, naming the file."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    return cert_pair_problems(tls.cert, tls.key, context)
