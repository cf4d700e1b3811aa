"""Garbage collection during an alignment run.

A process that has imported astropy, gwcs and asdf tracks some 300k container objects; every
full (oldest-generation) collection walks them all, and the model and ASDF trees an absolute
gwcs run builds trigger several. Freezing the objects that exist when the run starts
(``gc.freeze``, Python's own tool for this) leaves the collections to the run's new objects.
They are unfrozen, in the oldest generation again, when the run ends.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0


@contextlib.contextmanager
def collect_new_objects_only() -> Iterator[None]:
    """Within this block, garbage collections skip the objects that existed before it.

    Process-wide: collections in the caller's other threads skip those objects too while a
    block is open, so garbage among them waits for a collection after the block. Left alone if
    the process already froze objects of its own (e.g. a pre-fork server: its frozen heap must
    stay frozen). Nested and concurrent blocks share one freeze, lifted when the last one ends.
    """
    global _depth
    with _lock:
        mine = _depth > 0 or gc.get_freeze_count() == 0
        if mine:
            if _depth == 0:
                gc.freeze()
            _depth += 1
    try:
        yield
    finally:
        if mine:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    gc.unfreeze()
