"""What a query of a region-limited catalog must stay within, and the check that it does.

A catalog loaded for a region holds every star whose reference-epoch position lies in its
claimed cells (:mod:`astrodb.store.catalog_regions`), and none from elsewhere. A query at epoch
``t`` is exact when the stars that can be inside its region then are all in the catalog: when
the region widened by the largest distance any star of the release moves between the reference
epoch and ``t`` (:func:`astrodb.epoch.displacement_bound`, the release-wide bound the load used)
lies within the claimed cells. Queries also stay within the epochs the loads were made for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import epoch as epochs
from ..errors import OutsideRegionError
from . import coverage


@dataclass(frozen=True)
class RegionLoad:
    """One region load of a catalog, as the messages name it."""

    description: str
    epoch_lo: float | None
    epoch_hi: float | None
    complete: bool


@dataclass(frozen=True)
class RegionLimits:
    """A region-limited catalog's claim: the cells it holds every star of, and the epochs."""

    catalog: str
    loads: tuple[RegionLoad, ...]
    cells: np.ndarray         # [lo, hi) ranges of nested cells at ``order``: the union of the claims
    order: int
    ref_epoch: float
    pm_max: float
    radial_rate_max: float
    parallax_max: float

    @property
    def epochs(self) -> tuple[float, float] | None:
        """The span of the complete loads' epochs (None before any load completed)."""
        done = [x for x in self.loads if x.complete]
        if not done:
            return None
        return min(x.epoch_lo for x in done), max(x.epoch_hi for x in done)

    def describe(self) -> str:
        """``holds only the region loaded with --cone 10 20 1 deg, exact for epochs 2000-2030``."""
        done = [x for x in self.loads if x.complete]
        if len(done) == 1:
            x = done[0]
            return (f"catalog {self.catalog} holds only the region loaded with {x.description}, exact for epochs "
                    f"{x.epoch_lo:g}–{x.epoch_hi:g}")
        shown = [f"{x.description} (epochs {x.epoch_lo:g}–{x.epoch_hi:g})" for x in done[:3]]
        more = f" and {len(done) - 3} more" if len(done) > 3 else ""
        return f"catalog {self.catalog} holds only the regions loaded with {'; '.join(shown)}{more}"


def _kind(region) -> str:
    from .regions import Cone, Polygon, WCSFootprint

    if isinstance(region, Cone):
        return "cone"
    if isinstance(region, WCSFootprint):
        return "footprint"
    if isinstance(region, Polygon):
        return "polygon"
    return "region"


def check(limits: RegionLimits, region, epoch: float | None, observer_distance: float = 0.0) -> None:
    """Raise unless a query of ``region`` at ``epoch`` is exact on the limited catalog.

    Parameters
    ----------
    limits : RegionLimits
    region : Cone, Polygon or WCSFootprint
        The query's region (:mod:`astrodb.query.regions`).
    epoch : float or None
        Julian year of the query; None: the stored positions (no star moves).
    observer_distance : float
        The observer's distance from the barycentre (au), for its parallax shift.

    Raises
    ------
    OutsideRegionError
        Naming the catalog's region and epochs: no load finished yet, the epoch is outside the
        loads' epochs, or the region (widened by how far a star can move by the epoch) reaches
        outside the cells the catalog holds every star of.
    """
    if not any(x.complete for x in limits.loads):
        loads = ", ".join(x.description for x in limits.loads[:3])
        raise OutsideRegionError(f"catalog {limits.catalog} was loaded for a region ({loads}) whose load has not "
                                 "finished: rerun the same ingest to load the files that are missing")
    lo, hi = limits.epochs
    if epoch is not None and not lo <= epoch <= hi:
        raise OutsideRegionError(f"{limits.describe()}: epoch {epoch:g} is outside them (load the region again "
                                 f"with epochs that include {epoch:g}, --epochs LO HI)")
    if coverage.is_full_sky(limits.cells, limits.order):
        return
    reach = 0.0
    if epoch is not None:
        reach = epochs.displacement_bound(limits.pm_max, limits.radial_rate_max, epoch - limits.ref_epoch,
                                          parallax_max=limits.parallax_max, observer_distance=observer_distance)
    cap = region.cap
    if cap[2] + reach >= 180.0 or not math.isfinite(reach):
        raise OutsideRegionError(f"{limits.describe()}: this {_kind(region)} reaches outside it")
    # A finer sampling and half the slack of the load's own cover: the loaded region itself, at
    # any of its epochs, fits within what the load recorded.
    wanted = coverage.region_cover(region, reach, limits.order, slack=coverage.cell_radius_deg(limits.order) / 2,
                                   step=coverage.pixel_size_deg(limits.order) / 2)
    held = coverage.moc_from_ranges(limits.cells, limits.order)
    if not wanted.difference(held).empty():
        how = "" if epoch is None else f" (with the {reach * 3600:.0f}\" a star can move by {epoch:g})"
        raise OutsideRegionError(f"{limits.describe()}: this {_kind(region)}{how} reaches outside it")
