"""The former place of :mod:`aligner.runtime.threads`, for the modules that still import it here."""
from __future__ import annotations

from .runtime.threads import THREADS, in_background, single_threaded_blas, thread_map

__all__ = ["THREADS", "in_background", "single_threaded_blas", "thread_map"]
