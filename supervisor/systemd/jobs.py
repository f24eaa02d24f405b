"""Waiting for systemd jobs: ``JobRemoved`` results matched to the jobs waited for.

Private to :mod:`supervisor.systemd.manager`. ``JobRemoved`` can arrive before the
``StartUnit`` reply carrying the job path: results nobody waits for yet are kept by job
path for a while, and a waiter looks there first.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from supervisor.errors import BusError, JobFailed

#: How long results of jobs nobody waits for yet are kept (by count).
RECENT_JOBS = 512


class JobTracker:
    """The results of finished jobs and the futures of jobs being waited for."""

    def __init__(self) -> None:
        self._results: OrderedDict[str, str] = OrderedDict()
        self._waiters: dict[str, asyncio.Future[str]] = {}

    # The job timeout is part of the interface (ASYNC109): it bounds the wait for
    # JobRemoved, and its expiry is reported as JobFailed.
    async def wait(self, job: str, timeout: float, what: str) -> str:  # noqa: ASYNC109
        """The result of ``job`` (``what`` names it in the error: "start of x.service")."""
        result = self._results.pop(job, None)
        if result is not None:
            return result
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters[job] = future
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise JobFailed(f"{what}: job {job} did not finish within {timeout:g}s") from None
        finally:
            self._waiters.pop(job, None)

    def removed(self, job: str, result: str) -> None:
        """systemd's JobRemoved: wake the waiter of ``job``, or keep its result."""
        future = self._waiters.pop(job, None)
        if future is not None:
            if not future.done():
                future.set_result(result)
            return
        self._results[job] = result
        while len(self._results) > RECENT_JOBS:
            self._results.popitem(last=False)

    def fail_waiters(self, error: BusError) -> None:
        """Every job being waited for fails with ``error`` (the bus is gone)."""
        waiters, self._waiters = self._waiters, {}
        for future in waiters.values():
            if not future.done():
                future.set_exception(error)
