"""The ``aligner`` command: align the WCSs of the images a manifest lists.

``aligner align-batch BATCH -o OUTDIR [options]`` does it for many manifests, each a task on a
Dask cluster (:mod:`aligner.batch`).

``aligner align MANIFEST -o OUTDIR [options]`` reads each image's WCS and source catalog
(:func:`aligner.correctors.make_corrector`), aligns the images to each other
(:func:`aligner.relative_align`, when there is more than one group) and then to a reference
catalog (:func:`aligner.absolute_align`, with ``--abs-refcat``), and writes to OUTDIR, per
image, the corrected WCS (same file name and kind as its input; only images that were aligned)
and a fit report (``<name>_fit.ecsv``: one row per step; ``<name>_fit.json``: every result).
A summary goes to stdout; progress to stderr when it is a terminal.

Every option of relative_align/absolute_align is an option here, with the function's default
(read from its signature). Exit status: 0 all images aligned, 2 bad input or parameters (one
line "aligner: error: ..." on stderr), 3 some images not aligned, 1 an unexpected failure.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astrodb.config import ENV_URL
from astrodb.gaia_names import store_catalog

from .align import absolute_align, relative_align
from .epochs import epoch_runs
from .errors import AlignerError, AlignmentError, ParameterError
from .parameters import AbsoluteParameters, RelativeParameters
from .results import FitResult

__all__ = ["main"]

PROG = "aligner"

_REL = inspect.signature(relative_align).parameters
_ABS = inspect.signature(absolute_align).parameters

# Help for each relative_align/absolute_align parameter exposed as an option (the option is
# the name with '-' for '_'; type and default come from the function's signature).
_REL_OPTIONS = {
    "searchrad": "search radius (arcsec) of the 2D-histogram offset search",
    "separation": "sources closer than this (arcsec) to another of the same group are not used; must "
                  "exceed sqrt(2) x tolerance",
    "use2dhist": "find the initial offset with a 2D histogram (else use --xoffset/--yoffset)",
    "tolerance": "matching radius (arcsec) after the offset",
    "xoffset": "initial offset guess east (arcsec)",
    "yoffset": "initial offset guess north (arcsec)",
    "enforce_user_order": "the manifest's first group is the reference; align groups in manifest order",
    "expand_refcat": "match each group against every group already placed, not only the reference group",
    "minobj": "fewest matches a group needs",
    "fitgeometry": "fit geometry",
    "nclip": "sigma-clipping rounds",
    "sigma": "clipping limit in units of the rmse",
    "clip_accum": "clipped matches stay clipped in later rounds (both steps)",
    "max_chance": "largest accepted probability that a group's matches arise by chance (both steps)",
    "brightest": "use only this many of the brightest sources of each image (both steps; default: all)",
    "flux_column": "the image catalogs' flux column for --brightest",
}
_ABS_OPTIONS = {
    "abs_searchrad": "search radius (arcsec) of the offset search against the reference",
    "abs_separation": "reference and image sources closer than this (arcsec) to another are not used; must "
                      "exceed sqrt(2) x abs-tolerance",
    "abs_use2dhist": "find the initial offsets with a 2D histogram",
    "abs_tolerance": "matching radius (arcsec) against the reference",
    "abs_minobj": "fewest matches to the reference",
    "abs_fitgeometry": "fit geometry",
    "abs_nclip": "sigma-clipping rounds",
    "abs_sigma": "clipping limit in units of the rmse",
    "save_abs_catalog": "write the reference catalog used to OUTDIR (fit_<refcat>_ref.ecsv)",
    "epoch": "observation time for the reference positions (Julian year 2024.5, J2024.5 or ISO time); "
             "default: the images' times (manifest epoch/time, else the WCS files' DATE-OBS...)",
    "centroid_error": "typical image centroid error (mas) against which store reference errors are weighed",
    "abs_mag_min": "use only reference stars at least this faint (magnitude; default: no limit)",
    "abs_mag_max": "use only reference stars at least this bright (magnitude; default: no limit)",
    "abs_brightest": "then use only this many of the brightest reference stars over the images (default: all)",
    "abs_mag_column": "the reference's magnitude column for these",
}
#: Types of the options whose default is None.
_TYPES = {"brightest": int, "abs_brightest": int, "abs_mag_min": float, "abs_mag_max": float}
_MANIFEST_KEYS = ("wcs", "catalog", "group_id", "epoch", "time", "name", "wcsinfo",
                  "v2_ref", "v3_ref", "roll_ref")

_EPILOG = """\
manifest:
  JSON {"images": [{"wcs": PATH, "catalog": PATH, "group_id": ID, "epoch": T, "name": NAME}, ...]}
  (or just the list), or a table any astropy Table.read format reads (ECSV, FITS, ...) with
  columns wcs, catalog and optional group_id, epoch (or time), name, v2_ref, v3_ref, roll_ref.
  Relative paths are relative to the manifest's directory.
  wcs: a FITS image/header file, a FITS header as text (.hdr/.head/.txt), or an ASDF file with a
       gwcs (wcs, meta.wcs) and its wcsinfo (v2_ref, v3_ref, roll_ref; or give them in the manifest).
  catalog: x/y (or xcentroid/ycentroid) 0-based pixels, optional weight; any Table.read format.
  group_id: images with the same id get one correction (default: each image alone).
  epoch/time: observation time: Julian year (2024.5), MJD (a number >= 10000), 'J2024.5' or ISO.

outputs (in OUTDIR, per aligned image): the corrected WCS (same file name and kind as the input);
  per image: <name>_fit.ecsv (one row per step) and <name>_fit.json (FitResult.to_dict() per step).

exit status: 0 all aligned, 2 bad input/parameters, 3 some images not aligned, 1 unexpected failure.
"""


class _UsageError(Exception):
    """A command-line usage error (argparse's), reported in one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        """Raise a :class:`_UsageError` instead of printing the usage and exiting."""
        raise _UsageError(f"{message} (see '{self.prog} --help')")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Raw description/epilog; "(default: X)" after the options that have a default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" not in text and action.default not in (None, argparse.SUPPRESS) and action.option_strings \
                and not isinstance(action, (argparse._StoreFalseAction, argparse._StoreTrueAction)):
            text += " (default: %(default)s)"
        return text


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_option(group, name: str, params, help_text: str) -> None:
    default = params[name].default
    if default is None and name in _TYPES:
        group.add_argument(_flag(name), dest=name, type=_TYPES[name], default=None,
                           metavar="N" if _TYPES[name] is int else "MAG", help=help_text)
    elif isinstance(default, bool):
        group.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction, default=default,
                           help=help_text)
    elif name.endswith("fitgeometry"):
        from .fit import NPARAMS

        group.add_argument(_flag(name), dest=name, choices=list(NPARAMS), default=default, help=help_text)
    elif isinstance(default, int):
        group.add_argument(_flag(name), dest=name, type=int, default=default, metavar="N", help=help_text)
    elif isinstance(default, float):
        group.add_argument(_flag(name), dest=name, type=float, default=default, metavar="X", help=help_text)
    else:
        group.add_argument(_flag(name), dest=name, default=default, metavar="VALUE", help=help_text)


def _add_align_options(a) -> None:
    """The alignment options of ``aligner align`` (also those of ``align-batch``)."""
    rel = a.add_argument_group("relative alignment (aligner.relative_align)")
    rel.add_argument("--no-relative", dest="relative", action="store_false",
                     help="skip the relative step")
    for name, text in _REL_OPTIONS.items():
        _add_option(rel, name, _REL, text)
    ab = a.add_argument_group("absolute alignment (aligner.absolute_align)")
    ab.add_argument("--abs-refcat", metavar="GAIADR3|PATH|CATALOG", default=None,
                    help="reference catalog: GAIADR1/GAIADR2/GAIADR3 (also GAIAREFCAT, GAIADR3_S3) from the "
                    "astrodb store, else a file with RA/DEC (deg) any Table.read format reads, else the name "
                    "of a catalog in the store; no absolute step without it")
    ab.add_argument("--store", metavar="URL", default=None,
                    help="astrodb store URL (default $ASTRODB_URL, else the local store for the store's "
                    "catalogs); every run (both steps, any reference) is recorded in its provenance tables "
                    "when --store or $ASTRODB_URL names one, or when the reference comes from the store")
    ab.add_argument("--record-store", metavar="URL", default=None,
                    help="where the runs are recorded when --store is an astrodb service (http(s)://, read "
                    "only): default $ASTRODB_URL when it names a database, else the local store")
    ab.add_argument("--no-provenance", dest="provenance", action="store_false",
                    help="do not record the runs in the store's provenance tables")
    for name, text in _ABS_OPTIONS.items():
        _add_option(ab, name, _ABS, text)


_BATCH_EPILOG = """\
batch:
  a folder of manifests (each one association, named by its file's stem; manifests as for
  'aligner align') or one table with an association column and the manifest columns.

outputs: OUTDIR/<association>/ holds what 'aligner align' writes for it; OUTDIR/batch_summary.ecsv
  the summary (association, status, images, aligned, rmse_mas, seconds, worker, note).

provenance: the workers only read the store; this client records each association's runs once,
  keyed by the sha256 of its manifest, its inputs, the parameters and the software versions. A
  rerun skips the associations recorded as aligned (--force aligns them again).

exit status: 0 all aligned, 2 bad input/parameters, 3 some associations not (wholly) aligned,
  1 unexpected failure.
"""


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Align image WCSs (FITS WCS and gwcs) to each other and to a reference "
                "catalog, tweakreg style (relative_align, absolute_align).", formatter_class=_Formatter,
                epilog="run 'aligner align --help' for the alignment options and the manifest format")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    a = sub.add_parser("align", help="align the images a manifest lists and write corrected WCSs and reports",
                       description="Align the images MANIFEST lists: relative alignment (if there is more than "
                       "one group and not --no-relative), then absolute alignment (with --abs-refcat). "
                       "Defaults are those of aligner.relative_align/absolute_align.",
                       formatter_class=_Formatter, epilog=_EPILOG)
    a.add_argument("manifest", metavar="MANIFEST", help="JSON or table file listing the images (see below)")
    a.add_argument("-o", "--outdir", required=True, metavar="OUTDIR",
                   help="output directory (created if needed)")
    _add_align_options(a)
    b = sub.add_parser("align-batch", help="align many associations (a folder of manifests, or a table with an "
                       "association column), each as one task on a Dask cluster",
                       description="Align every association of BATCH as 'aligner align' aligns one manifest, "
                       "each as a task on a Dask cluster (a local one by default), recording each once.",
                       formatter_class=_Formatter, epilog=_BATCH_EPILOG)
    b.add_argument("batch", metavar="BATCH", help="folder of manifests, or a table with an association column")
    b.add_argument("-o", "--outdir", required=True, metavar="OUTDIR", help="output directory (created if needed)")
    b.add_argument("--association-column", default="association", metavar="NAME",
                   help="a table's association column")
    b.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                   help="a running Dask scheduler (default: a local cluster)")
    b.add_argument("--workers", type=int, default=None, metavar="N",
                   help="the local cluster's worker processes (default: one per core)")
    b.add_argument("--force", action="store_true",
                   help="align again the associations the store records as aligned")
    _add_align_options(b)
    return p


# --- manifest ---------------------------------------------------------------------------------

@dataclass
class _Entry:
    index: int
    wcs: str
    catalog: str
    group_id: object = None
    epoch: object = None
    name: str | None = None
    wcsinfo: dict | None = None


def _plain(v):
    """A manifest cell as a plain Python value; masked/NaN/empty -> None."""
    if v is None or v is np.ma.masked:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, str) and not v.strip():
        return None
    return v


def _epoch_value(v, where: str):
    """A manifest epoch/time: Julian year (1000-3000), MJD (>= 10000), 'J2024.5' or ISO -> Julian year."""
    from astropy.time import Time

    from astrodb.epoch import to_julian_year

    v = _plain(v)
    if v is None:
        return None
    if isinstance(v, bool):
        raise ParameterError(f"{where}: epoch must be a time, got {v!r}")
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            try:
                return float(to_julian_year(v))
            except Exception:  # noqa: BLE001 - astropy Time raises several kinds
                raise ParameterError(f"{where}: epoch {v!r} is not a Julian year, MJD, 'J2024.5' or ISO "
                                     f"time") from None
    if isinstance(v, (int, float)):
        if 1000.0 <= v < 3000.0:
            return float(v)
        if v >= 10000.0:
            return float(Time(float(v), format="mjd", scale="utc").tdb.jyear)
        raise ParameterError(f"{where}: epoch {v!r} is neither a Julian year (1000-3000) nor an MJD (>= 10000)")
    raise ParameterError(f"{where}: epoch must be a number or a string, got {type(v).__name__}")


def _entry(i: int, raw: dict, base: Path, manifest: str, unknown: set) -> _Entry:
    where = f"manifest {manifest!r} image {i}"
    for key in ("wcs", "catalog"):
        v = _plain(raw.get(key))
        if v is None:
            raise ParameterError(f"{where}: no {key!r} (each image needs 'wcs' and 'catalog' file paths)")
        if not isinstance(v, str):
            raise ParameterError(f"{where}: {key!r} must be a file path, got {v!r}")
    unknown.update(k for k in raw if k not in _MANIFEST_KEYS)
    if _plain(raw.get("epoch")) is not None and _plain(raw.get("time")) is not None:
        raise ParameterError(f"{where}: give 'epoch' or 'time', not both")
    epoch = _epoch_value(raw.get("epoch") if _plain(raw.get("epoch")) is not None else raw.get("time"), where)
    info = raw.get("wcsinfo")
    if info is None and any(_plain(raw.get(k)) is not None for k in ("v2_ref", "v3_ref", "roll_ref")):
        info = {k: _plain(raw.get(k)) for k in ("v2_ref", "v3_ref", "roll_ref")}
    if info is not None and not isinstance(info, dict):
        raise ParameterError(f"{where}: 'wcsinfo' must be an object with v2_ref, v3_ref, roll_ref")
    name = _plain(raw.get("name"))
    gid = _plain(raw.get("group_id"))
    if gid is not None and not isinstance(gid, (str, int, float)):
        raise ParameterError(f"{where}: 'group_id' must be a string or a number, got {gid!r}")
    wcs, cat = (str(base / Path(_plain(raw[k])).expanduser()) for k in ("wcs", "catalog"))
    return _Entry(i, wcs, cat, gid, epoch,
                  None if name is None else str(name), info)


def read_manifest(path) -> list[_Entry]:
    """The images a manifest lists (JSON object/list, or a table), paths made absolute."""
    from astropy.table import Table

    p = Path(os.fspath(path))
    if not p.is_file():
        raise ParameterError(f"manifest {str(p)!r}: no such file" if not p.exists() else
                             f"manifest {str(p)!r}: not a file")
    base = p.resolve().parent
    with open(p, "rb") as fh:
        start = fh.read(4096).lstrip()
    rows: list[dict]
    if p.suffix.lower() == ".json" or start[:1] in (b"{", b"["):
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParameterError(f"manifest {str(p)!r}: not valid JSON ({exc})") from None
        items = doc.get("images") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise ParameterError(f"manifest {str(p)!r}: expected {{\"images\": [...]}} or a list of images")
        for i, it in enumerate(items):
            if not isinstance(it, dict):
                raise ParameterError(f"manifest {str(p)!r} image {i}: expected an object with 'wcs' and "
                                     f"'catalog', got {it!r}")
        rows = items
    else:
        try:
            t = Table.read(p)
        except Exception as exc:  # noqa: BLE001 - astropy raises many kinds
            raise ParameterError(f"manifest {str(p)!r}: cannot read it as JSON or a table ({exc})") from None
        missing = [c for c in ("wcs", "catalog") if c not in t.colnames]
        if missing:
            raise ParameterError(f"manifest {str(p)!r}: no column {' or '.join(repr(c) for c in missing)} "
                                 f"(columns: {', '.join(t.colnames)})")
        rows = [{c: row[c] for c in t.colnames} for row in t]
    if not rows:
        raise ParameterError(f"manifest {str(p)!r}: lists no images")
    unknown: set = set()
    entries = [_entry(i, r, base, str(p), unknown) for i, r in enumerate(rows)]
    if unknown:
        warnings.warn(f"manifest {str(p)!r}: ignoring unknown keys {', '.join(sorted(map(str, unknown)))} "
                      f"(known: {', '.join(_MANIFEST_KEYS)})", UserWarning, stacklevel=2)
    return entries


# --- running ----------------------------------------------------------------------------------

@dataclass
class _Image:
    entry: _Entry
    corrector: object
    name: str
    output: Path
    report: str                                   # report base name in OUTDIR
    steps: list = field(default_factory=list)    # FitResult per step run

    @property
    def final(self) -> FitResult | None:
        """The result of the last step run, if any."""
        return self.steps[-1] if self.steps else None

    @property
    def ok(self) -> bool:
        """True when the last step aligned the image (or kept it as the reference)."""
        return self.final is not None and self.final.ok


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def _groups(correctors) -> int:
    keys = {("image", i) if c.meta.get("group_id") is None else ("id", c.meta["group_id"])
            for i, c in enumerate(correctors)}
    return len(keys)


def _check_parameters(args, do_rel: bool, do_abs: bool):
    """Validate every parameter before any work; returns the store that holds the reference and
    records the runs (or None)."""
    from . import refcat as refcats
    from . import selection
    from .significance import check_max_chance

    check_max_chance(args.max_chance)
    selection.check(args.brightest, args.flux_column, args.abs_brightest, args.abs_mag_min, args.abs_mag_max,
                    args.abs_mag_column)
    # Building a step's parameter set validates it.
    if do_rel:
        RelativeParameters.from_mapping(vars(args))
    if do_abs:
        AbsoluteParameters.from_mapping(vars(args))
        if not (math.isfinite(args.centroid_error) and args.centroid_error > 0):
            raise ParameterError(f"centroid-error must be > 0 mas, got {args.centroid_error!r}")
        if args.epoch is not None:
            from astrodb.epoch import to_julian_year

            try:
                to_julian_year(args.epoch)
            except Exception:  # noqa: BLE001 - astropy Time raises several kinds
                raise ParameterError(f"--epoch must be a Julian year (2024.5), 'J2024.5' or an ISO time, got "
                                     f"{args.epoch!r}") from None
        if not refcats.from_store(args.abs_refcat) and not os.path.isfile(args.abs_refcat):
            raise ParameterError(f"--abs-refcat {args.abs_refcat!r} is neither a known catalog name "
                                 f"({', '.join(refcats.GAIA_NAMES)}) nor an existing file")
        if refcats.from_store(args.abs_refcat):
            # Open the store and find the catalog now, not after the relative step.
            import astrodb

            store = _open_store(args)
            name = args.abs_refcat.strip()
            catalog = store_catalog(name) or name
            try:
                store.catalog(catalog)
            except astrodb.CatalogNotFoundError:
                gaia = name.upper() if refcats.is_store_name(name) else None
                raise ParameterError(refcats.missing_catalog(store, catalog, gaia, "--abs-refcat")) from None
            return store
    if args.provenance and (args.store or os.environ.get(ENV_URL)):
        # A named store records every run, also with a file reference or no absolute step.
        return _open_store(args)
    return None


def _open_store(args):
    """The store of --store, else $ASTRODB_URL, else the local one (initialized if new); a batch
    worker's ``args.open_store`` opens it instead (one per process)."""
    import astrodb

    if getattr(args, "open_store", None) is not None:
        return args.open_store(args.store)
    store = astrodb.connect(args.store)
    if not args.store and not os.environ.get(ENV_URL):
        _init_if_new(store)
    return store


def _init_if_new(store):
    """The local store, its tables made if it is new."""
    import astrodb

    try:
        store.catalogs()
    except astrodb.ConfigError:
        store.init()
    return store


def _run_step(images: list[_Image], step: str, func, correctors, kwargs) -> None:
    """Run one alignment step, recording each image's FitResult (failures included)."""
    for c in correctors:
        c.meta.pop("fit_result", None)
        c.meta.pop("fit_info", None)
    error = None
    try:
        func(correctors, **kwargs)
    except AlignmentError as exc:
        error = str(exc)
    by_corrector = {id(im.corrector): im for im in images}
    for c in correctors:
        im = by_corrector[id(c)]
        r = c.meta.get("fit_result")
        if not isinstance(r, FitResult):
            r = FitResult(name=im.name, group_id=c.meta.get("group_id"), status=f"FAILED: {error or 'no result'}",
                          message=error or "no result", step=step)
        im.steps.append(r)


def _jyear(e) -> float | None:
    from astrodb.epoch import to_julian_year

    if e is None:
        return None
    return float(to_julian_year(e))


def _epoch_runs(images: list[_Image]) -> list[tuple[float | None, list[_Image]]]:
    """:func:`aligner.epoch_runs` of the images' correctors, as runs of the images."""
    by_corrector = {id(im.corrector): im for im in images}
    return [(jy, [by_corrector[id(c)] for c in cs]) for jy, cs in epoch_runs([im.corrector for im in images])]


def record_store(args):
    """The database that records the runs when the reference store is an astrodb service (read
    only, over HTTP): ``--record-store``, else ``$ASTRODB_URL`` when it names a database, else the
    local store (initialized if new)."""
    import astrodb
    from astrodb.config import default_sqlite_path
    from astrodb.store.remote import is_service_url

    env = os.environ.get(ENV_URL)
    url = args.record_store or (env if env and not is_service_url(env) else None)
    if is_service_url(url):
        raise ParameterError(f"--record-store must name a database (postgresql://... or an SQLite file), "
                             f"not a service: {url!r}")
    if url is None:
        default_sqlite_path().parent.mkdir(parents=True, exist_ok=True)
    store = astrodb.connect(url or str(default_sqlite_path()))
    return _init_if_new(store) if url is None else store


def _provenance(args, store):
    """``provenance`` for the steps: the flag itself, or, for a store read through an astrodb
    service, a sink that writes each run's record into :func:`record_store`."""
    if not args.provenance or callable(args.provenance) or getattr(store, "backend", None) != "http":
        return args.provenance
    from astrodb.provenance import record_run

    target = record_store(args)
    return lambda run: record_run(target, run)


def _align(args, images: list[_Image], progress: _Progress, outdir: Path, store) -> None:
    from . import refcat as refcats

    provenance = _provenance(args, store)
    correctors = [im.corrector for im in images]
    ngroups = _groups(correctors)
    do_rel = args.relative and ngroups > 1
    if do_rel:
        progress(f"relative alignment of {len(images)} image(s) in {ngroups} group(s)")
        kw = {k: getattr(args, k) for k in _REL_OPTIONS}
        if store is not None:  # a store records the run's provenance
            kw.update(store=store, provenance=provenance)
        _run_step(images, "relative", relative_align, correctors, kw)
    if args.abs_refcat:
        kw = {k: getattr(args, k) for k in _ABS_OPTIONS if k != "epoch"}
        kw.update(abs_refcat=args.abs_refcat, clip_accum=args.clip_accum, max_chance=args.max_chance,
                  brightest=args.brightest, flux_column=args.flux_column, store=store,
                  abs_catalog_output_dir=str(outdir), provenance=provenance)
        if args.epoch is not None:
            runs = [(args.epoch, images)]
        elif refcats.from_store(args.abs_refcat):
            runs = _epoch_runs(images)
        else:  # a file's positions are used as they are: one run (epoch only recorded)
            jys = [j for j in (_jyear(im.corrector.meta.get("epoch")) for im in images) if j is not None]
            runs = [(float(np.mean(jys)) if jys else None, images)]
        for k, (epoch, ims) in enumerate(runs):
            when = "" if epoch is None else f" at epoch {epoch if isinstance(epoch, str) else f'{epoch:.4f}'}"
            progress(f"absolute alignment of {len(ims)} image(s) against {args.abs_refcat}{when}"
                     + (f" (epoch run {k + 1}/{len(runs)})" if len(runs) > 1 else ""))
            run_kw = dict(kw, epoch=epoch)
            if len(runs) > 1 and args.save_abs_catalog:
                run_kw["abs_catalog_output_dir"] = str(outdir / f"refcat_epoch{k + 1}")
            _run_step(ims, "absolute", absolute_align, [im.corrector for im in ims], run_kw)


# --- reports ----------------------------------------------------------------------------------

def _json_safe(v):
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, np.ndarray):
        return _json_safe(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def _report_table(im: _Image):
    from astropy.table import Table

    rows = im.steps
    t = Table()
    t["step"] = [r.step for r in rows]
    t["status"] = [r.status.split(":", 1)[0] for r in rows]
    t["message"] = [r.message or "" for r in rows]
    t["fitgeometry"] = [r.fitgeometry for r in rows]
    t["nmatches"] = np.array([r.nmatches for r in rows], np.int64)
    t["nref"] = np.array([r.nref for r in rows], np.int64)
    t["rmse"] = np.array([r.rmse for r in rows], float)
    t["mae"] = np.array([r.mae for r in rows], float)
    t["xshift"] = np.array([float(np.asarray(r.shift)[0]) for r in rows], float)
    t["yshift"] = np.array([float(np.asarray(r.shift)[1]) for r in rows], float)
    t["rotation"] = np.array([r.rotation for r in rows], float)
    t["scale"] = np.array([r.scale for r in rows], float)
    t["skew"] = np.array([r.skew for r in rows], float)
    t["matrix"] = np.array([np.asarray(r.matrix, float).reshape(2, 2) for r in rows]).reshape(len(rows), 2, 2)
    for c in ("rmse", "mae", "xshift", "yshift"):
        t[c].unit = "arcsec"
    for c in ("rotation", "skew"):
        t[c].unit = "deg"
    t.meta.update(_json_safe({"name": im.name, "wcs": im.entry.wcs, "catalog": im.entry.catalog,
                              "group_id": im.entry.group_id if im.entry.group_id is not None
                              else im.corrector.meta.get("group_id"),
                              "epoch": _jyear(im.corrector.meta.get("epoch")),
                              "output": str(im.output) if im.ok else None,
                              "status": im.final.status if im.final else "NOT RUN",
                              "references": [r.reference for r in rows if r.reference]}))
    t.meta["description"] = ("Fit report of the aligner: one row per step. Shifts and residuals are arcsec in "
                             "the fit's tangent plane; rotation/skew deg; status SUCCESS, REFERENCE (the "
                             "relative frame, unchanged) or FAILED (WCS unchanged; see message).")
    return t


def _write_reports(im: _Image, outdir: Path) -> None:
    _report_table(im).write(outdir / f"{im.report}_fit.ecsv", format="ascii.ecsv", overwrite=True)
    doc = {"name": im.name, "wcs": im.entry.wcs, "catalog": im.entry.catalog,
           "group_id": im.corrector.meta.get("group_id"), "epoch": _jyear(im.corrector.meta.get("epoch")),
           "output": str(im.output) if im.ok else None,
           "status": im.final.status if im.final else "NOT RUN",
           "steps": [r.to_dict() for r in im.steps]}
    (outdir / f"{im.report}_fit.json").write_text(json.dumps(_json_safe(doc), indent=1) + "\n", encoding="utf-8")


def _summary(images: list[_Image], outdir: Path) -> str:
    steps = []
    for im in images:
        for r in im.steps:
            if r.step not in steps:
                steps.append(r.step)
    head = ["image", "group"] + steps + ["matches", "rmse_mas", "output"]
    lines = []
    for im in images:
        by = {r.step: r for r in im.steps}
        fin = im.final
        gid = im.corrector.meta.get("group_id")
        cells = [im.name, "" if gid is None else str(gid)]
        cells += [by[s].status.split(":", 1)[0] if s in by else "-" for s in steps]
        cells += [str(fin.nmatches) if fin else "-",
                  f"{fin.rmse * 1000:.2f}" if fin and math.isfinite(fin.rmse) else "-",
                  im.output.name if im.ok else "-"]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    out = [fmt.format(*head)] + [fmt.format(*c) for c in lines]
    n_ok = sum(im.ok for im in images)
    out.append(f"{n_ok} of {len(images)} image(s) aligned; outputs and reports in {outdir}")
    for im in images:
        for r in im.steps:
            if not r.ok:
                out.append(f"  {im.name}: {r.step} {r.status}")
    return "\n".join(out)


# --- main -------------------------------------------------------------------------------------

def _one_line(text) -> str:
    return " ".join(str(text).split())


def _show_warnings(caught, shown: set) -> None:
    from astropy.utils.exceptions import AstropyWarning

    for w in caught:
        if issubclass(w.category, (AstropyWarning, DeprecationWarning, PendingDeprecationWarning)):
            continue
        msg = _one_line(w.message)
        if msg not in shown:
            shown.add(msg)
            print(f"{PROG}: warning: {msg}", file=sys.stderr)


def _real(path) -> str:
    return os.path.normcase(os.path.realpath(os.fspath(path)))


def run_manifest(args, entries: list[_Entry], progress, shown: set) -> list[_Image]:
    """Align the images ``entries`` lists as ``aligner align`` does with the options ``args``,
    writing the corrected WCSs and reports to ``args.outdir``; returns the images with the
    results of their steps. Raises ParameterError for bad inputs or parameters, before any work."""
    from .correctors import _stem, make_corrector, write_wcs

    outdir = Path(args.outdir)
    images: list[_Image] = []
    seen: dict[str, int] = {}
    for e in entries:
        out = outdir / Path(e.wcs).name
        for key in (os.path.normcase(str(out.resolve())), "report:" + _stem(e.wcs)):
            if key in seen:
                raise ParameterError(f"manifest images {seen[key]} and {e.index} would both write "
                                     f"{_stem(e.wcs)!r} files in OUTDIR: give their WCS files different names")
            seen[key] = e.index
    # Nothing written may replace an input (an image, a catalog, the manifest, the reference).
    inputs = {_real(p): p for e in entries for p in (e.wcs, e.catalog)}
    inputs.update({_real(p): p for p in (args.manifest, args.abs_refcat) if p and os.path.exists(p)})
    for e in entries:
        for out in (outdir / Path(e.wcs).name, outdir / f"{_stem(e.wcs)}_fit.ecsv",
                    outdir / f"{_stem(e.wcs)}_fit.json"):
            if _real(out) in inputs:
                raise ParameterError(f"output {str(out)!r} would replace the input {inputs[_real(out)]!r}: choose "
                                     f"another OUTDIR")
    do_abs = bool(args.abs_refcat)
    groups = {("image", e.index) if e.group_id is None else ("id", e.group_id) for e in entries}
    do_rel = args.relative and len(groups) > 1
    if not do_rel and not do_abs:
        why = "--no-relative" if not args.relative else "only one image group"
        raise ParameterError(f"nothing to do: {why} and no --abs-refcat")
    store = _check_parameters(args, do_rel, do_abs)
    n = len(entries)
    for e in entries:
        progress(f"[{e.index + 1}/{n}] reading {Path(e.wcs).name} and {Path(e.catalog).name}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            c = make_corrector(e.wcs, e.catalog, group_id=e.group_id, name=e.name, epoch=e.epoch,
                               wcsinfo=e.wcsinfo)
        _show_warnings(caught, shown)
        out = outdir / Path(e.wcs).name
        images.append(_Image(e, c, c.meta.get("name") or _stem(e.wcs), out, _stem(e.wcs)))
    outdir.mkdir(parents=True, exist_ok=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _align(args, images, progress, outdir, store)
    _show_warnings(caught, shown)

    for k, im in enumerate(images):
        progress(f"[{k + 1}/{n}] writing " + (f"{im.output.name} and " if im.ok else "(not aligned) ")
                 + f"{im.report}_fit.ecsv/.json")
        if im.ok:
            write_wcs(im.corrector, im.output, like=im.entry.wcs)
        _write_reports(im, outdir)
    return images


def _cmd_align(args, progress: _Progress, shown: set) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entries = read_manifest(args.manifest)
    _show_warnings(caught, shown)
    images = run_manifest(args, entries, progress, shown)
    print(_summary(images, Path(args.outdir)))
    return 0 if all(im.ok for im in images) else 3


def _cmd_align_batch(args, progress: bool) -> int:
    from .batch import align_batch

    if args.workers is not None and args.workers < 1:
        raise ParameterError(f"--workers must be at least 1, got {args.workers}")
    skip = {"command", "batch", "outdir", "association_column", "scheduler", "workers", "force"}
    options = {k: v for k, v in vars(args).items() if k not in skip}
    res = align_batch(args.batch, args.outdir, options=options, column=args.association_column,
                      scheduler=args.scheduler, workers=args.workers, force=args.force, progress=progress)
    Path(args.outdir).mkdir(parents=True, exist_ok=True)
    res.table().write(Path(args.outdir) / "batch_summary.ecsv", format="ascii.ecsv", overwrite=True)
    print(res.summary())
    return 0 if res.ok else 3


def main(argv=None) -> int:
    """The ``aligner`` command line; returns the exit status."""
    from astrodb.errors import AstrodbError

    shown: set = set()
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:  # --help, --version
            return int(exc.code or 0) if not isinstance(exc.code, str) else 2
        progress = _Progress(sys.stderr.isatty())
        if args.command == "align":
            return _cmd_align(args, progress, shown)
        if args.command == "align-batch":
            return _cmd_align_batch(args, progress.enabled)
        return 2  # pragma: no cover - argparse requires a known command
    except _UsageError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (AlignerError, AstrodbError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback, for any failure
        print(f"{PROG}: unexpected error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
