"""The cluster's keys in etcd, mirrored in memory from one watch of the prefix.

``PREFIX/units/UNIT/leader`` (value: the holder's host name; its create revision is the
fencing token, its mod revision moves with each of the holder's beats),
``PREFIX/units/UNIT/handover`` (an operator's named host, for a few seconds),
``PREFIX/hosts/HOST`` (a daemon's registration and published view, bound to its lease).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from typing import Any

from supervisor.core import cluster
from supervisor.etcd import KeyValue

__all__ = ["Keys"]


class Keys:
    """The mirror of every key under the prefix, and the views the machines are fed."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.mirror: dict[str, KeyValue] = {}
        self.revision = 0
        """Of the mirror: the last read or watch event."""

    def units_touched(self, key: str, units: Iterable[str]) -> list[str]:
        """The units whose view a change of `key` changes: every one for a host's
        registration (who is alive), else the unit the key belongs to."""
        if key.startswith(f"{self.prefix}hosts/"):
            return list(units)
        return [u for u in units if key.startswith(f"{self.prefix}units/{u}/")]

    def leader(self, unit: str) -> str:
        return f"{self.prefix}units/{unit}/leader"

    def handover(self, unit: str) -> str:
        return f"{self.prefix}units/{unit}/handover"

    def host(self, host: str) -> str:
        return f"{self.prefix}hosts/{host}"

    def alive(self) -> tuple[str, ...]:
        start = f"{self.prefix}hosts/"
        return tuple(sorted(k[len(start) :] for k in self.mirror if k.startswith(start)))

    def host_views(self) -> dict[str, Any]:
        """Each registered host's published view (for `status`)."""
        start = f"{self.prefix}hosts/"
        views: dict[str, Any] = {}
        for key, kv in self.mirror.items():
            if key.startswith(start):
                with contextlib.suppress(ValueError):
                    views[key[len(start) :]] = json.loads(kv.value)
        return views

    def seen(self, unit: str) -> cluster.Seen:
        leader = self.mirror.get(self.leader(unit))
        handover = self.mirror.get(self.handover(unit))
        beats = False
        if leader is not None and (view := self.mirror.get(self.host(leader.value))):
            with contextlib.suppress(ValueError, AttributeError):
                beats = json.loads(view.value).get("beats") is True
        return cluster.Seen(
            holder=leader.value if leader is not None else None,
            token=leader.create_revision if leader is not None else 0,
            lease=leader.lease if leader is not None else 0,
            alive=self.alive(),
            handover_to=handover.value if handover is not None else None,
            revision=self.revision,
            beat=leader.mod_revision if leader is not None else 0,
            holder_beats=beats,
        )
