"""The absolute step's reference points: queried over the images, selected, thinned.

:func:`start_query` starts the reference query (:func:`.refcat.resolve`) over the images'
combined footprint, padded by the search radius, on a background thread; :func:`reference_points`
places its stars on the plane, keeps those near the groups (and any magnitude selection), and
thins them by ``abs_separation`` unless they are sparse.
"""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import refcat as refcats
from . import selection
from .errors import warn
from .images import Group, Image, make_groups
from .match import in_box, thin
from .parameters import AbsoluteParameters
from .plane import TangentPlane
from .runtime.threads import in_background

#: A group with fewer reference stars than this over its footprint matches all its sources
#: (and a reference with fewer than this per group is not thinned either).
SPARSE_REFERENCE = 50


def _query_radius(images: list[Image], plane: TangentPlane, searchrad: float) -> float:
    """Radius (deg) about the plane's centre of a cone over every image's footprint and
    sources, padded by ``searchrad`` (arcsec)."""
    from astrodb.query.regions import separation_deg

    corners = np.concatenate([np.stack([im.corners_ra, im.corners_dec], -1) for im in images
                              if len(im.corners_ra)] + [np.stack([im.ra, im.dec], -1) for im in images])
    return float(np.max(separation_deg(plane.ra0, plane.dec0, corners[:, 0], corners[:, 1]))) + searchrad / 3600.0


def _observer_position(abs_refcat, jy: float | None, observer) -> np.ndarray | None:
    """The observer's barycentric position (AU) for a store reference: ``observer``, else the
    Earth's at ``jy``; None for another reference, or without an epoch (with a warning)."""
    if not refcats.from_store(abs_refcat):
        return None
    position = None
    if jy is None:
        warn("absolute_align: no epoch given (epoch= or meta['epoch']): reference positions are "
             "at the catalog's epoch, not the observation's")
    elif observer is None:
        from astrodb.epoch import earth_barycentric_position
        position = earth_barycentric_position(jy)
    if observer is not None:
        position = np.asarray(observer, float).reshape(3)
    return position


def start_query(abs_refcat, images: list[Image], plane: TangentPlane, jy: float | None, observer, store,
                p: AbsoluteParameters) -> Future:
    """Start resolving ``abs_refcat`` over the images (at epoch ``jy`` and the observer's
    position, for a store reference) on a background thread; ``.result()`` is the
    :class:`~aligner.refcat.Reference`."""
    radius = _query_radius(images, plane, p.abs_searchrad)
    observer_pos = _observer_position(abs_refcat, jy, observer)
    # The query runs while the images' sources are thinned: a remote server's wait is hidden, and
    # a local one's work takes one of the cores the thinning would use.
    return in_background(lambda: refcats.resolve(
        abs_refcat, center=(plane.ra0, plane.dec0), radius=min(radius, 180.0), epoch=jy,
        observer=observer_pos, store=store, centroid_error_mas=p.centroid_error))


@dataclass
class ReferencePoints:
    """The reference stars used, on the plane."""

    rows: np.ndarray           # rows of the reference table used (after thinning)
    pos: np.ndarray            # their plane positions (arcsec)
    weight: np.ndarray
    offset_points: np.ndarray  # the selected stars before thinning: for the offset searches
    n_near: int                # stars near the groups
    n_selected: int            # of which selected by magnitude / brightest
    sparse: bool               # too few to thin
    source: str                # the reference's name, for messages

    def shortage(self, p: AbsoluteParameters) -> str:
        """The failure status of a group when there are fewer than ``abs_minobj`` stars."""
        chosen = (f", {self.n_selected} of them selected by abs_mag_min/abs_mag_max/abs_brightest"
                  if self.n_selected < self.n_near else "")
        thinned = "" if self.sparse else (f"; those closer than abs_separation {p.abs_separation:g}\" to "
                                          "another are not used")
        return (f"FAILED: not enough reference sources ({len(self.rows)} < abs_minobj {p.abs_minobj}) "
                f"in {self.source} over the images ({self.n_near} there{chosen}{thinned})")


def reference_points(ref: refcats.Reference, plane: TangentPlane, groups: list[Group], images: list[Image],
                     abs_refcat, p: AbsoluteParameters) -> tuple[list[Group], ReferencePoints]:
    """The reference stars near the groups, selected and thinned, and the groups, each whose
    footprint holds few of them with all its sources (:func:`unthinned_where_sparse`).

    With ``save_abs_catalog``, the selected stars are written to ``abs_catalog_output_dir``."""
    rxy = np.stack(plane.to_plane(ref.ra, ref.dec), -1) if len(ref.ra) else np.empty((0, 2))
    near = np.zeros(len(rxy), bool)
    for g in groups:
        if len(g.xy_all):
            near |= in_box(rxy, g.lo, g.hi, p.abs_searchrad + p.abs_tolerance)
    near &= np.all(np.isfinite(rxy), axis=1)
    ridx = selection.reference_stars(ref.table, np.nonzero(near)[0], mag_min=p.abs_mag_min, mag_max=p.abs_mag_max,
                                     brightest=p.abs_brightest, mag_column=p.abs_mag_column,
                                     what=f"reference catalog {ref.source}")
    n_near, n_selected = int(np.count_nonzero(near)), len(ridx)
    groups = unthinned_where_sparse(groups, images, rxy[ridx], p.abs_separation)
    live = [g for g in groups if len(g.xy)]
    if p.save_abs_catalog:
        _save(ref, ridx, abs_refcat, p.abs_catalog_output_dir)
    rall = rxy[ridx]
    # A sparse reference is matched whole as well (two stars 0.98" apart are two stars to
    # fit, told apart by mutual nearest neighbours at the histogram's offset).
    sparse = len(ridx) < SPARSE_REFERENCE * max(len(live), 1)
    keep = np.ones(len(ridx), bool) if sparse else thin(rxy[ridx], p.abs_separation)
    ridx = ridx[keep]
    return groups, ReferencePoints(ridx, rxy[ridx], ref.weight[ridx], rall, n_near, n_selected, sparse,
                                   ref.source)


def _save(ref: refcats.Reference, rows: np.ndarray, abs_refcat, directory: str | None) -> None:
    """Write the reference stars ``rows`` as ``fit_<name>_ref.ecsv`` ('user' for a file or table)."""
    out = Path(directory or ".")
    out.mkdir(parents=True, exist_ok=True)
    label = abs_refcat if isinstance(abs_refcat, str) and refcats.from_store(abs_refcat) else "user"
    ref.table[rows].write(out / f"fit_{str(label).lower()}_ref.ecsv", format="ascii.ecsv", overwrite=True)


def unthinned_where_sparse(groups: list[Group], images: list[Image], rxy: np.ndarray, separation: float
                           ) -> list[Group]:
    """``groups``, each whose footprint holds fewer than ``SPARSE_REFERENCE`` reference stars
    replaced by the same group with all its sources (not thinned by ``separation``).

    Thinning drops both sources of a close pair; against a sparse reference that loses a star
    whenever a faint detection lies within ``separation`` of it, while the ambiguity it avoids
    is settled by the mutual nearest neighbours at the histogram's offset."""
    finite = rxy[np.all(np.isfinite(rxy), axis=1)]
    sparse = [len(g.xy_all) > len(g.xy) and np.count_nonzero(in_box(finite, g.lo, g.hi)) < SPARSE_REFERENCE
              for g in groups]
    if not any(sparse):
        return groups
    whole = make_groups(images, 0.0)
    return [w if s else g for g, w, s in zip(groups, whole, sparse)]
