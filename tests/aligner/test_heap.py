"""aligner.runtime.heap: collections skip the objects older than the run, and the freeze is undone."""
from __future__ import annotations

import gc
import threading

from aligner.runtime.heap import collect_new_objects_only


# Counts are compared within a band: a frozen object freed meanwhile (by a thread an earlier test
# left running) lowers the count, while a wrong freeze raises it by the _NEW objects a test makes
# first and a wrong unfreeze drops it to 0.
_NEW = 10_000


def test_objects_are_frozen_during_the_block_and_unfrozen_after():
    assert gc.get_freeze_count() == 0
    with collect_new_objects_only():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        made = [[i] for i in range(_NEW)]         # tracked objects, unfrozen
        with collect_new_objects_only():          # nested: the same freeze, not a new one
            assert frozen - _NEW < gc.get_freeze_count() <= frozen
        assert frozen - _NEW < gc.get_freeze_count() <= frozen  # still frozen after the nested block
        del made
    assert gc.get_freeze_count() == 0


def test_a_freeze_of_the_process_is_left_alone():
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        made = [[i] for i in range(_NEW)]
        with collect_new_objects_only():
            pass
        assert before - _NEW < gc.get_freeze_count() <= before   # neither unfrozen nor frozen again
        del made
    finally:
        gc.unfreeze()


def test_concurrent_blocks_unfreeze_when_the_last_ends():
    entered, release = threading.Event(), threading.Event()

    def other():
        with collect_new_objects_only():
            entered.set()
            release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    entered.wait(10)
    with collect_new_objects_only():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() > 0              # the other block still runs
    release.set()
    t.join()
    assert gc.get_freeze_count() == 0


def test_the_aligner_runs_with_the_older_objects_frozen_and_leaves_nothing_frozen(monkeypatch):
    import aligner
    from tests.support.aligner_synth import make_correctors, make_scene

    during = []
    for module in _steps():
        real = module.joint_fit

        def spy(*args, _real=real, **kwargs):
            during.append(gc.get_freeze_count())
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, "joint_fit", spy)
    scene = make_scene(2, 300, "fits", seed=2)
    aligner.relative_align(make_correctors(scene))
    aligner.absolute_align(make_correctors(scene), scene.refcat)
    assert during and all(n > 0 for n in during)
    assert gc.get_freeze_count() == 0


def _steps() -> list:
    """The modules of the steps that call the joint fit."""
    import aligner.absolute
    import aligner.checks
    import aligner.placement
    import aligner.relative

    return [aligner.relative, aligner.absolute, aligner.placement, aligner.checks]
