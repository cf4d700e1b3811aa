"""Build tweakwcs correctors from WCSs and catalogs on disk, and write corrected WCSs back.

One job: the common case of ``relative_align``/``absolute_align`` input without the tweakwcs
boilerplate. :func:`make_corrector` takes a WCS (an astropy WCS, a gwcs, or a file: FITS image
or header, FITS header as text, ASDF holding a gwcs) and a source catalog (a Table or any file
``Table.read`` reads) and returns the ``FITSWCSCorrector`` / ``JWSTWCSCorrector`` with its
``meta`` filled in; :func:`write_wcs` writes a corrector's (corrected) WCS in the kind of the
input it came from.

File kinds (:func:`wcs_kind`):

``"fits"``
    A FITS file: the WCS of the primary HDU, else of the first HDU with a celestial WCS
    (SIP and lookup-table distortions honoured). Image size from NAXIS1/NAXIS2, ZNAXIS1/
    ZNAXIS2 (tile-compressed images) or IMAGEW/IMAGEH (header-only files such as
    :func:`write_wcs` writes). Written back as a data-less primary HDU holding the header.
``"header"``
    A FITS header as text (``.hdr``, ``.head``, ``.txt``: one card a line, or raw 80-character
    cards). Written back as text.
``"asdf"``
    An ASDF file with a gwcs under ``wcs``, ``meta.wcs`` (JWST datamodels) or
    ``roman.meta.wcs`` (Roman), and the reference angles (``v2_ref``, ``v3_ref``,
    ``roll_ref``) under ``wcsinfo``, ``meta.wcsinfo`` or ``roman.meta.wcsinfo``. Written back
    as ``{'wcs': gwcs, 'wcsinfo': {...}}``.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from .catalogs import filter_catalog_by_bounding_box, image_sources, read_table
from .errors import ParameterError

__all__ = ["make_corrector", "write_wcs", "read_wcs", "wcs_kind", "WCS_KINDS"]

#: The WCS file kinds :func:`make_corrector` reads and :func:`write_wcs` writes.
WCS_KINDS = ("fits", "header", "asdf")

_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fz", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.bz2", ".imh")
_HEADER_SUFFIXES = (".hdr", ".head", ".txt", ".header")
_ASDF_SUFFIXES = (".asdf",)
_WCSINFO_KEYS = ("v2_ref", "v3_ref", "roll_ref")
# Where JWST/Roman datamodels keep the gwcs and its reference angles in an ASDF tree.
_ASDF_WCS_PATHS = (("wcs",), ("meta", "wcs"), ("roman", "meta", "wcs"))
_ASDF_WCSINFO_PATHS = (("wcsinfo",), ("meta", "wcsinfo"), ("roman", "meta", "wcsinfo"))
_ASDF_TIME_PATHS = (("meta", "exposure", "mid_time"), ("roman", "meta", "exposure", "mid_time"),
                    ("meta", "exposure", "start_time"), ("roman", "meta", "exposure", "start_time"))


# --- file kinds -------------------------------------------------------------------------------

def _suffix_kind(path: str) -> str | None:
    low = path.lower()
    for kind, suffixes in (("fits", _FITS_SUFFIXES), ("header", _HEADER_SUFFIXES), ("asdf", _ASDF_SUFFIXES)):
        if low.endswith(suffixes):
            return kind
    return None


def wcs_kind(path) -> str:
    """The kind of WCS file ``path`` is: ``"fits"``, ``"header"`` or ``"asdf"``.

    An existing file is recognised by its first bytes (FITS ``SIMPLE``, gzip, ``#ASDF``),
    else by its name's ending; a file that is neither FITS nor ASDF is taken as a text header.
    A path that does not exist is judged by its ending only (None of the known ones: an error).
    """
    p = os.fspath(path)
    by_name = _suffix_kind(p)
    if os.path.isfile(p):
        with open(p, "rb") as fh:
            head = fh.read(80)
        if head.startswith(b"#ASDF"):
            return "asdf"
        if head.startswith((b"\x1f\x8b", b"BZh")):  # gzip/bzip2: astropy.io.fits opens them
            return "fits"
        if head.startswith(b"SIMPLE  ="):
            # FITS; unless named as a header (a raw 2880-byte header block is read as text).
            return "header" if by_name == "header" else "fits"
        # Not FITS or ASDF by content: a text header, unless named otherwise (then its reader
        # says what is wrong with it).
        return by_name if by_name in ("fits", "asdf") else "header"
    if by_name is None:
        raise ParameterError(f"{p!r}: cannot tell the WCS file kind from the name (use one of "
                             f"{', '.join(_FITS_SUFFIXES[:3] + _HEADER_SUFFIXES[:2] + _ASDF_SUFFIXES)})")
    return by_name


def _stem(path) -> str:
    """File name without its kind's ending(s): 'a/img_01.fits.gz' -> 'img_01'."""
    name = Path(os.fspath(path)).name
    for comp in (".gz", ".fz", ".bz2"):
        if name.lower().endswith(comp) and len(name) > len(comp):
            name = name[: -len(comp)]
            break
    low = name.lower()
    for suffix in sorted(_FITS_SUFFIXES + _HEADER_SUFFIXES + _ASDF_SUFFIXES, key=len, reverse=True):
        if low.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


# --- reading ----------------------------------------------------------------------------------

def _quiet_wcs(header, fobj=None):
    from astropy.utils.exceptions import AstropyWarning
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # FITSFixedWarning, non-standard cards
        return WCS(header, fobj, relax=True)


def _int_card(header, *names) -> int | None:
    for n in names:
        v = header.get(n)
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0:
            return int(v)
    return None


def _celestial_wcs(header, fobj, what: str):
    """The 2D celestial WCS of a header (None if it has none), its pixel shape set."""
    try:
        w = _quiet_wcs(header, fobj)
    except Exception as exc:  # noqa: BLE001 - astropy/wcslib raise many kinds for malformed headers
        raise ParameterError(f"{what}: cannot read its WCS ({exc})") from None
    if not w.has_celestial:
        return None
    if not w.is_celestial:
        w = w.celestial
    if w.pixel_shape is None:
        # Tile-compressed images seen raw, or header-only files (astrometry.net's and ours).
        nx, ny = _int_card(header, "ZNAXIS1", "IMAGEW"), _int_card(header, "ZNAXIS2", "IMAGEH")
        if nx and ny:
            w.pixel_shape = (nx, ny)
    return w


def _read_fits(path: str):
    from astropy.io import fits

    try:
        hdul = fits.open(path, memmap=False)
    except FileNotFoundError:
        raise ParameterError(f"wcs file {path!r}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - astropy raises many kinds for unreadable files
        raise ParameterError(f"wcs file {path!r}: not a readable FITS file ({exc})") from None
    with hdul:
        for i, hdu in enumerate(hdul):
            w = _celestial_wcs(hdu.header, hdul, f"wcs file {path!r} HDU {i}")
            if w is not None:
                return w
    raise ParameterError(f"wcs file {path!r}: no HDU has a celestial WCS (CTYPE1/2 = RA---xxx/DEC--xxx, "
                         f"CRVAL, CRPIX, CD or PC/CDELT)")


def _read_header_text(path: str):
    from astropy.io import fits

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ParameterError(f"wcs file {path!r}: no such file") from None
    except OSError as exc:
        raise ParameterError(f"wcs file {path!r}: cannot read it ({exc})") from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ParameterError(f"wcs file {path!r}: not a FITS header text file (not ASCII)") from None
    raw_cards = "\n" not in text.rstrip("\n") and len(text) % 80 == 0 and len(text) >= 80
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # VerifyWarning on non-standard cards
            if raw_cards:
                header = fits.Header.fromstring(text)
            else:
                header = fits.Header.fromtextfile(path)
    except Exception as exc:  # noqa: BLE001 - astropy raises many kinds for malformed cards
        raise ParameterError(f"wcs file {path!r}: not a FITS header ({exc})") from None
    if len(header) == 0:
        raise ParameterError(f"wcs file {path!r}: empty header")
    w = _celestial_wcs(header, None, f"wcs file {path!r}")
    if w is None:
        raise ParameterError(f"wcs file {path!r}: the header has no celestial WCS (CTYPE1/2 = "
                             f"RA---xxx/DEC--xxx, CRVAL, CRPIX, CD or PC/CDELT)")
    return w


def _get_path(tree, keys):
    node = tree
    for k in keys:
        try:
            node = node[k]
        except (KeyError, TypeError, IndexError):
            return None
    return node


def _wcsinfo_dict(value, what: str) -> dict:
    try:
        missing = [k for k in _WCSINFO_KEYS if k not in value or value[k] is None]
    except TypeError:
        raise ParameterError(f"{what}: wcsinfo must be a mapping with {', '.join(_WCSINFO_KEYS)}, got "
                             f"{type(value).__name__}") from None
    if missing:
        raise ParameterError(f"{what}: wcsinfo lacks {', '.join(missing)} (needs v2_ref, v3_ref in arcsec and "
                             f"roll_ref in deg)")
    out = {}
    for k in _WCSINFO_KEYS:
        try:
            out[k] = float(value[k])
        except (TypeError, ValueError):
            raise ParameterError(f"{what}: wcsinfo[{k!r}] must be a number, got {value[k]!r}") from None
        if not math.isfinite(out[k]):
            raise ParameterError(f"{what}: wcsinfo[{k!r}] must be finite, got {out[k]}")
    return out


def _read_asdf(path: str):
    import asdf

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown tags (datamodels not installed) -> plain nodes
            af = asdf.open(path, lazy_load=False, memmap=False)
    except FileNotFoundError:
        raise ParameterError(f"wcs file {path!r}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - asdf and its extensions raise many kinds
        raise ParameterError(f"wcs file {path!r}: not a readable ASDF file ({exc})") from None
    with af:
        tree = af.tree
        wcs, where = None, None
        for keys in _ASDF_WCS_PATHS:
            wcs = _get_path(tree, keys)
            if wcs is not None:
                where = ".".join(keys)
                break
        if wcs is None:
            raise ParameterError(f"wcs file {path!r}: no WCS in the ASDF tree (looked for "
                                 f"{', '.join('.'.join(k) for k in _ASDF_WCS_PATHS)})")
        info = None
        for keys in _ASDF_WCSINFO_PATHS:
            node = _get_path(tree, keys)
            if node is not None:
                info = {k: node[k] for k in _WCSINFO_KEYS if k in node}
                break
        epoch = None
        for keys in _ASDF_TIME_PATHS:
            node = _get_path(tree, keys)
            if node is not None:
                epoch = node
                break
    if epoch is not None:
        epoch = _time_to_epoch(epoch)
    return wcs, info, where, epoch


def _time_to_epoch(value):
    """An exposure time from a datamodel (MJD float or astropy Time) -> astropy Time, or None."""
    from astropy.time import Time

    if isinstance(value, Time):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
            and math.isfinite(value) and value > 0:
        return Time(float(value), format="mjd", scale="utc")
    return None


def _fits_wcs_epoch(w):
    """Observation time from a FITS WCS's DATE-AVG/MJD-AVG/DATE-OBS/MJD-OBS, or None."""
    from astropy.time import Time

    wp = w.wcs
    scale = (getattr(wp, "timesys", "") or "utc").strip().lower()
    scale = scale if scale in ("utc", "tt", "tai", "tdb", "tcb", "tcg", "ut1") else "utc"
    for attr in ("mjdavg", "mjdobs"):
        v = getattr(wp, attr, float("nan"))
        if isinstance(v, float) and math.isfinite(v) and v > 0:
            return Time(v, format="mjd", scale=scale)
    for attr in ("dateavg", "dateobs"):
        v = (getattr(wp, attr, "") or "").strip()
        if v:
            try:
                return Time(v, scale=scale)
            except Exception:  # noqa: BLE001 - an unparsable date is no date
                continue
    return None


def read_wcs(source, *, wcsinfo=None):
    """Read a WCS from an object or file.

    Returns
    -------
    (wcs, wcsinfo, kind, epoch)
        ``wcs`` an astropy WCS or a gwcs; ``wcsinfo`` the reference angles dict (gwcs) or None;
        ``kind`` the file kind (see :data:`WCS_KINDS`; ``"fits"`` for an astropy WCS object,
        ``"asdf"`` for a gwcs object); ``epoch`` the observation time the file records
        (astropy Time) or None.
    """
    from astropy.wcs import WCS

    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise ParameterError(f"wcs file {path!r}: no such file")
        if os.path.isdir(path):
            raise ParameterError(f"wcs file {path!r}: is a directory")
        kind = wcs_kind(path)
        if kind == "fits":
            w = _read_fits(path)
            return w, None, kind, _fits_wcs_epoch(w)
        if kind == "header":
            w = _read_header_text(path)
            return w, None, kind, _fits_wcs_epoch(w)
        w, info, where, epoch = _read_asdf(path)
        if isinstance(w, WCS):
            return w, None, kind, epoch or _fits_wcs_epoch(w)
        if not _is_gwcs(w):
            raise ParameterError(f"wcs file {path!r}: {where} is a {type(w).__name__}, not a gwcs or an astropy WCS")
        if wcsinfo is None and (info is None or any(k not in info for k in _WCSINFO_KEYS)):
            info = wcsinfo_from_gwcs(w) or info
        if wcsinfo is None:
            if info is None or any(k not in info for k in _WCSINFO_KEYS):
                have = f" (found {', '.join(sorted(info))})" if info else ""
                raise ParameterError(f"wcs file {path!r}: a gwcs needs wcsinfo with v2_ref, v3_ref, roll_ref: none "
                                     f"in the file under {', '.join('.'.join(k) for k in _ASDF_WCSINFO_PATHS)}"
                                     f"{have}; pass wcsinfo=")
            wcsinfo = info
        return w, _wcsinfo_dict(wcsinfo, f"wcs file {path!r}"), kind, epoch
    if isinstance(source, WCS):
        return source, None, "fits", None
    if _is_gwcs(source):
        wcsinfo = wcsinfo if wcsinfo is not None else wcsinfo_from_gwcs(source)
        if wcsinfo is None:
            raise ParameterError("a gwcs needs wcsinfo with v2_ref, v3_ref, roll_ref (the reference angles, "
                                 "e.g. a JWST datamodel's meta.wcsinfo)")
        return source, _wcsinfo_dict(wcsinfo, "gwcs"), "asdf", None
    raise ParameterError(f"wcs must be an astropy WCS, a gwcs, or a FITS/header/ASDF file path, got "
                         f"{type(source).__name__}")


def wcsinfo_from_gwcs(w) -> dict | None:
    """``v2_ref``, ``v3_ref`` (arcsec) and ``roll_ref`` (deg) read off a JWST/Roman-style gwcs'
    v2v3 -> world transform, or None if it has none such.

    That transform ends in a 3D rotation about the axes z, y, x, y, z by (v2_ref, -v3_ref,
    roll_ref, dec_ref, -ra_ref) degrees (the V2V3 to sky rotation of the JWST pipeline's
    pointing model), so a gwcs saved without its datamodel's wcsinfo still has it."""
    from astropy.modeling.rotations import RotationSequence3D

    try:
        transform = w.get_transform("v2v3", w.output_frame)
    except Exception:  # noqa: BLE001 - no v2v3 frame, or a pipeline gwcs cannot walk
        return None
    n = getattr(transform, "n_submodels", 1)
    parts = [transform[i] for i in range(n)] if n > 1 else [transform]
    for m in parts:
        if isinstance(m, RotationSequence3D) and m.axes_order == "zyxyz" and len(m.angles.value) == 5:
            a = np.asarray(m.angles.value, float)
            return {"v2_ref": float(a[0] * 3600.0), "v3_ref": float(-a[1] * 3600.0), "roll_ref": float(a[2])}
    return None


def _is_gwcs(obj) -> bool:
    try:
        import gwcs
    except ImportError:  # pragma: no cover - gwcs is a dependency
        return False
    return isinstance(obj, gwcs.WCS)


# --- the corrector ----------------------------------------------------------------------------

def make_corrector(wcs, catalog, *, group_id=None, name=None, epoch=None, wcsinfo=None):
    """A tweakwcs corrector for ``wcs`` with ``catalog``, ready for relative/absolute_align.

    Parameters
    ----------
    wcs : astropy.wcs.WCS, gwcs.WCS, str or path
        The image's WCS, or a file holding it: a FITS file (the primary HDU's WCS, else the
        first HDU with a celestial one; SIP and lookup-table distortions honoured), a FITS
        header as text (``.hdr``/``.head``/``.txt``), or an ASDF file with a gwcs (``wcs``,
        ``meta.wcs`` or ``roman.meta.wcs``) and its ``wcsinfo``. An astropy WCS needs its
        image size (``pixel_shape``; from NAXIS1/NAXIS2, ZNAXIS1/ZNAXIS2 or IMAGEW/IMAGEH in
        files).
    catalog : astropy.table.Table, str or path
        The image's sources: ``x``/``y`` or ``xcentroid``/``ycentroid`` (0-based pixels),
        optional ``weight``; a file any ``Table.read`` format reads. Sources outside the
        image's bounding box are dropped.
    group_id : optional
        Images with the same ``group_id`` get one correction (None: the image alone).
    name : str, optional
        Default: the WCS file's name without its ending, else the catalog file's.
    epoch : float, str or astropy.time.Time, optional
        Observation time (Julian year, ISO string, 'J2024.5' or Time) for the absolute
        step's reference positions. Default: the file's DATE-AVG/MJD-AVG/DATE-OBS/MJD-OBS
        (FITS) or ``meta.exposure.mid_time`` (ASDF datamodels), else None.
    wcsinfo : dict, optional
        ``v2_ref``, ``v3_ref`` (arcsec) and ``roll_ref`` (deg) of a gwcs; overrides the file's.
        Default: the file's, else read off the gwcs' v2v3 -> world rotation
        (:func:`wcsinfo_from_gwcs`).

    Returns
    -------
    tweakwcs.correctors.FITSWCSCorrector or JWSTWCSCorrector
        With ``meta`` = {catalog, group_id, name, epoch} (plus ``wcs_kind`` and ``wcs_path``
        when read from a file, which :func:`write_wcs` uses).

    Raises
    ------
    ParameterError
        The WCS (file) cannot be used: unreadable, no celestial WCS, no image size, a gwcs
        without wcsinfo that its transform does not give either, or without a 'v2v3' frame, a
        bad epoch.
    CatalogError
        The catalog cannot be read or lacks the x/y columns.
    """
    from tweakwcs.correctors import FITSWCSCorrector, JWSTWCSCorrector

    wcs_path = os.fspath(wcs) if isinstance(wcs, (str, os.PathLike)) else None
    w, info, kind, file_epoch = read_wcs(wcs, wcsinfo=wcsinfo)
    cat_path = os.fspath(catalog) if isinstance(catalog, (str, os.PathLike)) else None
    if name is None:
        name = _stem(wcs_path) if wcs_path else (_stem(cat_path) if cat_path else None)
    what = f"wcs file {wcs_path!r}" if wcs_path else (f"image {name!r}" if name else "wcs")
    if epoch is None and file_epoch is not None:
        epoch = file_epoch
    if epoch is not None:
        _check_epoch(epoch, what)

    if info is None:
        if w.pixel_shape is None:
            raise ParameterError(f"{what}: the WCS has no image size (NAXIS1/NAXIS2, ZNAXIS1/ZNAXIS2 or "
                                 f"IMAGEW/IMAGEH in a header; pixel_shape on an astropy WCS)")
        try:
            corr = FITSWCSCorrector(w)
        except Exception as exc:  # noqa: BLE001 - tweakwcs: ValueError("Unsupported WCS structure: ...") and others
            raise ParameterError(f"{what}: tweakwcs cannot correct this WCS ({exc})") from None
    else:
        frames = list(getattr(w, "available_frames", []) or [])
        if "v2v3" not in frames:
            raise ParameterError(f"{what}: the gwcs needs a 'v2v3' frame (JWST/Roman style pipeline) for "
                                 f"tweakwcs' JWSTWCSCorrector; its frames are {frames}")
        try:
            corr = JWSTWCSCorrector(w, info)
        except Exception as exc:  # noqa: BLE001 - tweakwcs and gwcs raise many kinds
            msg = exc.args[0] % exc.args[1:] if len(exc.args) > 1 and isinstance(exc.args[0], str) \
                and "%" in exc.args[0] else str(exc)
            raise ParameterError(f"{what}: tweakwcs cannot correct this gwcs ({msg})") from None

    cat_what = f"catalog {cat_path!r}" if cat_path else (f"catalog of {name!r}" if name else "catalog")
    table = read_table(catalog, "catalog")
    image_sources(table, cat_what)  # the columns are there and usable (clear error naming the file)
    try:
        bbox = corr.bounding_box
    except Exception:  # noqa: BLE001 - a WCS without shape: no filtering, as stcal
        bbox = None
    table = filter_catalog_by_bounding_box(table, bbox)
    corr.meta.update({"catalog": table, "group_id": group_id, "name": name, "epoch": epoch})
    if wcs_path is not None:
        corr.meta["wcs_path"] = wcs_path
        corr.meta["wcs_kind"] = kind
    if cat_path is not None:
        corr.meta["catalog_path"] = cat_path
    return corr


def apply_correction(wcs, correction: dict):
    """A recorded tangent-plane correction applied to the WCS it corrects, as the fit applied it.

    Parameters
    ----------
    wcs : gwcs.WCS
        The WCS the correction was made for (it is changed in place).
    correction : dict
        A parsed correction document (:mod:`astrodb.provenance.corrections`): ``method``
        ``'tweakwcs-tangent-plane'``, ``wcsinfo``, ``tangent_point``, ``matrix``, ``shift``.

    Returns
    -------
    gwcs.WCS
        The corrected WCS (tweakwcs' ``JWSTWCSCorrector.set_correction`` with the fit's plane as
        ``ref_tpwcs``, exactly what :func:`aligner.outcome.apply` does).

    Raises
    ------
    ValueError
        A method this aligner does not know.
    """
    from astrodb.provenance.corrections import TANGENT_PLANE
    from tweakwcs.correctors import JWSTWCSCorrector

    from .plane import TangentPlane

    if correction.get("method") != TANGENT_PLANE:
        raise ValueError(f"recorded WCS correction by method {correction.get('method')!r}: this aligner "
                         f"applies {TANGENT_PLANE!r}")
    corrector = JWSTWCSCorrector(wcs, correction["wcsinfo"])
    corrector.set_correction(matrix=np.asarray(correction["matrix"], float),
                             shift=np.asarray(correction["shift"], float),
                             ref_tpwcs=TangentPlane(*correction["tangent_point"]).corrector())
    return corrector.wcs


def _check_epoch(epoch, what: str) -> None:
    from astrodb.epoch import to_julian_year

    try:
        jy = to_julian_year(epoch)
    except Exception:  # noqa: BLE001 - astropy Time raises several kinds
        jy = None
    if jy is None or np.ndim(jy) != 0 or not math.isfinite(float(jy)):
        raise ParameterError(f"{what}: epoch must be a Julian year (2024.5), 'J2024.5', an ISO time or an "
                             f"astropy Time, got {epoch!r}")


# --- writing ----------------------------------------------------------------------------------

def _like_kind(like, corrector, path: str) -> str:
    if like is None:
        like = corrector.meta.get("wcs_kind") if hasattr(corrector, "meta") else None
    if isinstance(like, str) and like.lower() in WCS_KINDS:
        return like.lower()
    if like is not None:
        p = os.fspath(like)
        if os.path.exists(p):
            return wcs_kind(p)
        k = _suffix_kind(p)
        if k is not None:
            return k
    k = _suffix_kind(path)
    if k is not None:
        return k
    return "asdf" if _is_gwcs(corrector.wcs) else "fits"


def write_wcs(corrector, path, like=None, *, overwrite: bool = True) -> Path:
    """Write ``corrector.wcs`` (the corrected WCS) to ``path`` in the kind of ``like``.

    Parameters
    ----------
    corrector : tweakwcs corrector
        As returned by :func:`make_corrector` (after alignment).
    path : str or path
        Where to write.
    like : str, path or None
        The input WCS file (its kind is kept), or a kind: ``"fits"`` (a data-less primary HDU
        holding ``wcs.to_header(relax=True)`` with SIP, IMAGEW/IMAGEH for the image size, and
        lookup-table distortion extensions if any), ``"header"`` (the same header as text,
        with NAXIS1/NAXIS2) or ``"asdf"`` (``{'wcs': gwcs, 'wcsinfo': {v2_ref, v3_ref,
        roll_ref}}``). Default: the kind the corrector was read from, else from ``path``'s
        ending, else by the WCS's type.
    overwrite : bool
        Replace an existing file (default True).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    from astropy.wcs import WCS

    out = Path(os.fspath(path))
    kind = _like_kind(like, corrector, os.fspath(path))
    w = corrector.wcs
    if out.exists() and not overwrite:
        raise ParameterError(f"{out}: exists (overwrite=False)")
    if kind in ("fits", "header"):
        if not isinstance(w, WCS):
            raise ParameterError(f"{out}: a {type(w).__name__} cannot be written as a FITS header; write ASDF")
        shape = w.pixel_shape
        if kind == "fits":
            hdul = w.to_fits(relax=True)
            hdr = hdul[0].header
            if shape is not None:
                hdr["IMAGEW"] = (int(shape[0]), "image width (NAXIS1 of the image)")
                hdr["IMAGEH"] = (int(shape[1]), "image height (NAXIS2 of the image)")
            hdr.add_history("WCS corrected by aligner")
            hdul.writeto(out, overwrite=True, output_verify="fix")
        else:
            if any(getattr(w, a, None) is not None for a in ("cpdis1", "cpdis2", "det2im1", "det2im2")):
                raise ParameterError(f"{out}: the WCS has lookup-table distortions, which a text header cannot "
                                     f"hold; write FITS")
            from astropy.io import fits

            hdr = fits.Header()
            if shape is not None:
                hdr["NAXIS"] = 2
                hdr["NAXIS1"] = int(shape[0])
                hdr["NAXIS2"] = int(shape[1])
            hdr.extend(w.to_header(relax=True))
            hdr.add_history("WCS corrected by aligner")
            hdr.totextfile(out, overwrite=True)
        return out
    import asdf

    info = None
    if hasattr(corrector, "ref_angles"):
        info = dict(corrector.ref_angles)
    tree = {"wcs": w}
    if info is not None:
        tree["wcsinfo"] = {k: float(v) for k, v in info.items()}
    asdf.AsdfFile(tree).write_to(out)
    return out
