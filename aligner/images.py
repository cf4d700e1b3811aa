"""Images and groups as the aligner sees them: sources in the common tangent plane.

One job: turn the caller's tweakwcs correctors (WCS + meta catalog + group_id) into numpy
arrays — each image's valid sources (bounding-box filtered, world positions through the
current WCS, projected on the plane) and its footprint — and gather them by group_id.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from astrodb.query.regions import linear_wcs_finite

from .catalogs import image_sources, read_table
from .errors import CatalogError, ParameterError
from .match import bounds, kdtree, thin
from .plane import TangentPlane
from .runtime.threads import thread_map
from .selection import brightest_sources


@dataclass
class Image:
    """One corrector's sources (rows of its catalog) and footprint."""

    index: int
    corrector: object
    name: str
    group_id: object
    rows: np.ndarray          # rows of the catalog used (0-based, in the catalog as given)
    ra: np.ndarray
    dec: np.ndarray
    weight: np.ndarray
    corners_ra: np.ndarray    # footprint corners (deg)
    corners_dec: np.ndarray
    xy: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # plane arcsec
    corners: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    x: np.ndarray = field(default_factory=lambda: np.empty(0))         # pixels of the rows used
    y: np.ndarray = field(default_factory=lambda: np.empty(0))
    catalog_rows: int = 0                                              # rows in the catalog


@dataclass
class Group:
    """Images sharing a group_id: one correction for all of them."""

    index: int
    group_id: object
    images: list[Image]
    xy: np.ndarray            # (n, 2) plane positions of the group's isolated sources
    weight: np.ndarray
    image: np.ndarray         # which image (index into ``images``) each source comes from
    row: np.ndarray           # the source's row in that image's catalog
    lo: np.ndarray            # bounding box of the footprints in the plane (arcsec)
    hi: np.ndarray
    xy_all: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # before thinning (offsets)
    _tree: object = field(default=None, repr=False)

    @property
    def tree(self):
        """KD-tree of ``xy`` (built on first use)."""
        if self._tree is None:
            self._tree = kdtree(self.xy)
        return self._tree

    @property
    def center(self) -> np.ndarray:
        """Centre of the bounding box in the plane (arcsec): the fit's centre for the group."""
        return (self.lo + self.hi) / 2.0

    @property
    def corners(self) -> np.ndarray:
        """Footprint corners of every image of the group in the plane (arcsec)."""
        return np.concatenate([im.corners for im in self.images])

    def overlap(self, other: Group, pad: float = 0.0) -> float:
        """Area (arcsec^2) of the intersection of the two bounding boxes."""
        d = np.minimum(self.hi, other.hi) + pad - np.maximum(self.lo, other.lo)
        return float(np.prod(np.clip(d, 0.0, None)))


def _bbox(corrector):
    try:
        return corrector.bounding_box
    except Exception:  # noqa: BLE001 - a WCS without shape: no filtering, as stcal
        return None


def _corners(corrector, catalog_xy) -> tuple[np.ndarray, np.ndarray]:
    bb = _bbox(corrector)
    if bb is not None:
        (x0, x1), (y0, y1) = bb
    elif len(catalog_xy[0]):
        x0, x1 = np.nanmin(catalog_xy[0]), np.nanmax(catalog_xy[0])
        y0, y1 = np.nanmin(catalog_xy[1]), np.nanmax(catalog_xy[1])
    else:
        return np.empty(0), np.empty(0)
    ra, dec = corrector.det_to_world(np.array([x0, x1, x1, x0], float), np.array([y0, y0, y1, y1], float))
    return np.asarray(ra, float), np.asarray(dec, float)


def _check_wcs(corrector, name: str, cra: np.ndarray, cdec: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """Raise :class:`ParameterError` for a WCS that maps the image to no finite sky area (a NaN
    or singular CD/PC matrix, a NaN CRVAL): wcslib maps every pixel of a NaN CD to one point."""
    bb = _bbox(corrector)
    if bb is not None and len(cra):
        x0, y0 = float(np.mean(bb[0])), float(np.mean(bb[1]))
    elif len(x):
        x0, y0 = float(np.nanmean(x)), float(np.nanmean(y))
    else:
        return
    ra, dec = (np.asarray(v, float) for v in corrector.det_to_world(np.array([x0, x0 + 1.0, x0]),
                                                                    np.array([y0, y0, y0 + 1.0])))
    ok = np.all(np.isfinite(ra)) and np.all(np.isfinite(dec)) and np.all(np.isfinite(cra)) \
        and np.all(np.isfinite(cdec)) and linear_wcs_finite(getattr(corrector, "wcs", None))
    if ok:
        # The pixel's two sides on the sky (deg): a zero cross product is no area.
        cosd = np.cos(np.radians(dec[0]))
        ex = np.array([((ra[1] - ra[0] + 180) % 360 - 180) * cosd, dec[1] - dec[0]])
        ey = np.array([((ra[2] - ra[0] + 180) % 360 - 180) * cosd, dec[2] - dec[0]])
        ok = abs(ex[0] * ey[1] - ex[1] * ey[0]) > 1e-20
    if not ok:
        raise ParameterError(f"the WCS of {name} maps the image to no area of the sky (a NaN or singular "
                             "CD/PC matrix, or a NaN CRVAL?)")


def load_images(correctors, brightest: int | None = None, flux_column: str = "flux") -> list[Image]:
    """Read every corrector's catalog and compute its sources' world positions (of the
    ``brightest`` sources by ``flux_column`` on the image, with ``brightest`` given)."""
    if len(correctors) == 0:
        raise ParameterError("no correctors given: pass one tweakwcs corrector per image (aligner.make_corrector)")
    images = []
    for i, c in enumerate(correctors):
        meta = getattr(c, "meta", None)
        if meta is None or "catalog" not in meta:
            raise CatalogError(f"corrector {i} has no meta['catalog'] (a Table of x/y sources)")
        name = str(meta.get("name") or f"image {i}")
        cat = read_table(meta["catalog"], f"catalog of {name}")
        x, y, w = image_sources(cat, f"catalog of {name}")
        ok = np.isfinite(x) & np.isfinite(y)
        bb = _bbox(c)
        if bb is not None:  # as filter_catalog_by_bounding_box, keeping the catalog's row numbers
            (x0, x1), (y0, y1) = bb
            ok &= (x > x0) & (x < x1) & (y > y0) & (y < y1)
        rows = brightest_sources(cat, np.nonzero(ok)[0], brightest, flux_column, f"catalog of {name}")
        ok = np.zeros(len(ok), bool)
        ok[rows] = True
        ra, dec = c.det_to_world(x[ok], y[ok]) if ok.any() else (np.empty(0), np.empty(0))
        ra, dec = np.asarray(ra, float), np.asarray(dec, float)
        good = np.isfinite(ra) & np.isfinite(dec)
        cra, cdec = _corners(c, (x[ok], y[ok]))
        _check_wcs(c, name, cra, cdec, x[ok], y[ok])
        images.append(Image(i, c, name, meta.get("group_id"), rows[good], ra[good], dec[good], w[ok][good],
                            cra, cdec, x=x[ok][good], y=y[ok][good], catalog_rows=len(cat)))
    return images


def plane_for(images: list[Image]) -> TangentPlane:
    """The common tangent plane: centred on the images' footprint corners and first sources.

    Raises
    ------
    CatalogError
        No image has a footprint or a source.
    """
    ra = np.concatenate([np.concatenate([im.corners_ra, im.ra[:1]]) for im in images])
    dec = np.concatenate([np.concatenate([im.corners_dec, im.dec[:1]]) for im in images])
    if len(ra) == 0:
        raise CatalogError("no image has a footprint or a source: nothing to align")
    return TangentPlane.around(ra, dec)


def project(images: list[Image], plane: TangentPlane) -> None:
    """Set each image's ``xy`` (its sources) and ``corners`` (its footprint) on ``plane`` (arcsec)."""
    for im in images:
        im.xy = np.stack(plane.to_plane(im.ra, im.dec), axis=-1) if len(im.ra) else np.empty((0, 2))
        im.corners = (np.stack(plane.to_plane(im.corners_ra, im.corners_dec), axis=-1)
                      if len(im.corners_ra) else im.xy[:0])


def _area(corners: np.ndarray) -> float | None:
    """Area (arcsec^2) of a footprint polygon (shoelace), or None without a footprint."""
    if len(corners) < 3:
        return None
    x, y = corners[:, 0], corners[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0) or None


def make_groups(images: list[Image], separation: float, *, one_group: bool = False) -> list[Group]:
    """Gather images by group_id (None: an image alone), in order of first appearance; each
    image's sources are thinned by ``separation`` (:func:`.match.thin`) on their own."""
    order: dict = {}
    for im in images:
        key = ("all",) if one_group else (("image", im.index) if im.group_id is None else ("id", im.group_id))
        order.setdefault(key, []).append(im)
    masks = dict(zip((im.index for im in images),
                     thread_map(lambda m: thin(m.xy, separation, _area(m.corners)), images)))
    groups = []
    for gi, members in enumerate(order.values()):
        xy = np.concatenate([m.xy for m in members]) if members else np.empty((0, 2))
        w = np.concatenate([m.weight for m in members])
        img = np.concatenate([np.full(len(m.xy), k) for k, m in enumerate(members)]).astype(np.intp)
        row = np.concatenate([m.rows for m in members]).astype(np.intp)
        keep = np.concatenate([masks[m.index] for m in members])
        pts = np.concatenate([np.concatenate([m.corners for m in members]), xy])
        lo, hi = bounds(pts) if len(pts) else (np.zeros(2), np.zeros(2))
        groups.append(Group(gi, members[0].group_id, members, xy[keep], w[keep], img[keep], row[keep], lo, hi,
                            xy_all=xy))
    return groups
