"""aligner.threads: maps keep the input order and raise the task's error; background tasks too."""
from __future__ import annotations

import threading
import time

import pytest

from aligner.threads import in_background, thread_map


def test_thread_map_keeps_order_and_uses_threads():
    names = set()

    def slow_square(x):
        names.add(threading.current_thread().name)
        time.sleep(0.01 * (5 - x))     # finish out of order
        return x * x

    assert thread_map(slow_square, range(5), threads=3) == [0, 1, 4, 9, 16]
    assert all(n.startswith("aligner") for n in names)
    assert thread_map(slow_square, [], threads=3) == []
    assert thread_map(lambda x: threading.current_thread().name, [1], threads=1) == [threading.current_thread().name]


def test_thread_map_raises_the_tasks_error():
    def boom(x):
        if x == 2:
            raise ValueError("row 2 is bad")
        return x

    with pytest.raises(ValueError, match="row 2"):
        thread_map(boom, range(4), threads=2)


def test_in_background_returns_or_raises():
    assert in_background(lambda: 42).result(5) == 42
    with pytest.raises(KeyError):
        in_background(lambda: {}["missing"]).result(5)
