"""Process probe: the unit's main process, or processes matched by name or cmdline.

psutil reads /proc synchronously, and listing every process takes milliseconds on a
busy host, so that work runs in a thread (`_threads.in_thread`), never on the loop.

CPU use is measured between two readings of the process's CPU time. A `ProcessProber`
keeps the last reading of each process (by pid and start time), so a check's CPU% is
its average since its previous run. When there is no reading yet, or the last one is
younger than `MIN_WINDOW`, the probe takes one, sleeps (asynchronously) and reads again.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

import psutil

from supervisor.checks._threads import in_thread
from supervisor.checks.result import CheckResult, Measure, ProbeContext, Status, finish
from supervisor.config.probes import ProcessProbe

__all__ = ["FORGET_AFTER", "MIN_WINDOW", "ProcessProber"]

MIN_WINDOW = 0.5
"""Shortest interval a CPU% is measured over, in seconds (at most half the timeout)."""
FORGET_AFTER = 3600.0
"""CPU readings older than this are dropped (their processes have usually gone)."""


@dataclass(frozen=True)
class _Sample:
    pid: int
    name: str
    started: float  # the process's create_time: with pid, its identity
    cpu: float  # user + system CPU seconds so far
    at: float  # time.monotonic() of the reading
    threads: int
    fds: int | None


class _Outcome(Exception):
    """A result decided while looking for the processes (gone, zombie, none matched)."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _sample(process: psutil.Process, with_fds: bool) -> _Sample:
    with process.oneshot():
        if process.status() == psutil.STATUS_ZOMBIE:
            raise _Outcome(Status.CRITICAL, f"process {process.pid} is a zombie (it has exited)")
        times = process.cpu_times()
        return _Sample(
            pid=process.pid,
            name=process.name(),
            started=process.create_time(),
            cpu=times.user + times.system,
            at=time.monotonic(),
            threads=process.num_threads(),
            fds=process.num_fds() if with_fds else None,
        )


def _targets(spec: ProcessProbe, context: ProbeContext) -> tuple[list[psutil.Process], str]:
    """The processes to probe and how to name them in a message."""
    if spec.main_pid:
        if context.main_pid is None:
            raise _Outcome(Status.CRITICAL, f"{context.unit} has no main process")
        try:
            return [psutil.Process(context.main_pid)], f"main process {context.main_pid}"
        except psutil.NoSuchProcess:
            raise _Outcome(
                Status.CRITICAL, f"main process {context.main_pid} of {context.unit} is gone"
            ) from None
    if spec.name is not None:
        found = [p for p in psutil.process_iter(["name"]) if p.info["name"] == spec.name]
        what = f"process named {spec.name!r}"
    else:
        assert spec.cmdline is not None  # the model guarantees one target
        pattern = re.compile(spec.cmdline)
        found = [
            p
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and pattern.search(" ".join(p.info["cmdline"]))
        ]
        what = f"process whose cmdline matches {spec.cmdline!r}"
    if not found:
        raise _Outcome(Status.CRITICAL, f"no {what}")
    return found, what


def _look(spec: ProcessProbe, context: ProbeContext) -> tuple[list[_Sample], str]:
    """Find the processes and read them (blocking: run in a thread)."""
    processes, what = _targets(spec, context)
    samples: list[_Sample] = []
    for process in processes:
        try:
            samples.append(_sample(process, spec.max_fds is not None))
        except psutil.NoSuchProcess:
            if spec.main_pid:
                raise _Outcome(
                    Status.CRITICAL, f"main process {process.pid} of {context.unit} is gone"
                ) from None
            # a matched process that exited meanwhile: judge the others
        except _Outcome:
            if spec.main_pid:
                raise
    if not samples:
        raise _Outcome(Status.CRITICAL, f"no {what} (they exited while probed)")
    return samples, what


def _reread(samples: list[_Sample]) -> list[_Sample]:
    """Read the CPU time of the same processes again (blocking: run in a thread)."""
    fresh: list[_Sample] = []
    for old in samples:
        try:
            process = psutil.Process(old.pid)
            if process.create_time() != old.started:
                continue  # the pid was reused: not our process
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        cpu = times.user + times.system
        fresh.append(
            _Sample(old.pid, old.name, old.started, cpu, time.monotonic(), old.threads, old.fds)
        )
    return fresh


class ProcessProber:
    """Runs process probes, remembering each process's last CPU reading between runs."""

    def __init__(self) -> None:
        self._readings: dict[tuple[int, float], tuple[float, float]] = {}

    def _remember(self, samples: list[_Sample]) -> None:
        now = time.monotonic()
        for key in [k for k, (_, at) in self._readings.items() if now - at > FORGET_AFTER]:
            del self._readings[key]
        for sample in samples:
            self._readings[(sample.pid, sample.started)] = (sample.cpu, sample.at)

    async def _cpu_percents(self, samples: list[_Sample], window: float) -> dict[int, float] | None:
        """CPU% of the whole host for each pid, measured over at least `window` seconds;
        None when every process exited meanwhile."""
        bases = {s.pid: self._readings.get((s.pid, s.started), (s.cpu, s.at)) for s in samples}
        now = time.monotonic()
        wait = max(window - (now - at) for _, at in bases.values())
        if wait > 0:
            await asyncio.sleep(wait)
            samples = await in_thread(_reread, samples)
            if not samples:
                return None
        self._remember(samples)
        cores = psutil.cpu_count() or 1
        return {
            s.pid: max(0.0, s.cpu - bases[s.pid][0]) / (s.at - bases[s.pid][1]) / cores * 100
            for s in samples
            if s.at > bases[s.pid][1]
        }

    async def run(
        self,
        spec: ProcessProbe,
        context: ProbeContext,
        timeout: float,  # noqa: ASYNC109 - the probe spends it itself
    ) -> CheckResult:
        """Find the process(es) and compare them with the limits; CRITICAL when none runs."""
        started = time.monotonic()
        try:
            samples, what = await in_thread(_look, spec, context)
        except _Outcome as outcome:
            return finish(outcome.status, outcome.message, started)
        except psutil.AccessDenied as exc:
            return finish(Status.UNKNOWN, f"not allowed to read process {exc.pid}", started)
        problems: list[str] = []
        cpu: dict[int, float] = {}
        if spec.max_cpu is not None:
            measured = await self._cpu_percents(samples, min(MIN_WINDOW, timeout / 2))
            if measured is None:
                return finish(
                    Status.CRITICAL, f"{what}: exited while its CPU was measured", started
                )
            cpu = measured
        for sample in samples:
            label = f"{sample.pid} ({sample.name})"
            if spec.max_cpu is not None and sample.pid in cpu and cpu[sample.pid] > spec.max_cpu:
                problems.append(f"{label} uses {cpu[sample.pid]:.1f}% CPU > {spec.max_cpu:g}%")
            if spec.max_threads is not None and sample.threads > spec.max_threads:
                problems.append(f"{label} has {sample.threads} threads > {spec.max_threads}")
            if spec.max_fds is not None and sample.fds is not None and sample.fds > spec.max_fds:
                problems.append(f"{label} has {sample.fds} open fds > {spec.max_fds}")
        figures_of = _measures(spec, samples, cpu)
        if problems:
            return finish(Status.CRITICAL, "; ".join(problems), started, figures_of)
        if len(samples) == 1:
            first = samples[0]
            figures = [f"{first.threads} threads"]
            if first.fds is not None:
                figures.append(f"{first.fds} fds")
            if first.pid in cpu:
                figures.append(f"{cpu[first.pid]:.1f}% CPU")
            head = what if spec.main_pid else f"{what} (pid {first.pid})"
            return finish(Status.OK, f"{head} running, {', '.join(figures)}", started, figures_of)
        pids = ", ".join(str(s.pid) for s in samples[:5]) + (", ..." if len(samples) > 5 else "")
        return finish(
            Status.OK, f"{len(samples)} processes running ({what}): {pids}", started, figures_of
        )


def _measures(
    spec: ProcessProbe, samples: list[_Sample], cpu: dict[int, float]
) -> tuple[Measure, ...]:
    """The count, and the most threads, fds and CPU of any one process (the limits are
    per process)."""
    measured = [Measure("count", float(len(samples)), low=0.0)]
    threads = max(s.threads for s in samples)
    measured.append(Measure("threads", float(threads), "", _limit(spec.max_threads), low=0.0))
    fds = [s.fds for s in samples if s.fds is not None]
    if fds:
        measured.append(Measure("fds", float(max(fds)), "", _limit(spec.max_fds), low=0.0))
    if cpu:
        measured.append(
            Measure("cpu", round(max(cpu.values()), 1), "%", spec.max_cpu, low=0.0, high=100.0)
        )
    return tuple(measured)


def _limit(value: int | None) -> float | None:
    return None if value is None else float(value)
