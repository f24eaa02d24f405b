"""Snapshots of a unit's configuration, and the restore of a known-good one.

A snapshot, and the backup a restore takes before it writes, is a directory that
mirrors the policy's paths: ``DIR/<UTC time>/<path without the leading />`` plus a
``manifest.json`` (paths, fingerprint, time, paths that were absent). Files keep
their modes, owners and modification times; symlinks stay symlinks; special files
(fifos, sockets, devices) are neither copied nor fingerprinted nor removed. Each one
is built in a ``.tmp-*`` directory beside it, fsync'd, and renamed into place, so a
directory with a timestamp name is always complete; leftovers of a crash are removed
the next time, under a lock on ``DIR/.lock``.

A restore never writes outside the named paths and never through a symlink inside
them: it walks the live tree by directory descriptor with ``O_NOFOLLOW``, writes each
file to a temporary name in its own directory, fsyncs it, renames it over and fsyncs
the directory. An entry whose content, mode and owner already match is left alone.
The parent directories of a named path are the host's: they are followed as they are
and never created.

Everything here is synchronous and blocks on disk and on the validator: the daemon
calls it in a thread. The validator runs like every program of the policy
(`supervisor.procs.run_program`), on an event loop of its own (`asyncio.run`), so a
restore must not run in the thread of a running event loop.
"""

from supervisor.restore.apply import OUTPUT_TAIL, RestoreResult, restore
from supervisor.restore.files import MANIFEST, RestoreError
from supervisor.restore.fingerprinting import fingerprint
from supervisor.restore.preflight import check_paths
from supervisor.restore.snapshots import latest_snapshot, take_snapshot

__all__ = [
    "MANIFEST",
    "OUTPUT_TAIL",
    "RestoreError",
    "RestoreResult",
    "check_paths",
    "fingerprint",
    "latest_snapshot",
    "restore",
    "take_snapshot",
]
