"""TLS settings for the etcd client: a CA to trust and, for mTLS, a client certificate.

Each file is checked on its own before OpenSSL sees it, so a wrong one gets one error that
names it (OpenSSL's own messages do not say which of the files it choked on).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from supervisor.etcd.errors import EtcdConfigError


@dataclass(frozen=True)
class EtcdTLS:
    """Where the TLS material is; all optional, ``cert`` and ``key`` together (mTLS).

    Without ``ca`` the system's trusted CAs are used. The key must not be encrypted: a
    daemon has nobody to type its passphrase.
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A client context verifying the server (certificate and host name), TLS 1.2 or later.

        Raises EtcdConfigError naming the file that is missing, unreadable or not what it
        should be.
        """
        if (self.cert is None) != (self.key is None):
            given, missing = ("cert", "key") if self.key is None else ("key", "cert")
            raise EtcdConfigError(
                f"TLS: {given} {getattr(self, given)} is given without a {missing}; "
                "a client certificate needs both (mTLS)"
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca is None:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        else:
            _load_certificates(context, self.ca, "CA file")
        if self.cert is not None and self.key is not None:
            # Parse the certificate alone first, so its errors are told apart from the key's.
            _load_certificates(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), self.cert, "client cert")
            key_text = _read(self.key, "client key")
            if b"PRIVATE KEY-----" not in key_text:
                raise EtcdConfigError(f"TLS: client key {self.key}: no PEM private key in it")
            try:
                context.load_cert_chain(self.cert, self.key, password=_no_passphrase)
            except _Encrypted:
                raise EtcdConfigError(
                    f"TLS: client key {self.key} is encrypted; give an unencrypted key"
                ) from None
            except ssl.SSLError as e:
                if "KEY_VALUES_MISMATCH" in str(e):
                    raise EtcdConfigError(
                        f"TLS: client key {self.key} does not belong to client cert {self.cert}"
                    ) from None
                raise EtcdConfigError(
                    f"TLS: client key {self.key}: not a usable private key ({_reason(e)})"
                ) from None
        return context


class _Encrypted(Exception):
    """Raised from OpenSSL's passphrase callback: the key asks for one."""


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal, and a daemon would hang.
    raise _Encrypted


def _read(path: Path, what: str) -> bytes:
    """The file's bytes, or an EtcdConfigError naming it and saying what is wrong."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EtcdConfigError(f"TLS: {what} {path} does not exist") from None
    except PermissionError:
        raise EtcdConfigError(f"TLS: {what} {path} is not readable (permission denied)") from None
    except IsADirectoryError:
        raise EtcdConfigError(f"TLS: {what} {path} is a directory, not a file") from None
    except OSError as e:
        raise EtcdConfigError(f"TLS: {what} {path} cannot be read ({e.strerror})") from None


def _load_certificates(context: ssl.SSLContext, path: Path, what: str) -> None:
    text = _read(path, what)
    if b"-----BEGIN CERTIFICATE-----" not in text:
        raise EtcdConfigError(f"TLS: {what} {path}: no PEM certificate in it")
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as e:
        raise EtcdConfigError(
            f"TLS: {what} {path}: not a valid certificate ({_reason(e)})"
        ) from None


def _reason(error: ssl.SSLError) -> str:
    return str(error.reason or error.strerror or error).lower().replace("_", " ")
