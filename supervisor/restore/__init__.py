"""Snapshots of a unit's configuration, and the restore of a known-good one.

A snapshot, and the backup a restore takes before it writes, is a directory that
mirrors the policy's paths: ``DIR/<UTC time>/<path without the leading />`` plus a
``manifest.json`` (paths, fingerprint, time, paths that were absent, and for a snapshot
whether it is proven and why). Files keep their data (sparse files stay sparse), modes,
owners, modification times and extended attributes (ACLs, SELinux labels, file
capabilities, user.* and trusted.*); symlinks stay symlinks, wherever they point;
special files (fifos, sockets, devices) are neither copied nor fingerprinted nor
removed. Each one is built in a ``.tmp-*`` directory beside it, fsync'd, and renamed
into place, so a directory with a timestamp name is always complete; leftovers of a
crash are removed the next time, under a lock on ``DIR/.lock``. The oldest are pruned:
snapshots to ``keep`` (never the newest proven one), backups to ``keep_backups``.

**Nothing is ever reached through a symlink.** Every path read or written as root (the
live named paths, their parents, the source, the snapshot and backup directories) is
walked from ``/`` by directory descriptor with ``O_NOFOLLOW`` in every component
(`supervisor.restore.walk` says why not ``openat2``). A symlink in a parent of a named
path is refused, by a restore and already by the snapshot (`live_problems`, which
``host-supervisor validate`` shows as warnings). A symlink inside the named paths is
copied and restored as a link and never followed, so swapping a directory for a symlink
while a snapshot or restore runs can neither read nor write outside the named paths.

A restore writes each file to a temporary name in its own directory, fsyncs it, renames
it over and fsyncs the directory. An entry whose content, mode, owner and xattrs
already match is left alone. Parent directories of a named path are never created.

**Last known good means applied and proven**: see `supervisor.restore.snapshots`
(``applied_at``) and `known_good` / `describe_last_known_good`.

Everything here is synchronous and blocks on disk and on the validator: the daemon
calls it in a thread. The validator runs like every program of the policy
(`supervisor.procs.run_program`), on an event loop of its own (`asyncio.run`), so a
restore must not run in the thread of a running event loop.
"""

from supervisor.restore.apply import KEEP_BACKUPS, OUTPUT_TAIL, RestoreResult, restore
from supervisor.restore.files import MANIFEST, RestoreError
from supervisor.restore.fingerprinting import fingerprint
from supervisor.restore.preflight import check_paths, live_problems
from supervisor.restore.snapshots import (
    KnownGood,
    SnapshotAttempt,
    attempt_snapshot,
    describe_last_known_good,
    known_good,
    latest_snapshot,
    take_snapshot,
)

__all__ = [
    "KEEP_BACKUPS",
    "MANIFEST",
    "OUTPUT_TAIL",
    "KnownGood",
    "RestoreError",
    "RestoreResult",
    "SnapshotAttempt",
    "attempt_snapshot",
    "check_paths",
    "describe_last_known_good",
    "fingerprint",
    "known_good",
    "latest_snapshot",
    "live_problems",
    "restore",
    "take_snapshot",
]
