"""The repairs adapter: one rung of the ladder on a real unit (restart, reload, restore).

Each returns an `Outcome` the daemon feeds back to the recovery machine: done,
failed (with why), or skipped (the rung cannot apply to this unit). File work of
a restore runs in a thread; systemd jobs go through the D-Bus manager and wait
for their result.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import structlog

from supervisor.config import Policy
from supervisor.core.values import RepairResult, Rung
from supervisor.errors import BusError, JobFailed, SupervisorError
from supervisor.restore import (
    attempt_snapshot,
    describe_last_known_good,
    known_good,
    live_problems,
    restore,
)
from supervisor.restore.diffing import rollback_diff
from supervisor.systemd.manager import SystemdManager

log = structlog.get_logger("supervisor.repairs")

JOB_TIMEOUT = 90.0
LAST_KNOWN_GOOD = "last-known-good"


Result = RepairResult


@dataclass(frozen=True)
class Outcome:
    result: Result
    detail: str
    diff: str = ""  # a restore's masked unified diff of what it changed

    @classmethod
    def job(cls, result: str) -> Outcome:
        return cls(Result.DONE if result == "done" else Result.FAILED, f"job {result}")


class Repairs:
    def __init__(self, manager: SystemdManager, state_dir: Path) -> None:
        self.manager = manager
        self.state_dir = state_dir

    def snapshots_dir(self, unit: str) -> Path:
        return self.state_dir / "snapshots" / unit

    def backups_dir(self, unit: str) -> Path:
        return self.state_dir / "backups" / unit

    async def perform(self, policy: Policy, rung: Rung, unit_failed: bool, now: float) -> Outcome:
        try:
            match rung:
                case Rung.RESTART:
                    return await self.restart(policy.unit, unit_failed)
                case Rung.RELOAD:
                    return await self.reload(policy.unit)
                case Rung.RESTORE:
                    return await self.restore(policy, unit_failed, now)
        except (BusError, JobFailed) as exc:
            return Outcome(Result.FAILED, str(exc))
        return Outcome(Result.SKIPPED, f"unknown rung {rung}")

    async def restart(self, unit: str, unit_failed: bool) -> Outcome:
        if unit_failed:
            # Our ladder, cooldown and guard limit restarts; systemd's start limit
            # would refuse a guarded restart of a failed unit.
            await self.manager.reset_failed(unit)
        return Outcome.job(await self.manager.restart(unit, timeout=JOB_TIMEOUT))

    async def reload(self, unit: str) -> Outcome:
        snapshot = await self.manager.snapshot(unit)
        if not snapshot.can_reload:
            return Outcome(Result.SKIPPED, f"{unit} cannot reload (no ExecReload=)")
        if snapshot.active_state != "active":
            return Outcome(
                Result.SKIPPED, f"{unit} is {snapshot.active_state}: only a running unit reloads"
            )
        return Outcome.job(await self.manager.reload(unit, timeout=JOB_TIMEOUT))

    async def restore(self, policy: Policy, unit_failed: bool, now: float) -> Outcome:
        spec = policy.recovery.restore
        unit = policy.unit
        if spec is None:
            return Outcome(Result.SKIPPED, f"{unit}: no restore section in its policy")
        if spec.source == LAST_KNOWN_GOOD:
            try:
                chosen = known_good(self.snapshots_dir(unit))
            except SupervisorError as exc:
                return Outcome(Result.FAILED, f"restore refused: {exc}")
            if chosen is None:
                return Outcome(Result.SKIPPED, f"{unit}: no known-good snapshot taken yet")
            source = chosen.path
        else:
            source = Path(spec.source)
        diff = await self._diff(spec.paths, source, spec.diff_mask)
        try:
            result = await asyncio.to_thread(
                restore,
                spec.paths,
                source,
                self.backups_dir(unit),
                now,
                spec.validate_argv,
                keep_backups=spec.keep_backups,
            )
        except SupervisorError as exc:
            return Outcome(Result.FAILED, f"restore refused: {exc}")
        if not result.ok:
            return Outcome(Result.FAILED, f"restore rolled back: {result.detail}")
        restarted = await self.restart(unit, unit_failed)
        written = ", ".join(result.written)
        backup = f"; previous files in {result.backup}" if result.backup else ""
        detail = f"restored {written} from {source}{backup}; restart {restarted.detail}"
        return Outcome(restarted.result, detail, diff)

    async def _diff(self, paths: tuple[str, ...], source: Path, patterns: tuple[str, ...]) -> str:
        """What the restore will change, for its alert; never stops the restore."""
        try:
            return await asyncio.to_thread(rollback_diff, paths, source, patterns)
        except (OSError, SupervisorError) as exc:
            return f"(no diff: {exc})"

    async def snapshot(
        self,
        policy: Policy,
        now: float,
        *,
        applied_at: float | None = None,
        healthy_since: float | None = None,
    ) -> Path | None:
        """Take a last-known-good snapshot if the files changed since the last one.

        ``applied_at``: wall-clock seconds when the unit's last successful start or reload
        began. With it, the snapshot is proven (no file changed since) or skipped with the
        reason logged; without it, it is taken as before but recorded as unproven.
        ``healthy_since``: when the unit last became healthy, recorded in the manifest.
        Raises RestoreError (a SupervisorError) for what a restore would refuse.
        """
        spec = policy.recovery.restore
        if spec is None or spec.source != LAST_KNOWN_GOOD:
            return None
        attempt = await asyncio.to_thread(
            attempt_snapshot,
            spec.paths,
            self.snapshots_dir(policy.unit),
            now,
            spec.keep,
            applied_at=applied_at,
            healthy_since=healthy_since,
        )
        if attempt.path is None and not attempt.reason.startswith("unchanged"):
            log.info("known-good snapshot skipped", unit=policy.unit, reason=attempt.reason)
        return attempt.path

    async def known_good(self, policy: Policy) -> str:
        """`describe_last_known_good`, off the event loop."""
        return await asyncio.to_thread(self.describe_last_known_good, policy)

    async def proven(self, policy: Policy) -> bool:
        """Whether a proven snapshot exists that a rollback would restore (off the loop)."""
        spec = policy.recovery.restore
        if spec is None or spec.source != LAST_KNOWN_GOOD:
            return False
        try:
            chosen = await asyncio.to_thread(known_good, self.snapshots_dir(policy.unit))
        except SupervisorError:
            return False
        return chosen is not None and chosen.proven

    def describe_last_known_good(self, policy: Policy) -> str:
        """Which snapshot a restore of the unit would use and why (for status and
        history), or how it restores without one. Reads the disk: call it in a thread."""
        spec = policy.recovery.restore
        if spec is None:
            return "no restore section: nothing is snapshotted"
        problems = live_problems(spec.paths)
        warning = f" Warning: a snapshot would be refused: {problems[0]}" if problems else ""
        if spec.source != LAST_KNOWN_GOOD:
            return f"restore would use the defaults in {spec.source}.{warning}"
        return describe_last_known_good(self.snapshots_dir(policy.unit)) + warning
