"""``astrodb export``: a store catalog written in another system's format (HATS, for LSDB)."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    ex = sub.add_parser("export", help="write a catalog for other tools (HATS for LSDB)",
                        description="Write a store catalog in another system's format. See docs/scaling.md.")
    e = ex.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    h = e.add_parser("hats", help="a HATS collection (catalog + margin cache) that lsdb.read_hats opens",
                     description="Write CATALOG, positions at --epoch with their astrometry and errors, as a "
                     "HATS collection in DIR (a new or empty folder): the catalog partitioned by hats-import "
                     "on a Dask cluster, and a margin cache for cross-matches. LSDB reads it with "
                     "lsdb.read_hats(DIR). A failed export leaves nothing in DIR.")
    h.add_argument("catalog")
    h.add_argument("directory", metavar="DIR")
    h.add_argument("--epoch", help="Julian year or ISO time of ra/dec (default: each row's ref_epoch, as stored)")
    h.add_argument("--margin", type=float, default=None, metavar="ARCSEC",
                   help="width of the margin cache (default 10 arcsec)")
    h.add_argument("--pixel-threshold", type=int, default=1_000_000, metavar="ROWS",
                   help="most rows in one HATS partition (default %(default)s)")
    h.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="an existing Dask cluster (its workers must see DIR's folder); default: a local one")
    h.add_argument("--workers", type=int, default=1, help="worker processes of the local cluster "
                   "(default %(default)s)")


def run(store, args: argparse.Namespace) -> int:
    from ..export.hats import DEFAULT_MARGIN_ARCSEC, export_hats

    margin = DEFAULT_MARGIN_ARCSEC if args.margin is None else args.margin
    done = export_hats(store, args.catalog, args.directory, epoch=args.epoch, margin_arcsec=margin,
                       pixel_threshold=args.pixel_threshold, scheduler=args.scheduler, workers=args.workers,
                       progress=sys.stderr.isatty())
    epoch = "each row's ref_epoch" if done.epoch is None else f"J{done.epoch:g}"
    print(f"{done.path}: catalog {done.catalog!r}, {done.rows} rows at {epoch} in {done.partitions} "
          f"partitions; margin cache {done.margin_arcsec:g} arcsec, {done.margin_rows} rows")
    return 0
