"""Memory probe: the unit's memory against `max_rss`, the host's use against `host_max_used`.

The unit's memory is systemd's MemoryCurrent (its cgroup, page cache included) when
accounting is on; otherwise the resident set of its main process and all descendants,
read with psutil in a thread.
"""

from __future__ import annotations

import time

import psutil

from supervisor.checks._threads import in_thread
from supervisor.checks.disk import human_size
from supervisor.checks.result import CheckResult, Measure, ProbeContext, Status, finish
from supervisor.config.probes import MemoryProbe

__all__ = ["run", "tree_rss"]


def tree_rss(pid: int) -> tuple[int, int]:
    """RSS in bytes of `pid` and its descendants, and how many processes that is (blocking).

    Raises psutil.NoSuchProcess when `pid` itself is gone; descendants that exit
    while being read are left out.
    """
    root = psutil.Process(pid)
    total = root.memory_info().rss
    count = 1
    for child in root.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
        count += 1
    return total, count


async def _unit_memory(context: ProbeContext) -> tuple[int, str] | str:
    """(bytes, where from), or the reason the unit's memory is not known."""
    if context.memory_current is not None:
        return context.memory_current, "cgroup"
    if context.main_pid is None:
        return f"{context.unit} has no memory accounting and no main process to measure"
    try:
        total, count = await in_thread(tree_rss, context.main_pid)
    except psutil.NoSuchProcess:
        return f"main process {context.main_pid} of {context.unit} is gone"
    except psutil.AccessDenied:
        return f"not allowed to read the memory of process {context.main_pid}"
    plural = "process" if count == 1 else "processes"
    return total, f"RSS of {count} {plural}"


async def run(
    spec: MemoryProbe,
    context: ProbeContext,
    timeout: float,  # noqa: ASYNC109 - the probe spends it itself
) -> CheckResult:
    """Compare the unit's and the host's memory with the limits; over one is CRITICAL."""
    del timeout  # bounded by the caller's backstop; psutil reads take milliseconds
    started = time.monotonic()
    problems: list[str] = []
    figures: list[str] = []
    measured: list[Measure] = []
    if spec.max_rss is not None:
        unit = await _unit_memory(context)
        if isinstance(unit, str):
            return finish(Status.UNKNOWN, unit, started)
        used, source = unit
        measured.append(Measure("rss", float(used), "B", float(spec.max_rss), low=0.0))
        figure = f"{human_size(used)} ({source})"
        if used > spec.max_rss:
            problems.append(f"{figure} > {human_size(spec.max_rss)}")
        else:
            figures.append(figure)
    if spec.host_max_used is not None:
        host = await in_thread(psutil.virtual_memory)
        measured.append(
            Measure("host_used", host.percent, "%", spec.host_max_used, low=0.0, high=100.0)
        )
        figure = f"host memory {host.percent:.1f}% used"
        if host.percent > spec.host_max_used:
            problems.append(f"{figure} > {spec.host_max_used:g}%")
        else:
            figures.append(figure)
    if problems:
        return finish(Status.CRITICAL, "; ".join(problems), started, tuple(measured))
    return finish(Status.OK, "; ".join(figures), started, tuple(measured))
