"""Independent per-image / per-group work on every core.

The work mapped here is mostly KD-tree builds and queries, histograms and array arithmetic on
thousands of points, which release the GIL, so threads share it out over the cores. Each task
is deterministic on its own (seeded by its group), and results come back in the order of the
inputs, so a run gives the same answer with one thread or many.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _threads_from_environment() -> int:
    value = os.environ.get("ALIGNER_THREADS", "").strip()
    if not value:
        return min(os.cpu_count() or 1, 4)
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"ALIGNER_THREADS must be a positive integer (1: no threads), got {value!r}")
    return n


#: Threads for per-group work; ``ALIGNER_THREADS`` overrides (1: everything in the caller's thread).
THREADS = _threads_from_environment()


def thread_map(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, computed on up to ``threads`` (default :data:`THREADS`) threads."""
    items = list(items)
    n = min(THREADS if threads is None else threads, len(items))
    if n <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="aligner") as pool:
        return list(pool.map(fn, items))


def in_background(fn: Callable[[], R]) -> Future:
    """Start ``fn()`` on its own thread (e.g. a database query while the images are prepared);
    ``.result()`` returns its value or raises its exception."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aligner-bg")
    try:
        return pool.submit(fn)
    finally:
        pool.shutdown(wait=False)


_blas_lock = threading.Lock()
_blas_depth = 0
_blas_limiter = None
_blas_controller = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within this block, the BLAS libraries numpy and scipy call (OpenBLAS, MKL, BLIS) use one
    thread each; on exit they get their previous thread counts back.

    The aligner's parallel work is its own threads (:func:`thread_map`, the background query);
    its BLAS calls are small (the joint fit's normal equations: 96 x 96 at 32 images), and BLAS
    threads on top of them contend for the same cores, whose waiting threads then stall the
    caller (BENCHMARKS.md, "Aligner"). The limit is process-wide: BLAS calls of the caller's
    other threads run on one thread too while a block is open. Nested and concurrent blocks
    share one limit, lifted when the last one ends (the thread counts are per process, not per
    thread).
    """
    global _blas_depth, _blas_limiter, _blas_controller
    with _blas_lock:
        if _blas_depth == 0:
            from threadpoolctl import ThreadpoolController

            if _blas_controller is None:  # built once: it lists the loaded libraries (numpy's, scipy's)
                _blas_controller = ThreadpoolController()
            _blas_limiter = _blas_controller.limit(limits=1, user_api="blas")
        _blas_depth += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
