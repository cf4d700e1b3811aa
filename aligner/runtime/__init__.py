"""How an alignment run uses the process: threads, BLAS threads and garbage collection.

Nothing here changes a result; it changes how fast a run is. Two of these are process-wide
while :func:`aligner.relative_align` or :func:`aligner.absolute_align` runs (both undone when
the last concurrent run ends, and documented in those functions' Notes):

- :func:`~aligner.runtime.threads.single_threaded_blas`: the BLAS libraries numpy and scipy
  call use one thread each (threadpoolctl), in every thread of the process;
- :func:`~aligner.runtime.heap.collect_new_objects_only`: ``gc.freeze()``, so that full garbage
  collections skip the objects that existed before the run (left alone where the process froze
  objects of its own).

``ALIGNER_THREADS`` sets the threads of the per-image and per-group work (1: the caller's thread).
"""
from __future__ import annotations

from .heap import collect_new_objects_only
from .threads import THREADS, in_background, single_threaded_blas, thread_map

__all__ = ["THREADS", "collect_new_objects_only", "in_background", "single_threaded_blas", "thread_map"]
