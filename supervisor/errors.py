"""Exceptions of host-supervisor, each with the reason it exists."""


class SupervisorError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(SupervisorError):
    """The configuration could not be loaded; the message names the file, line or path."""


class BusError(SupervisorError):
    """The system bus or systemd did not answer as expected; the message names the unit."""


class UnitNotFound(BusError):
    """systemd knows no unit by that name (LoadState `not-found`)."""


class JobFailed(BusError):
    """A systemd job (start, stop, restart, reload) ended with a result other than `done`."""
