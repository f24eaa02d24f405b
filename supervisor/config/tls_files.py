"""Whether the TLS files a config names can be used: one (field, message) per problem,
naming the file, for `validate` to place at the field's FILE:LINE:COL."""

from __future__ import annotations

import ssl

__all__ = ["cert_pair_problems"]


def cert_pair_problems(
    cert: str, key: str, context: ssl.SSLContext, what: str = "certificate"
) -> list[tuple[str, str]]:
    """A certificate and its key: each missing or unreadable file, else one error (at the
    key) when the two do not load together into `context`."""
    problems: list[tuple[str, str]] = []
    for name, path in (("cert", cert), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except FileNotFoundError:
            problems.append((name, f"{name} file {path} does not exist"))
        except OSError as exc:
            problems.append((name, f"{name} file {path} cannot be read ({exc.strerror})"))
    if problems:
        return problems
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return [("key", f"{what} {cert} and key {key} do not load together ({exc})")]
    return []
