"""How likely a set of matches is to be chance: Poisson tails with the offsets searched as trials.

A fit is trusted only if the matches it rests on are unlikely to have arisen between unrelated
point lists. With ``mean`` chance matches expected at one offset (sources x reference density x
the matching disc), the count of chance matches there is Poisson; a search that tried
``trials`` independent offsets (the search disc over the matching disc) finds ``n`` or more
somewhere with probability ``1 - (1 - P(X >= n))**trials`` (at most ``trials * P``).

The same rule serves every list size: in a sparse field (5 reference stars, 1,000 detections
on a 38' chip, 0.003 chance matches expected) 3 coincident matches are overwhelming evidence;
in a crowded one (tens of chance pairs per source within the tolerance) it asks for the excess
a Gaussian 5-sigma rule would. A fixed count floor (such as ``mean + 5 sqrt(mean + 1)``, which
asks for 5 matches even where chance gives none) rejects good sparse fits instead.
"""
from __future__ import annotations

import math

from scipy.special import pdtrc

from .errors import ParameterError

#: Default largest accepted probability that a fit's matches arise by chance (``max_chance``).
DEFAULT_MAX_CHANCE = 1e-4


def tail(n: int, mean: float) -> float:
    """P(X >= n) for X ~ Poisson(``mean``) (1 for n <= 0, 0 for mean <= 0 and n > 0)."""
    if n <= 0:
        return 1.0
    if not mean > 0:
        return 0.0
    return float(pdtrc(n - 1, mean))  # the upper tail, accurate far below 1e-300


def chance_probability(n: int, mean: float, trials: float = 1.0) -> float:
    """Probability of ``n`` or more chance matches at one of ``trials`` independent offsets,
    with ``mean`` expected at each."""
    p = tail(n, mean)
    if p >= 1.0:
        return 1.0
    return float(-math.expm1(max(trials, 1.0) * math.log1p(-p)))


def needed(mean: float, trials: float = 1.0, max_chance: float = DEFAULT_MAX_CHANCE) -> int:
    """Fewest matches whose chance probability is at most ``max_chance`` (for messages)."""
    n = max(int(mean), 1)
    while chance_probability(n, mean, trials) > max_chance and n < 10_000_000:
        # Steps of about a tenth of a sigma beyond the mean: a few dozen steps at any mean.
        n += max(1, int(0.1 * math.sqrt(mean + 1.0)))
    return n


def trials_within(search_radius: float, radius: float) -> float:
    """Independent offsets of precision ``radius`` in a search disc of ``search_radius``."""
    if not radius > 0:
        return 1.0
    return max(1.0, (search_radius / radius) ** 2)


def check_max_chance(value) -> None:
    """Raise :class:`~aligner.errors.ParameterError` unless 0 < ``value`` <= 1."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 < float(value) <= 1.0
    if not ok:
        raise ParameterError(f"max_chance must be a probability in (0, 1], got {value!r}")
