"""Parsing and checking request parameters; every failure names the parameter (HTTP 400)."""
from __future__ import annotations

import math

from .. import epoch as epochs
from ..limits import EPOCH_RANGE
from .errors import BadParameter


def lower_keys(query_params) -> dict[str, str]:
    """Query parameters with case-insensitive names (IVOA DAL): the last value of each name."""
    return {k.lower(): v for k, v in query_params.multi_items()}


def number(name: str, text: str | None, *, required: bool = True, default: float | None = None) -> float | None:
    """A finite float from ``text``; None/'' gives ``default`` unless ``required``."""
    if text is None or text.strip() == "":
        if required:
            raise BadParameter(name, "missing (a number is required)")
        return default
    try:
        value = float(text)
    except ValueError:
        raise BadParameter(name, f"not a number: {text[:40]!r}") from None
    if not math.isfinite(value):
        raise BadParameter(name, f"must be finite, got {text[:40]!r}")
    return value


def integer(name: str, text: str | None, *, default: int | None = None) -> int | None:
    if text is None or text.strip() == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise BadParameter(name, f"not an integer: {text[:40]!r}") from None


def check_ra(name: str, ra: float, *, wrap: bool = False) -> float:
    if wrap:
        return ra % 360.0
    if not 0.0 <= ra <= 360.0:
        raise BadParameter(name, f"must be within [0, 360] deg, got {ra:g}")
    return ra


def check_dec(name: str, dec: float) -> float:
    if not -90.0 <= dec <= 90.0:
        raise BadParameter(name, f"must be within [-90, 90] deg (|{name}| <= 90), got {dec:g}")
    return dec


def check_radius(name: str, radius: float, max_radius: float, *, allow_zero: bool = False) -> float:
    if radius < 0 or (radius == 0 and not allow_zero):
        raise BadParameter(name, f"must be > 0 deg, got {radius:g}")
    if radius > max_radius:
        raise BadParameter(name, f"must be <= {max_radius:g} deg (this service's maximum radius), got {radius:g}")
    return radius


def parse_epoch(name: str, value) -> float | None:
    """A Julian year from a number, 'J2030', or an ISO time; None when absent."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            jy = float(text)
        except ValueError:
            if len(text) > 64:
                raise BadParameter(name, "too long for a Julian year or ISO time") from None
            try:
                jy = float(epochs.to_julian_year(text))
            except Exception:  # noqa: BLE001 - astropy Time raises several kinds
                raise BadParameter(name, f"not a Julian year (2016.0), 'J2016' or ISO time: {text!r}") from None
    else:
        jy = float(value)
    if not (math.isfinite(jy) and EPOCH_RANGE[0] <= jy <= EPOCH_RANGE[1]):
        lo, hi = EPOCH_RANGE
        raise BadParameter(name, f"must be a Julian year within [{lo:g}, {hi:g}], got {value!r}")
    return jy
