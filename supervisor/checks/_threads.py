"""Blocking calls of probes, each in a daemon thread of its own.

Why not `asyncio.to_thread`: a `statvfs` of a dead NFS mount, or a read of
/proc/PID/cmdline of a process stuck in the kernel, can block for minutes. In the
loop's default executor such calls would use up its few workers, delaying every other
`to_thread` user, and `asyncio.run` would wait for them at exit. A daemon thread per
call costs tens of microseconds and a hung one only holds itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["in_thread"]

P = ParamSpec("P")
T = TypeVar("T")


def in_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
    """Start `func(*args, **kwargs)` in a daemon thread; its result or exception arrives in
    the returned future. Cancelling the future abandons the call: nothing can stop it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(setter: Callable[[], None]) -> None:
        if not future.done():  # cancelled meanwhile: nobody waits for the outcome
            setter()

    def post(setter: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while the call was blocked
            loop.call_soon_threadsafe(deliver, setter)

    def work() -> None:
        try:
            value = func(*args, **kwargs)
        except Exception as exc:
            post(functools.partial(future.set_exception, exc))
        else:
            post(functools.partial(future.set_result, value))

    name = f"probe-{getattr(func, '__name__', 'call')}"
    threading.Thread(target=work, name=name, daemon=True).start()
    return future
