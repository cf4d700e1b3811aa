"""Where and for how long a request's work runs: two lanes per worker process, one deadline per request.

Small queries (a region's bounding radius up to ``heavy_radius``) share the worker's query
threads. Larger ones go to a process of their own at a lower CPU priority (nice +10), with at
most ``heavy_queue`` of them held per worker process: a client repeating the largest request the
limits admit then takes what the small queries leave of the CPU, instead of the threads and the
GIL they need. Measured in-process on 3.2 M rows, 6′ cones one after another while 1° ECSV cones
(138 k rows) repeat: 93 % of their rate kept beside a nice-10 process, 53 % beside a nice-10
thread of the same process (its GIL), p99 4.5 against 6.2 ms.

Every request's work — waiting for its lane, the query, the rows' rendering — ends by its
deadline (``request_timeout`` seconds after it was admitted): a query still running is stopped
(PostgreSQL: the ``statement_timeout``; SQLite: a progress handler that reads the deadline of
the thread's request), rendering stops between chunks, and the client gets 503 naming the limit.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from .cells import DeadlineExceeded
from .errors import Busy, TooSlow, Unavailable

log = logging.getLogger("astrodb.service")

_request = threading.local()

#: CPU priority (nice) of the heavy lane's process.
HEAVY_NICE = 10

_service = None        # in the heavy lane's process: its own read-only Service


def deadline() -> float | None:
    """The ``time.monotonic()`` deadline of the request this thread works for (None: none)."""
    return getattr(_request, "deadline", None)


def expired() -> bool:
    """Whether this thread's request is past its deadline (the SQLite progress handler's test)."""
    d = getattr(_request, "deadline", None)
    return d is not None and time.monotonic() > d


def bounded(fn: Callable[..., Any], limit: float, until: float, *args) -> Any:
    """``fn(*args)`` in this thread on behalf of a request due by ``until``; its lateness as :class:`TooSlow`.

    Parameters
    ----------
    fn : callable
        The request's work.
    limit : float
        The service's time limit, s (for the message).
    until : float
        ``time.monotonic()`` deadline.
    *args
        Passed to ``fn``.
    """
    if time.monotonic() > until:
        raise TooSlow(limit, "waiting for its turn")
    _request.deadline = until
    try:
        return fn(*args)
    except DeadlineExceeded:
        raise TooSlow(limit, "rendering the rows") from None
    finally:
        _request.deadline = None


def _start(settings, open_service: Callable) -> None:
    """The heavy lane's process: lower its priority, open its own service, end with its worker."""
    global _service
    try:
        os.nice(HEAVY_NICE)
    except OSError as exc:      # pragma: no cover - a sandbox may forbid it; the lane still works
        log.warning("cannot lower the heavy lane's CPU priority: %s", exc)
    threading.Thread(target=_exit_with, args=(os.getppid(),), name="astrodb-heavy-watch", daemon=True).start()
    _service = open_service(settings)


def _exit_with(parent: int) -> None:
    # A worker that is stopped or killed does not take its process pool's process with it.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _run_here(fn: Callable[..., Any], limit: float, until: float, *args) -> Any:
    return bounded(fn, limit, until, _service, *args)


class HeavyLane:
    """A low-priority process for the large queries of a worker process, and the few that wait for it.

    The process starts with the first large request and opens its own service
    (``open_service(settings)``: a read-only store); it runs ``fn(service, *args)`` with it, so
    ``fn`` and its arguments must be picklable (module-level functions, plain values, regions).

    Parameters
    ----------
    settings : Settings
        The service's settings (the process opens the store with them).
    open_service : callable
        ``open_service(settings)`` gives the process its service; picklable (e.g. ``Service.open``).
    """

    def __init__(self, settings, open_service: Callable) -> None:
        self.settings = settings
        self.open_service = open_service
        self.queue = settings.heavy_queue
        self.held = 0
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, fn: Callable[..., Any], limit: float, until: float, *args) -> Any:
        """``fn(service, *args)`` in the lane's process, once the requests before it are done,
        within ``limit`` s (due by ``until``, a ``time.monotonic()`` value)."""
        if self.held >= self.queue:
            raise Busy(self.queue)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start, initargs=(self.settings, self.open_service))
        self.held += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, functools.partial(_run_here, fn, limit, until, *args))
        except BrokenProcessPool:
            log.warning("the heavy lane's process died; a new one starts with the next large request")
            self._pool = None
            raise Unavailable("the service's worker for large requests stopped; retry") from None
        finally:
            self.held -= 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
