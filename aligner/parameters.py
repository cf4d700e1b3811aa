"""The tweakreg step's parameters: one frozen, validated set per step.

:class:`RelativeParameters` holds :func:`aligner.relative_align`'s parameters and
:class:`AbsoluteParameters` :func:`aligner.absolute_align`'s (both with the functions' and the
tweakreg step's defaults, and the step's names: ``abs_searchrad`` is the absolute step's search
radius). What a run aligns and against what (the correctors, ``abs_refcat``, ``epoch``, the
store) are the functions' other arguments. Building a set validates it: a value out of range
raises :class:`~aligner.errors.ParameterError` (a ``ValueError``) naming the parameter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from . import selection
from .errors import ParameterError
from .fit import NPARAMS
from .refcat import DEFAULT_CENTROID_ERROR_MAS
from .significance import DEFAULT_MAX_CHANCE, check_max_chance

__all__ = ["RelativeParameters", "AbsoluteParameters"]

_SQRT2 = math.sqrt(2.0)


def _number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check(name: str, value: object, ok: bool, expected: str) -> None:
    if not ok:
        raise ParameterError(f"{name} must be {expected}, got {value!r}")


def _check_radii(searchrad: tuple[str, object], tolerance: tuple[str, object], separation: tuple[str, object],
                 offsets: tuple[tuple[str, object], ...] = ()) -> None:
    """The search radius, matching tolerance and separation (arcsec), given as (name, value),
    and any offset guesses: finite, in range, and the separation wide enough for the tolerance."""
    (s_name, s), (t_name, t), (d_name, d) = searchrad, tolerance, separation
    _check(s_name, s, _number(s) and s > 0, "a positive number (arcsec)")
    _check(t_name, t, _number(t) and t > 0, "a positive number (arcsec)")
    _check(d_name, d, _number(d) and d >= 0, "a number >= 0 (arcsec)")
    for name, v in offsets:
        _check(name, v, _number(v), "a finite number (arcsec)")
    if d <= _SQRT2 * t:
        raise ParameterError(f"{d_name} ({d} arcsec) must be larger than {t_name} ({t} arcsec) by at least a "
                             "factor of sqrt(2), to avoid source confusion")


def _check_fit(minobj: tuple[str, object], fitgeometry: tuple[str, object], nclip: tuple[str, object],
               sigma: tuple[str, object]) -> None:
    """The fewest matches, fit geometry, clipping rounds and clipping limit, given as (name, value)."""
    (m_name, m), (g_name, g), (n_name, n), (s_name, s) = minobj, fitgeometry, nclip, sigma
    _check(m_name, m, _integer(m) and m >= 1, "a positive integer")
    _check(g_name, g, g in NPARAMS, f"one of {', '.join(NPARAMS)}")
    _check(n_name, n, _integer(n) and n >= 0, "an integer >= 0")
    _check(s_name, s, _number(s) and s > 0, "a positive number")


@dataclass(frozen=True)
class RelativeParameters:
    """The parameters of :func:`aligner.relative_align`, with its defaults (see its docstring).

    Raises
    ------
    ParameterError
        On construction, for a value out of range (a ``ValueError``).
    """

    searchrad: float = 2.0
    separation: float = 1.0
    use2dhist: bool = True
    tolerance: float = 0.7
    xoffset: float = 0.0
    yoffset: float = 0.0
    enforce_user_order: bool = False
    expand_refcat: bool = False
    minobj: int = 15
    fitgeometry: str = "rshift"
    nclip: int = 3
    sigma: float = 3.0
    clip_accum: bool = False
    max_chance: float = DEFAULT_MAX_CHANCE
    brightest: int | None = None
    flux_column: str = "flux"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~aligner.errors.ParameterError` for the first value out of range."""
        _check_radii(("searchrad", self.searchrad), ("tolerance", self.tolerance), ("separation", self.separation),
                     (("xoffset", self.xoffset), ("yoffset", self.yoffset)))
        _check_fit(("minobj", self.minobj), ("fitgeometry", self.fitgeometry), ("nclip", self.nclip),
                   ("sigma", self.sigma))
        check_max_chance(self.max_chance)
        selection.check(self.brightest, self.flux_column)

    @classmethod
    def from_mapping(cls, values: dict) -> RelativeParameters:
        """The set from those of ``values`` (e.g. a function's keyword arguments) named like its fields."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


@dataclass(frozen=True)
class AbsoluteParameters:
    """The parameters of :func:`aligner.absolute_align`, with its defaults (see its docstring),
    other than what it aligns against (``abs_refcat``, ``epoch``, ``observer``, the store).

    ``centroid_error`` is checked where it is used (by the store's references).

    Raises
    ------
    ParameterError
        On construction, for a value out of range (a ``ValueError``).
    """

    abs_searchrad: float = 6.0
    abs_separation: float = 1.0
    abs_use2dhist: bool = True
    abs_tolerance: float = 0.7
    abs_minobj: int = 15
    abs_fitgeometry: str = "rshift"
    abs_nclip: int = 3
    abs_sigma: float = 3.0
    clip_accum: bool = False
    save_abs_catalog: bool = False
    abs_catalog_output_dir: str | None = None
    centroid_error: float = DEFAULT_CENTROID_ERROR_MAS
    max_chance: float = DEFAULT_MAX_CHANCE
    brightest: int | None = None
    flux_column: str = "flux"
    abs_mag_min: float | None = None
    abs_mag_max: float | None = None
    abs_brightest: int | None = None
    abs_mag_column: str = "mag"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~aligner.errors.ParameterError` for the first value out of range."""
        _check_radii(("abs_searchrad", self.abs_searchrad), ("abs_tolerance", self.abs_tolerance),
                     ("abs_separation", self.abs_separation))
        _check_fit(("abs_minobj", self.abs_minobj), ("abs_fitgeometry", self.abs_fitgeometry),
                   ("abs_nclip", self.abs_nclip), ("abs_sigma", self.abs_sigma))
        check_max_chance(self.max_chance)
        selection.check(self.brightest, self.flux_column, self.abs_brightest, self.abs_mag_min, self.abs_mag_max,
                        self.abs_mag_column)

    @classmethod
    def from_mapping(cls, values: dict) -> AbsoluteParameters:
        """The set from those of ``values`` (e.g. a function's keyword arguments) named like its fields."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})
