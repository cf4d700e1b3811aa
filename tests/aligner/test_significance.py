"""Chance probabilities of matches: Poisson tails with the offsets searched as trials."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from aligner import ParameterError
from aligner.significance import chance_probability, check_max_chance, needed, tail, trials_within


@pytest.mark.parametrize("mean", [1e-6, 0.003, 0.5, 7.0, 300.0, 1e5])
def test_tail_is_the_poisson_upper_tail(mean):
    for n in (1, 2, 3, 5, int(mean) + 1, int(mean + 5 * math.sqrt(mean)) + 1):
        assert tail(n, mean) == pytest.approx(stats.poisson.sf(n - 1, mean), rel=1e-9, abs=1e-300)
    assert tail(0, mean) == 1.0 and tail(-3, mean) == 1.0


def test_tail_without_chance_matches():
    assert tail(1, 0.0) == 0.0 and tail(0, 0.0) == 1.0


def test_trials_raise_the_probability_as_independent_tries_would():
    p1 = chance_probability(3, 0.01)
    assert p1 == pytest.approx(tail(3, 0.01))
    p73 = chance_probability(3, 0.01, 73)
    assert p73 == pytest.approx(1 - (1 - p1) ** 73, rel=1e-9) and p1 < p73 < 73 * p1
    assert chance_probability(3, 0.01, 0.2) == p1   # fewer than one trial counts as one
    assert chance_probability(0, 5.0, 10) == 1.0


def test_sparse_matches_are_convincing_and_crowded_ones_need_an_excess():
    # 1,000 detections, 5 stars on a 38' chip, 1" tolerance: 0.003 chance matches expected.
    expected = 1000 * 5 * math.pi / (38 * 60) ** 2
    assert chance_probability(5, expected, trials_within(6.0, 1.0)) < 1e-10
    assert chance_probability(3, expected, trials_within(6.0, 1.0)) < 1e-4
    # 400 chance pairs expected: 430 is 1.5 sigma, not convincing; 500 (5 sigma) is.
    assert chance_probability(430, 400.0, 1) > 0.01
    assert chance_probability(500, 400.0, 1) < 1e-4


def test_needed_is_the_fewest_convincing_count():
    for mean, trials in ((0.003, 1), (0.003, 73), (2.0, 1), (50.0, 300), (1e4, 10)):
        n = needed(mean, trials, 1e-4)
        assert chance_probability(n, mean, trials) <= 1e-4
        assert chance_probability(max(n - 1 - int(0.1 * math.sqrt(mean + 1)), 0), mean, trials) > 1e-4


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), "0.01", True, None])
def test_max_chance_must_be_a_probability(bad):
    with pytest.raises(ParameterError, match="max_chance"):
        check_max_chance(bad)
    check_max_chance(1e-4)
    check_max_chance(1)


def test_trials_within():
    assert trials_within(6.0, 0.7) == pytest.approx((6 / 0.7) ** 2)
    assert trials_within(0.5, 0.7) == 1.0 and trials_within(6.0, 0.0) == 1.0
    assert np.isfinite(trials_within(6.0, 1e-9))
