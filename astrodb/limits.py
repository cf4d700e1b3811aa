"""What values a catalog and a query may hold: one rule for ingest, Python queries, CLI and HTTP.

- Epochs (Julian years) between 1000 and 3000: refuses typos such as 20300 or 2.03 and values no
  star catalog has, while admitting every historical catalog and any planned observation.
- Right ascensions in [-360, 720] deg are wrapped into [0, 360); farther ones are not angles in
  degrees (a column in radians or arcsec, or garbage such as 1e308).
- Proper motions up to 100"/yr per axis (ten times Barnard's star, the fastest known) and
  parallaxes up to 2" (four times Proxima Centauri's): larger ones are errors.
- Catalog names: 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit (they
  appear in URLs, SQL calls, file names and one-line messages).
"""
from __future__ import annotations

import math
import re

import numpy as np

#: Accepted epochs (Julian years), inclusive.
EPOCH_RANGE = (1000.0, 3000.0)
#: Accepted right ascensions before wrapping into [0, 360), deg.
RA_RANGE = (-360.0, 720.0)
#: Largest accepted |proper motion| per axis, mas/yr.
MAX_PM = 100_000.0
#: Largest accepted parallax, mas.
MAX_PARALLAX = 2_000.0
#: Catalog names.
CATALOG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def catalog_name_problem(name) -> str | None:
    """Why ``name`` cannot name a catalog (None if it can); the text quotes at most 40 characters."""
    if not isinstance(name, str):
        return f"a catalog name must be a string, got {type(name).__name__}"
    if CATALOG_NAME.fullmatch(name) is None:
        shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
        return (f"{shown} is not a catalog name: 1-64 letters, digits, '_', '-' or '.', starting with a letter "
                "or digit")
    return None


def epoch_problem(value: float) -> str | None:
    """Why the Julian year ``value`` is no epoch (None if it is one)."""
    if not math.isfinite(value):
        return f"must be finite, got {value!r}"
    lo, hi = EPOCH_RANGE
    if not lo <= value <= hi:
        return f"must be a Julian year between {lo:g} and {hi:g}, got {value:g}"
    return None


def bad_epochs(values: np.ndarray) -> np.ndarray:
    """Mask of the epochs (Julian years) outside :data:`EPOCH_RANGE` or not finite."""
    v = np.asarray(values, float)
    with np.errstate(invalid="ignore"):
        return ~((v >= EPOCH_RANGE[0]) & (v <= EPOCH_RANGE[1]))


def bad_ra(values: np.ndarray) -> np.ndarray:
    """Mask of the right ascensions (deg) that are not finite or lie outside :data:`RA_RANGE`."""
    v = np.asarray(values, float)
    with np.errstate(invalid="ignore"):
        return ~((v >= RA_RANGE[0]) & (v <= RA_RANGE[1]))


def wrap_ra(values: np.ndarray) -> np.ndarray:
    """Right ascensions (deg) wrapped into [0, 360)."""
    out = np.mod(np.asarray(values, float), 360.0)
    out[out >= 360.0] = 0.0  # the mod of a tiny negative number rounds to 360
    return out
