"""The words of failure statuses: the numbers behind a chance judgement and where an offset came from.

Each names only the parameters that were in play, so that a failed image's ``fit_info['status']``
says what to change.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .significance import needed


def odds(n: int, expected: float, trials: float, p: float, max_chance: float) -> str:
    """The numbers behind a chance judgement of ``n`` matches (``expected`` by chance at each of
    ``trials`` offsets, chance probability ``p``)."""
    at = f" at each of ~{trials:.3g} offsets searched" if trials > 1.5 else ""
    return (f"chance gives {expected:.2g}{at}, so {needed(expected, trials, max_chance)} or more are needed "
            f"(the chance probability of {n} is {p:.2g}, above max_chance {max_chance:g})")


def peak(off, prefix: str) -> str:
    """What was wrong with an offset search's best peak (``off``, a :func:`.match.find_offset`
    result); ``prefix`` is the step's parameter prefix ('' or 'abs_') in the advice."""
    what = f"best peak {off.peak} pairs, {off.background:.2g} expected by chance, chance probability {off.chance:.2g}"
    if off.peak and not off.settled:
        return f"{what}, but its pairs do not gather within {prefix}tolerance of one offset"
    return f"{what}; a larger {prefix}searchrad searches farther"


def relative_origin(off, searchrad: float, guess: Sequence[float]) -> str:
    """Where a relative group's matching offset came from: the 2D histogram's ``off`` (None
    without the histogram) or the ``guess`` (xoffset, yoffset)."""
    if off is None:
        return (f"at the offset ({guess[0]:g}\", {guess[1]:g}\") given, without the 2D histogram "
                f"(use2dhist=False: set it to search up to searchrad {searchrad:g}\" for the offset)")
    if off.significant:
        return f"at the 2D histogram's offset ({off.dx:.3f}\", {off.dy:.3f}\")"
    return (f"at the offset ({guess[0]:g}\", {guess[1]:g}\"), as the 2D histogram found no convincing one within "
            f"searchrad {searchrad:g}\" ({peak(off, '')})")


def absolute_origin(search, offset: np.ndarray, use2dhist: bool, common: bool, searchrad: float) -> str:
    """Where an absolute group's matching offset came from: its own search ``search``, the
    ``common`` offset of all the images, or the images' current WCS."""
    if not use2dhist:
        return ("at the images' current WCS (abs_use2dhist=False: set it to search up to abs_searchrad "
                f"{searchrad:g}\" for the offset)")
    at = f"({offset[0]:.3f}\", {offset[1]:.3f}\")"
    if search is not None and search.significant:
        return f"at its 2D histogram's offset {at}"
    if common:
        return f"at the common offset {at} of all the images (the 2D histogram found no convincing own one)"
    if search is None:
        return "at the images' current WCS"
    return (f"at the images' current WCS, as the 2D histogram found no convincing offset within abs_searchrad "
            f"{searchrad:g}\" ({peak(search, 'abs_')})")
