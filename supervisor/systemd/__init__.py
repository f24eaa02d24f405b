"""systemd integration: the D-Bus manager client, sd_notify, and the journald log output."""

from supervisor.systemd.manager import SystemdManager, UnitSnapshot

__all__ = ["SystemdManager", "UnitSnapshot"]
