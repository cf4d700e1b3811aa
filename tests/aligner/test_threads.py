"""aligner.runtime.threads: maps keep the input order and raise the task's error; background tasks too;
BLAS runs on one thread inside an alignment."""
from __future__ import annotations

import threading
import time

import pytest

from aligner.runtime.threads import in_background, thread_map


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


def test_alignment_is_the_same_on_one_thread_and_many(monkeypatch):
    """Per-group tasks are seeded by their group: the fits do not depend on the thread count."""
    import numpy as np

    import aligner
    import aligner.runtime.threads
    from tests.support.aligner_synth import make_correctors, make_scene, reference_at_epoch

    scene = make_scene(6, 1500, "fits", seed=11)
    ref = reference_at_epoch(scene)
    out = {}
    for n in (1, 3):
        monkeypatch.setattr(aligner.runtime.threads, "THREADS", n)
        rel = aligner.relative_align(make_correctors(scene))
        ab = aligner.absolute_align(make_correctors(scene), ref)
        out[n] = [(c.meta["fit_result"].status, c.meta["fit_result"].matrix, c.meta["fit_result"].shift,
                   c.meta["fit_result"].nmatches) for c in rel + ab]
    for a, b in zip(out[1], out[3]):
        assert a[0] == b[0] and a[3] == b[3]
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])


def test_aligner_threads_environment(monkeypatch):
    from aligner.runtime.threads import _threads_from_environment

    monkeypatch.setenv("ALIGNER_THREADS", "3")
    assert _threads_from_environment() == 3
    monkeypatch.delenv("ALIGNER_THREADS")
    assert 1 <= _threads_from_environment() <= 4
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv("ALIGNER_THREADS", bad)
        with pytest.raises(ValueError, match="ALIGNER_THREADS must be a positive integer"):
            _threads_from_environment()


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def _nested_in_thread() -> list[int]:
    from aligner.runtime.threads import single_threaded_blas

    with single_threaded_blas():
        return _blas_threads()


def test_single_threaded_blas_limits_every_blas_and_restores_them():
    import numpy as np  # noqa: F401 - loads numpy's BLAS
    from threadpoolctl import threadpool_limits

    from aligner.runtime.threads import single_threaded_blas

    with threadpool_limits(limits=2, user_api="blas"):   # a known state to come back to
        before = _blas_threads()    # 2 each, or fewer where a library is capped by the CPUs
        assert before
        seen = []
        with single_threaded_blas():
            seen.append(_blas_threads())
            # A block in another thread, ending first, shares the limit and does not lift it.
            t = threading.Thread(target=lambda: seen.append(_nested_in_thread()))
            t.start()
            t.join()
            with single_threaded_blas():
                seen.append(_blas_threads())
            seen.append(_blas_threads())
        assert all(n == 1 for s in seen for n in s)
        assert _blas_threads() == before


def test_alignment_runs_with_one_blas_thread(monkeypatch):
    import aligner
    from tests.support.aligner_synth import make_correctors, make_scene, reference_at_epoch

    seen = []
    _spy_on_joint_fit(monkeypatch, lambda: seen.append(_blas_threads()))
    scene = make_scene(3, 800, "fits", seed=5)
    before = _blas_threads()
    aligner.relative_align(make_correctors(scene))
    aligner.absolute_align(make_correctors(scene), reference_at_epoch(scene))
    assert seen and all(n == 1 for s in seen for n in s)
    assert _blas_threads() == before


def _spy_on_joint_fit(monkeypatch, probe) -> None:
    """Call ``probe()`` before every joint fit of the steps."""
    import aligner.absolute
    import aligner.checks
    import aligner.placement
    import aligner.relative

    for module in (aligner.relative, aligner.absolute, aligner.placement, aligner.checks):
        real = module.joint_fit

        def spy(*args, _real=real, **kwargs):
            probe()
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, "joint_fit", spy)
