"""host-supervisor: keeps the services of a Linux host healthy through systemd."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("host-supervisor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
