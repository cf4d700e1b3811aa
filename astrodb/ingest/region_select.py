"""Gaia for a region: which bulk files and HATS partitions can hold its rows, and which of their
rows a load keeps.

A region load keeps every row whose reference-epoch position lies in the region widened by the
largest distance any star of the release can move between its reference epoch and the epochs
asked for (:func:`release_pad`), rounded outwards to whole HEALPix cells of order
:data:`~astrodb.query.coverage.COVER_ORDER` (the *cut*). So a query inside the region at any of
those epochs finds every star that is there then, fast movers from outside included.

Files are chosen before any is read:

* EDR3/DR3 bulk files are named by the HEALPix level-8 (nested) range of the ``source_id`` s they
  hold, ``GaiaSource_000000-003111.csv.gz`` holding pixels 0 to 3111 inclusive: "the HEALPix
  level-8 index of any given source can be computed by right-shifting 43 bits the value of
  source_id" (Gaia DR3 documentation, section 13.2.4 "Data partitioning"; 2**43 = 2**35 for
  level 12 times 4**4 from level 12 to 8). DR2 files are named by their first and last
  ``source_id``, whose level-8 pixels bound the file's range the same way.
* The pixel in a ``source_id`` is where the source was when its record was created, not where
  the catalogue puts it: "the distance should normally not exceed about 0.011 and never exceed
  0.015 deg" from the centre of its level-12 pixel, "however there are 1972 sources outside that
  limit ... largely due to high proper motion stars having moved to a neighbouring HEALPix either
  since the epoch for the input catalogue prepared before launch or since their first
  observation" (Gaia DR2 documentation, section 10.2.1 "Source identifiers"). A file is
  therefore read when its pixels come within :data:`SOURCE_ID_MARGIN_DEG` of the cut.
* A HATS partition ``Norder=K/Npix=N`` holds the rows whose position is in that pixel: read when
  the pixel meets the cut (hats' pixel tree, ``hats.pixel_tree.moc_filter.filter_by_moc``).
* DR1 files are numbered, not named by pixels: each is read and cut.

A catalog is complete for the part of the cut that the files given can hold in full (the claim):
the whole cut for a HATS catalog directory, a collection or DR1 files; for bulk files the level-8
pixels they are named by, less :data:`SOURCE_ID_MARGIN_DEG` at the edges (a source near the
edge may have its ``source_id`` in a file not given).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import epoch as epochs_mod
from .. import limits
from ..errors import IngestError, QueryError
from ..query import coverage

#: Largest total proper motion of any known star, mas/yr: Barnard's star, 10.39"/yr (Gaia DR3
#: 4472832130942575872: pmra -801.551, pmdec 10362.394 mas/yr; the row is in tests/data/gaia_dr3),
#: the record holder since Barnard (1916) and in Gaia DR2, EDR3 and DR3 alike. DR1's gaia_source
#: has proper motions for its TGAS subset only (Tycho-2 stars), so the same bound holds there.
PM_MAX_KNOWN = 10_400.0
#: Largest |radial velocity| / distance, 1/yr, for the perspective term of the bound: Barnard's
#: star has 6.2e-5 (-110.6 km/s at 1.83 pc), Proxima Centauri 1.7e-5 (-22 km/s at 1.30 pc).
RADIAL_RATE_MAX_KNOWN = 1e-4
#: Largest parallax of any star, mas: Proxima Centauri, 768.07 mas in Gaia DR3.
PARALLAX_MAX_KNOWN = 800.0
#: Observers a region load is exact for: within 1.1 au of the barycentre (the Earth, spacecraft
#: at L1/L2), whose annual parallax shifts a star by up to parallax * 1.1 au.
OBSERVER_AU = 1.1
#: Default epochs of a region load: HST's first images to a decade after now.
DEFAULT_EPOCHS = (1990.0, 2040.0)
#: How far (deg) the level-8 pixel in a ``source_id`` can be from the source's catalogue position:
#: 0.015 deg (DR2 documentation 10.2.1, above) plus the fastest star's 10.4"/yr over the 25 yr
#: from J1991.25 (Hipparcos' epoch, taken as the oldest any position of the pre-launch input
#: catalogue can have) to J2016: 0.087 deg, taken as 0.1. Barnard's star itself is 0.0435 deg
#: from the centre of its DR3 source_id's level-12 pixel (its position about J2001).
SOURCE_ID_MARGIN_DEG = 0.1
#: HEALPix order of the pixels in the bulk files' names.
BULK_ORDER = 8

_DR3_NAME = re.compile(r"^GaiaSource_(\d{6})-(\d{6})\.")
_DR2_NAME = re.compile(r"^GaiaSource_(\d{10,20})_(\d{10,20})\.")
_SID_TO_BULK = 35 + 2 * (12 - BULK_ORDER)   # 43: source_id >> 43 is the level-8 pixel


@dataclass(frozen=True)
class MotionBound:
    """How far any source of a release can move: the bound's inputs."""

    pm_max: float           # mas/yr
    radial_rate_max: float  # 1/yr
    parallax_max: float     # mas

    def displacement(self, dt: float, observer_distance: float = 0.0) -> float:
        """Largest distance (deg) any source moves in ``dt`` years (:func:`astrodb.epoch.displacement_bound`)."""
        return epochs_mod.displacement_bound(self.pm_max, self.radial_rate_max, dt, parallax_max=self.parallax_max,
                                             observer_distance=observer_distance)


#: Per release; one bound for all, since the fastest star is in each of them (see above).
RELEASE_MOTION = {r: MotionBound(PM_MAX_KNOWN, RADIAL_RATE_MAX_KNOWN, PARALLAX_MAX_KNOWN)
                  for r in ("dr1", "dr2", "edr3", "dr3")}


def release_pad(release: str, ref_epoch: float, epochs: tuple[float, float]) -> float:
    """The region's widening (deg): the largest displacement of any star of ``release`` between
    ``ref_epoch`` and an epoch in ``epochs``, seen by an observer within :data:`OBSERVER_AU`.

    Essentially ``pm_max * max(|lo - ref_epoch|, |hi - ref_epoch|)``; the bound adds the
    perspective and parallax terms and a rounding margin.
    """
    lo, hi = epochs
    dt = max(abs(lo - ref_epoch), abs(hi - ref_epoch))
    return RELEASE_MOTION[release].displacement(dt, OBSERVER_AU)


def check_epochs(epochs, name: str = "epochs") -> tuple[float, float]:
    """``(lo, hi)`` Julian years from two epochs (numbers, ``'J2030'``, ISO times, Time)."""
    try:
        lo_in, hi_in = epochs
    except (TypeError, ValueError):
        raise IngestError(f"{name} must be two epochs (lo, hi), got {epochs!r}") from None
    out = []
    for label, value in (("lo", lo_in), ("hi", hi_in)):
        try:
            jy = float(epochs_mod.to_julian_year(value))
        except (TypeError, ValueError):
            raise IngestError(f"{name}: {label} must be a Julian year (2030.0), 'J2030' or an ISO time, "
                              f"got {value!r}") from None
        problem = limits.epoch_problem(jy)
        if problem:
            raise IngestError(f"{name}: {label} {problem}")
        out.append(jy)
    if out[0] > out[1]:
        raise IngestError(f"{name}: lo ({out[0]:g}) must not be after hi ({out[1]:g})")
    return out[0], out[1]


# --- the region a load asks for ------------------------------------------------------------------

@dataclass(frozen=True)
class LoadRegion:
    """A region to load: one or more shapes (their union) and how to name it in messages."""

    shapes: tuple
    description: str

    @classmethod
    def create(cls, region) -> LoadRegion:
        """Normalize what :meth:`astrodb.Store.ingest_gaia` accepts as ``region``.

        Parameters
        ----------
        region : LoadRegion, Cone, Polygon, WCSFootprint, (wcs, shape), vertices, mocpy.MOC, str,
                 os.PathLike, or a list of WCSs / ``(wcs, shape)`` / WCSFootprints / image files
            A cone or polygon (as :func:`astrodb.query.regions.make_region` takes it), a MOC (a
            ``mocpy.MOC`` or a MOC FITS file), or images, whose footprints' union is the region.

        Raises
        ------
        IngestError
            Naming ``region``: not a region, or the shape is invalid.
        """
        from ..query.regions import Cone, Polygon, WCSFootprint, make_region

        if isinstance(region, LoadRegion):
            return region
        if hasattr(region, "to_depth29_ranges"):
            return cls.from_moc(region)
        if isinstance(region, (str, os.PathLike)):
            path = Path(region)
            if _is_moc_file(path):
                return cls.from_moc_file(path)
            return cls.from_images([path])
        if isinstance(region, Cone):
            return cls((region,), f"--cone {_num(region.ra)} {_num(region.dec)} {_num(region.radius)} deg")
        if (isinstance(region, tuple) and len(region) == 2 and hasattr(region[0], "world_to_pixel_values")
                and not hasattr(region[1], "world_to_pixel_values") and not isinstance(region[1], (str, os.PathLike))):
            return cls.from_images([region])   # one (wcs, shape)
        if _is_image_list(region):
            return cls.from_images(list(region))
        try:
            shape = make_region(region)
        except QueryError as exc:
            raise IngestError(f"region: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise IngestError(f"region: not a cone, polygon, MOC or list of images ({exc})") from None
        if isinstance(shape, Polygon):
            return cls((shape,), _polygon_text(shape))
        if isinstance(shape, WCSFootprint):
            return cls((shape,), "1 image footprint")
        return cls((shape,), "a region")

    @classmethod
    def from_cone(cls, ra, dec, radius) -> LoadRegion:
        """A cone (degrees or angles)."""
        from ..query.regions import Cone

        try:
            return cls.create(Cone.create(ra, dec, radius))
        except QueryError as exc:
            raise IngestError(f"region: {exc}") from None

    @classmethod
    def from_moc(cls, moc, name: str | None = None) -> LoadRegion:
        """A mocpy MOC (``name``: the file it came from)."""
        if moc.empty():
            raise IngestError(f"region: the MOC{' ' + name if name else ''} holds no cell")
        where = f"--moc {name}" if name else f"a MOC of {moc.sky_fraction * 41252.96:.3g} deg²"
        return cls((moc,), where)

    @classmethod
    def from_moc_file(cls, path) -> LoadRegion:
        """A MOC FITS file."""
        from mocpy import MOC

        path = Path(path)
        if not path.is_file():
            raise IngestError("region: no such MOC file", source=str(path))
        try:
            moc = MOC.from_fits(str(path))
        except Exception as exc:  # noqa: BLE001 - any unreadable file: one clear error
            raise IngestError(f"region: not a MOC FITS file ({type(exc).__name__}: {exc})", source=str(path)) from None
        return cls.from_moc(moc, path.name)

    @classmethod
    def from_images(cls, images) -> LoadRegion:
        """The union of image footprints: FITS files (their header's WCS and size), ``(wcs,
        shape)`` pairs, WCSFootprints, or astropy WCSs that know their ``pixel_shape``."""
        from ..query.regions import WCSFootprint

        if not images:
            raise IngestError("region: an empty list of images")
        shapes, names = [], []
        for item in images:
            try:
                if isinstance(item, WCSFootprint):
                    shapes.append(item)
                elif isinstance(item, (str, os.PathLike)):
                    shapes.append(image_footprint(item))
                    names.append(Path(item).name)
                elif isinstance(item, tuple) and len(item) == 2:
                    shapes.append(WCSFootprint(item[0], item[1]))
                elif getattr(item, "pixel_shape", None) is not None:
                    nx, ny = item.pixel_shape
                    shapes.append(WCSFootprint(item, (ny, nx)))
                else:
                    raise IngestError(f"region: {type(item).__name__} is no image: give a FITS file, "
                                      "(wcs, (ny, nx)) or a WCS with pixel_shape")
            except QueryError as exc:
                raise IngestError(f"region: {exc}") from None
        if len(names) == len(shapes):
            shown = " ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            text = f"--wcs {shown}"
        else:
            text = f"{len(shapes)} image footprint{'s' if len(shapes) > 1 else ''}"
        return cls(tuple(shapes), text)

    def cover(self, pad_deg: float, order: int = coverage.COVER_ORDER):
        """The cut: cells within ``pad_deg`` of any shape, as a MOC."""
        out = coverage.empty_moc(order)
        for shape in self.shapes:
            out = out.union(coverage.region_cover(shape, pad_deg, order))
        return out


def _num(x: float) -> str:
    return f"{x:.10g}"


def _polygon_text(poly) -> str:
    pairs = [f"{_num(r)} {_num(d)}" for r, d in zip(poly.ra, poly.dec)]
    if len(pairs) > 6:
        return f"--polygon {' '.join(pairs[:4])} ... ({len(pairs)} vertices)"
    return "--polygon " + " ".join(pairs)


def _is_image_list(region) -> bool:
    if not isinstance(region, (list, tuple)) or not region:
        return False
    first = region[0]
    return isinstance(first, (str, os.PathLike)) or hasattr(first, "world_to_pixel_values") or (
        isinstance(first, tuple) and len(first) == 2 and hasattr(first[0], "world_to_pixel_values"))


def _is_moc_file(path: Path) -> bool:
    """A FITS file whose first extension is a MOC (MOCORDER/MOCORD_S or NUNIQ ordering)."""
    from astropy.io import fits

    if not path.is_file():
        return path.name.lower().endswith((".moc", ".moc.fits"))
    try:
        with fits.open(path) as hdul:
            if len(hdul) < 2:
                return False
            h = hdul[1].header
            return any(k in h for k in ("MOCORDER", "MOCORD_S", "MOCDIM")) or h.get("ORDERING") in ("NUNIQ", "RANGE")
    except OSError:
        return False


def image_footprint(path):
    """The footprint of a FITS image: its header's celestial WCS and its size (NAXIS1/2,
    ZNAXIS1/2 or IMAGEW/IMAGEH)."""
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    from ..query.regions import WCSFootprint, image_shape

    path = Path(path)
    if not path.is_file():
        raise IngestError("region: no such image file", source=str(path))
    try:
        with fits.open(path) as hdul:
            hdu = next((h for h in hdul if h.header.get("CTYPE1")), hdul[0])
            header = hdu.header.copy()
    except OSError as exc:
        raise IngestError(f"region: cannot read the FITS file ({exc})", source=str(path)) from None
    shape = image_shape(header)
    if shape is None:
        raise IngestError("region: the header has no image size (NAXIS1/NAXIS2, ZNAXIS1/ZNAXIS2 or IMAGEW/IMAGEH)",
                          source=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header).celestial
    if not wcs.has_celestial:
        raise IngestError("region: the header has no celestial WCS", source=str(path))
    try:
        return WCSFootprint(wcs, shape)
    except QueryError as exc:
        raise IngestError(f"region: {exc}", source=str(path)) from None


# --- which files ---------------------------------------------------------------------------------

def bulk_range(name: str) -> tuple[int, int, bool] | None:
    """``(first, last, whole)`` level-8 pixels of a bulk file's name (``whole``: every source of
    those pixels is in it: EDR3/DR3; a DR2 file shares its end pixels with its neighbours); None
    for names without pixels (DR1, other names)."""
    m = _DR3_NAME.match(name)
    if m:
        return int(m.group(1)), int(m.group(2)), True
    m = _DR2_NAME.match(name)
    if m:
        return int(m.group(1)) >> _SID_TO_BULK, int(m.group(2)) >> _SID_TO_BULK, False
    return None


def hats_pixel(unit) -> tuple[int, int] | None:
    """``(Norder, Npix)`` of a HATS partition file's path (``.../Norder=K/Dir=D/Npix=N.parquet``
    or a file of ``Npix=N/``), via hats' path convention; None for other files."""
    from . import hats_reader

    text = os.fspath(unit)
    if not text.lower().endswith(".parquet") or hats_reader.partition_path_match(text) is None:
        return None
    from hats.io.paths import get_healpix_from_path

    pix = get_healpix_from_path(text)
    if pix.order < 0:
        return None
    return int(pix.order), int(pix.pixel)


def _bulk_complete(ranges: list[tuple[int, int, bool]]):
    """Level-8 pixels every source of which is in the given bulk files, as a MOC."""
    ends: dict[int, int] = {}
    for first, last, whole in ranges:
        if not whole:
            ends[first] = ends.get(first, 0) + 1
            ends[last] = ends.get(last, 0) + 1
    held = []   # [lo, hi) ranges of level-8 pixels
    for first, last, whole in ranges:
        if whole:
            held.append((first, last + 1))
            continue
        held.append((first + 1, last))
        # A DR2 end pixel counts when another given file reaches into it too (the archive's
        # files follow each other in source_id order, so neighbours share their end pixels).
        held += [(p, p + 1) for p in {first, last} if ends[p] >= 2]
    cells = np.array([r for r in held if r[1] > r[0]], np.int64).reshape(-1, 2)
    cells = np.clip(cells, 0, 12 * 4 ** BULK_ORDER)
    return coverage.moc_from_ranges(coverage.union_ranges([cells]), BULK_ORDER)


@dataclass
class Selection:
    """What a region load reads and keeps, decided before any file is read."""

    region: LoadRegion
    epochs: tuple[float, float]
    pad_deg: float
    cells: np.ndarray              # the cut: [lo, hi) ranges of nested COVER_ORDER cells
    claim: np.ndarray              # the part of the cut the files given hold in full
    read: list = field(default_factory=list)      # the units to read
    outside: list = field(default_factory=list)   # units that cannot hold a row of the cut
    order: int = coverage.COVER_ORDER
    ref_epoch: float = 2016.0                     # the release's reference epoch
    bound: MotionBound = RELEASE_MOTION["dr3"]    # the release's motion bound behind ``pad_deg``

    @property
    def key(self) -> str:
        """Names the cut (cells and epochs): a file loaded with it is recorded under
        :func:`piece_key` of its sha256 and this."""
        return coverage.digest(self.cells, self.order, *self.epochs)

    @property
    def complete(self) -> bool:
        """Whether the files given hold every row of the cut."""
        return coverage.cell_count(self.claim) == coverage.cell_count(self.cells)


def select(units: list, region: LoadRegion, release: str, ref_epoch: float, epochs: tuple[float, float],
           sky_complete: bool, margin_deg: float = SOURCE_ID_MARGIN_DEG) -> Selection:
    """Split ``units`` (paths or URLs) into the ones a region load reads and the ones it skips.

    Parameters
    ----------
    units : list
        Bulk files and HATS partition files (what :func:`astrodb.ingest.gaia.expand_paths` gives).
    region : LoadRegion
    release : str
        ``"dr1"``, ``"dr2"``, ``"edr3"`` or ``"dr3"``.
    ref_epoch : float
        The release's reference epoch.
    epochs : (float, float)
        The epochs queries will be made at.
    sky_complete : bool
        The units include whole HATS catalogs: they hold every row of the release.
    margin_deg : float
        How far a bulk file's source_id pixels may be from its rows (:data:`SOURCE_ID_MARGIN_DEG`).

    Returns
    -------
    Selection
    """
    from mocpy import MOC

    pad = release_pad(release, ref_epoch, epochs)
    cut = region.cover(pad)
    cells = coverage.moc_ranges(cut)
    reach8 = coverage.moc_ranges(coverage.dilate(cut, margin_deg, coverage.COVER_ORDER), BULK_ORDER)
    read, outside, hats_units, bulk_ranges = [], [], [], []
    unknown = False
    for unit in units:
        name = os.fspath(unit).replace("\\", "/").rsplit("/", 1)[-1]
        pix = hats_pixel(unit)
        if pix is not None:
            hats_units.append((unit, pix))
            continue
        rng = bulk_range(name)
        if rng is None:
            unknown = True
            read.append(unit)
            continue
        bulk_ranges.append(rng)
        first, last, _ = rng
        # [first, last] meets one of the [lo, hi) ranges the cut reaches?
        hit = np.any((reach8[:, 0] <= last) & (reach8[:, 1] > first)) if len(reach8) else False
        (read if hit else outside).append(unit)
    if hats_units:
        kept = _hats_overlapping([pix for _, pix in hats_units], cut)
        for unit, pix in hats_units:
            (read if pix in kept else outside).append(unit)
    order = coverage.COVER_ORDER
    if sky_complete or unknown:
        claim = cells
    else:
        complete = coverage.erode(_bulk_complete(bulk_ranges), margin_deg, order)
        # Partitions finer than the cells would round outwards: they do not count (none of Gaia's).
        pixels = [pix for _, pix in hats_units if pix[0] <= order]
        if pixels:
            complete = coverage.at_order(complete, order).union(MOC.from_healpix_cells(
                np.array([p for _, p in pixels], np.uint64), np.array([k for k, _ in pixels], np.uint8),
                max(k for k, _ in pixels)))
        claim = coverage.moc_ranges(cut.intersection(coverage.at_order(complete, order)), order)
    position = {os.fspath(u): i for i, u in enumerate(units)}
    read.sort(key=lambda u: position[os.fspath(u)])
    outside.sort(key=lambda u: position[os.fspath(u)])
    return Selection(region, epochs, pad, cells, claim, read, outside, order, ref_epoch, RELEASE_MOTION[release])


def _hats_overlapping(pixels: list[tuple[int, int]], cut) -> set[tuple[int, int]]:
    """The HATS partitions that meet the cut, by hats' pixel tree filter (partitions of several
    catalogs given together may nest, which a pixel tree refuses: then one tree each)."""
    from hats.pixel_math import HealpixPixel
    from hats.pixel_tree.moc_filter import filter_by_moc
    from hats.pixel_tree.pixel_tree import PixelTree

    def meeting(group) -> set[tuple[int, int]]:
        tree = PixelTree.from_healpix([HealpixPixel(k, n) for k, n in group])
        return {(int(p.order), int(p.pixel)) for p in filter_by_moc(tree, cut).get_healpix_pixels()}

    unique = sorted(set(pixels))
    try:
        return meeting(unique)
    except ValueError:  # "Tree contains overlapping pixels"
        return set().union(*(meeting([p]) for p in unique))


# --- which rows ----------------------------------------------------------------------------------

def piece_key(sha256: str, cut_key: str) -> str:
    """What a file loaded with a cut is recorded as (``source_files.sha256``): the sha256 of its
    own sha256 and the cut's key, so the same file cut another way is another piece."""
    return hashlib.sha256(f"{sha256}:{cut_key}".encode()).hexdigest()


@dataclass(frozen=True)
class RowFilter:
    """Which rows of a file a load keeps (picklable: it goes to the worker processes).

    ``cells`` None keeps every row (a whole-file load into a catalog holding pieces). Rows
    another cut of the same file already loaded (``earlier``, where its piece is in ``done``)
    are left out, so every row is loaded once.
    """

    key: str | None                                  # the cut's key; None: whole files
    cells: np.ndarray | None                         # [lo, hi) ranges of cells at ``order``
    earlier: tuple[tuple[str, np.ndarray], ...] = ()  # (cut key, cells) recorded in the catalog
    done: frozenset[str] = frozenset()               # source_files.sha256 of the catalog
    order: int = coverage.COVER_ORDER

    def file_key(self, sha256: str) -> str:
        """The key a file with this sha256 is recorded under."""
        return sha256 if self.key is None else piece_key(sha256, self.key)

    def loaded(self, sha256: str) -> bool:
        """Whether this file's rows for this load are all in the catalog already."""
        return sha256 in self.done or self.file_key(sha256) in self.done

    def mask(self, pix: np.ndarray, sha256: str) -> np.ndarray:
        """The rows to keep, given their order-29 pixels (:func:`astrodb.query.healpix.hpx29`
        of the reference-epoch positions, which the load computes once for sorting too)."""
        keep = np.ones(len(pix), bool) if self.cells is None else coverage.contains(self.cells, self.order, pix)
        for key, cells in self.earlier:
            if key != self.key and piece_key(sha256, key) in self.done:
                keep &= ~coverage.contains(cells, self.order, pix)
        return keep


@dataclass
class RegionOutcome:
    """What a region load asked for and what came of it (part of the ingest report)."""

    description: str
    epochs: tuple[float, float]
    pad_deg: float
    read: list[str]
    outside: list[str]          # files that cannot hold a row of the region: not read
    cut_area: str
    claim_area: str
    complete: bool              # the files given hold every row of the region
    recorded: bool = False      # the catalog now records the region (every file was loaded)

    @classmethod
    def of(cls, selection: Selection) -> RegionOutcome:
        return cls(selection.region.description, selection.epochs, selection.pad_deg,
                   [os.fspath(u) for u in selection.read], [os.fspath(u) for u in selection.outside],
                   coverage.describe_area(selection.cells, selection.order),
                   coverage.describe_area(selection.claim, selection.order), selection.complete)

    def summary(self) -> str:
        """The report's line about the region."""
        lo, hi = self.epochs
        text = (f"  region {self.description}, epochs {lo:g}–{hi:g} (rows within {describe_pad(self.pad_deg)} "
                f"of it kept, {self.cut_area}): {len(self.read)} file(s) read, {len(self.outside)} outside it "
                "not read; ")
        if not self.read:
            return text + "none of the files given can hold a star of it: nothing loaded"
        if not self.recorded:
            return text + "not recorded yet (a file failed: rerun the same command to load it)"
        if not self.complete:
            return text + (f"recorded for the {self.claim_area} the files given hold in full (the rest needs the "
                           "files around it)")
        return text + "recorded: queries inside it at those epochs are exact"


def describe_pad(pad_deg: float) -> str:
    """``145"`` or ``2.4'`` or ``1.2 deg``."""
    arcsec = pad_deg * 3600
    if arcsec < 600:
        return f'{arcsec:.0f}"'
    if arcsec < 3 * 3600:
        return f"{arcsec / 60:.1f}'"
    return f"{pad_deg:.2f} deg"


__all__ = ["LoadRegion", "Selection", "RowFilter", "RegionOutcome", "select", "release_pad", "check_epochs", "piece_key",
           "bulk_range", "hats_pixel", "image_footprint", "DEFAULT_EPOCHS", "SOURCE_ID_MARGIN_DEG",
           "RELEASE_MOTION", "MotionBound"]
