"""Matching in the tangent plane: isolation, 2D-histogram offsets without half-bin bias, one-to-one pairs."""
from __future__ import annotations

import numpy as np
import pytest

from aligner.match import find_offset, match_pairs, sweep, thin


def _field(n=3000, size=200.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-size / 2, size / 2, (n, 2)), rng


def test_thin_drops_ambiguous_sources_and_sweeps_in_crowded_lists():
    xy = np.array([[0.0, 0.2], [0.5, 0.0], [5.0, 5.0], [10.0, 10.9], [10.0, 10.0], [10.5, 11.6],
                   [20.0, 20.0], [30.0, 30.0], [40.0, 40.0], [50.0, 50.0]])
    assert thin(xy, 1.0).tolist() == [False, False, True, False, False, False, True, True, True, True]
    # Sweep: (10, 10.9) goes with the kept (10, 10); (10.5, 11.6) is 1.7 from it: kept, though
    # 0.86 from the dropped one.
    assert sweep(xy[:6], 1.0).tolist() == [False, True, True, False, True, True]
    assert thin(xy[:6], 1.0).tolist() == sweep(xy[:6], 1.0).tolist()  # 1 of 6 isolated: crowded
    assert thin(xy, 0.0).all() and thin(xy[:1], 1.0).all()


def test_thin_equals_the_sequential_sweep_on_a_dense_field():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 20, (1500, 2))
    keep = np.zeros(len(xy), bool)
    for i in np.lexsort((np.arange(len(xy)), xy[:, 1])):  # the sweep, one point at a time
        keep[i] = not np.any(keep & (np.hypot(*(xy - xy[i]).T) <= 1.0))
    assert np.array_equal(sweep(xy, 1.0), keep) and 200 < keep.sum() < 400


@pytest.mark.parametrize("true", [(0.0, 0.0), (0.1234, -0.3456), (0.175, 0.175), (1.3, -1.7), (4.9, 1.2)])
def test_offset_recovered_without_half_bin_bias(true):
    ref, rng = _field()
    src = ref[rng.permutation(len(ref))[:2000]] - np.array(true) + rng.normal(0, 0.002, (2000, 2))
    src = np.concatenate([src, rng.uniform(-100, 100, (200, 2))])  # 10% spurious
    off = find_offset(src, ref, searchrad=6.0, tolerance=0.7)
    assert off.significant and off.peak > 1000
    # A half bin would be 0.175"; the estimate is the mean of the pair offsets: a few mas.
    assert abs(off.dx - true[0]) < 0.01 and abs(off.dy - true[1]) < 0.01


def test_offset_starts_from_the_peak_bin_not_a_neighbouring_box():
    # A second, weaker offset 2 bins (0.7", 0.7") from the true one: the 3x3 box between them
    # holds both and outscores the box centred on the true peak. The result must still be the
    # true offset (it was 0.37" off, from that box's centre; seen at 32 images x 10k sources).
    rng = np.random.default_rng(0)
    ref = rng.uniform(-100, 100, (4000, 2))
    true = np.array([0.02, -0.31])
    src = np.concatenate([ref[:2500] - true, ref[2500:3700] - true - 0.7]) + rng.normal(0, 0.002, (3700, 2))
    off = find_offset(src, ref, 1.4, 0.7)
    assert off.significant
    assert abs(off.dx - true[0]) < 0.005 and abs(off.dy - true[1]) < 0.005


def test_offset_with_a_guess_and_beyond_the_search_radius():
    ref, rng = _field()
    src = ref - np.array([5.0, -3.0]) + rng.normal(0, 0.002, ref.shape)
    assert find_offset(src, ref, 2.0, 0.5, guess=(5.0, -3.0)).significant
    far = find_offset(src, ref, 2.0, 0.5)
    assert not far.significant  # the true offset is 5.8" away: reported, not invented
    assert not find_offset(src[:0], ref, 2.0, 0.5).significant


def test_offset_subsamples_many_sources_and_stays_accurate():
    ref, rng = _field(n=60000, size=300.0, seed=2)
    src = ref - np.array([0.4, 0.3]) + rng.normal(0, 0.002, ref.shape)
    off = find_offset(src, ref, 6.0, 0.7)
    assert off.significant and abs(off.dx - 0.4) < 0.01 and abs(off.dy - 0.3) < 0.01


def test_match_pairs_is_mutual_and_one_to_one():
    ref = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    src = np.array([[0.1, 0.0], [0.2, 0.0], [10.0, 0.65], [30.0, 0.0]])
    i, j = match_pairs(src, ref, 0.7)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 0), (2, 1)]
    assert len(match_pairs(src, ref[:0], 0.7)[0]) == 0


def test_bounds_is_the_columnwise_min_and_max():
    from aligner.match import bounds

    xy = np.random.default_rng(2).normal(size=(1000, 2)) * [3.0, 50.0] - [10.0, 0.0]
    lo, hi = bounds(xy)
    np.testing.assert_array_equal(lo, xy.min(axis=0))
    np.testing.assert_array_equal(hi, xy.max(axis=0))
    lo, hi = bounds(np.array([[1.5, -2.0]]))
    assert lo.tolist() == hi.tolist() == [1.5, -2.0]


def test_find_offset_with_a_tree_of_the_whole_reference_finds_the_same_offset():
    from scipy.spatial import cKDTree

    from aligner.match import find_offset

    rng = np.random.default_rng(4)
    ref = rng.uniform(-600, 600, (40_000, 2))                  # a mosaic's reference
    src = ref[(np.abs(ref[:, 0] - 200) < 50) & (np.abs(ref[:, 1]) < 50)]   # one small image
    src = src - [0.8, -0.35] + rng.normal(0, 0.002, src.shape)
    src = np.concatenate([src, rng.uniform(150, 250, (len(src) // 10, 2))])
    tree = cKDTree(ref)
    for radius, guess in ((6.0, (0.0, 0.0)), (1.4, (0.5, 0.0))):
        a = find_offset(src, ref, radius, 0.7, guess)
        b = find_offset(src, ref, radius, 0.7, guess, ref_tree=tree)
        assert a.significant and b.significant and a.peak == b.peak
        assert abs(a.dx - b.dx) < 1e-9 and abs(a.dy - b.dy) < 1e-9
        assert abs(b.dx - 0.8) < 0.01 and abs(b.dy + 0.35) < 0.01


def test_kdtree_finds_what_a_balanced_tree_finds():
    from scipy.spatial import cKDTree

    from aligner.match import kdtree

    rng = np.random.default_rng(9)
    xy = np.concatenate([rng.uniform(0, 100, (3000, 2)), rng.normal(50, 0.5, (500, 2))])  # with a cluster
    a = kdtree(xy).query_pairs(1.0, output_type="ndarray")
    b = cKDTree(xy).query_pairs(1.0, output_type="ndarray")
    assert sorted(map(tuple, a)) == sorted(map(tuple, b))
    q = rng.uniform(0, 100, (400, 2))
    np.testing.assert_array_equal(kdtree(xy).query(q, k=1)[1], cKDTree(xy).query(q, k=1)[1])


def test_a_sparse_peak_wider_than_a_quarter_of_the_tolerance_is_found():
    # Four bright stars whose centroids scatter by ~0.3" (saturated, on 0.56" pixels) among 800
    # detections on a 38' chip: the refinement stops widening down, but the offset stands.
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 2300, (800, 2))
    stars = src[:4] + np.array([1.2, -0.8]) + rng.normal(0, 0.25, (4, 2))
    off = find_offset(src, stars, 6.0, 0.7)
    assert off.significant and off.settled and off.peak == 4 and off.chance < 1e-8
    assert np.hypot(off.dx - 1.2, off.dy + 0.8) < 0.3
    # Where the same four pairs sit among many chance pairs, a peak that does not sharpen is not
    # trusted (crowded fields: clusters of chance pairs).
    dense = np.concatenate([stars, rng.uniform(0, 2300, (60000, 2))])
    busy = find_offset(src, dense, 6.0, 0.7)
    assert not busy.significant
