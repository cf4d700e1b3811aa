"""``astrodb shard``: the servers a store's sharded catalogs live on (PostgreSQL only)."""
from __future__ import annotations

import argparse

import numpy as np


def add_parser(sub) -> None:
    sh = sub.add_parser("shard", help="servers holding sharded catalogs (PostgreSQL)",
                        description="Spread catalogs over several PostgreSQL servers by HEALPix range: add a "
                        "shard, list them, show a catalog's map, move a range (rebalance), resolve what an "
                        "interrupted load left. See docs/scaling.md.")
    s = sh.add_subparsers(dest="shard_command", required=True, metavar="ACTION")
    add = s.add_parser("add", help="add a PostgreSQL database as a shard",
                       description="Add the database at URL as shard NAME: it is migrated to the store's schema "
                       "(PostGIS needed), must allow two-phase commit (max_prepared_transactions > 0) and "
                       "becomes a postgres_fdw foreign server of this store (superuser step). Catalogs "
                       "created from now on are spread over every shard; move ranges onto a new shard with "
                       "'astrodb shard move'.")
    add.add_argument("name", help="shard name: lower-case letters, digits, _")
    add.add_argument("url", help="postgresql://user[:password]@host[:port]/dbname (the credentials go into "
                     "the foreign server's user mapping)")
    s.add_parser("list", help="the shards, whether each answers, its schema revision, loads waiting on it")
    s.add_parser("recover", help="resolve the prepared transactions killed loads left on the shards",
                 description="Commit on the shards the files the store recorded, roll back the others "
                 "(every load also does this first).")
    mp = s.add_parser("map", help="a sharded catalog's ranges: shard and rows (from its density map)")
    mp.add_argument("catalog")
    mv = s.add_parser("move", help="move one range of a catalog to another shard (rebalance)",
                      description="Copy the range's rows to SHARD, switch the map, drop the old copy; loads into "
                      "the catalog wait meanwhile, queries do not. Interrupted, run it again: it resumes.")
    mv.add_argument("catalog")
    mv.add_argument("lo", type=int, help="the range's first order-29 HEALPix index (astrodb shard map)")
    mv.add_argument("shard", help="the shard to move it to")


def run(store, args: argparse.Namespace) -> int:
    from ..shard.loading import recover
    from ..shard.rebalance import move_range
    from ..shard.servers import status

    if args.shard_command == "add":
        shard = store.add_shard(args.name, args.url)
        print(f"shard {shard.name!r} added ({shard.address}, foreign server {shard.server})")
    elif args.shard_command == "list":
        rows = status(store.engine, store.shard_connections())
        if not rows:
            print("no shards: every catalog is on this server")
        for st in rows:
            state = f"up, revision {st.revision}, {st.prepared} load(s) prepared" if st.up else f"DOWN: {st.error}"
            print(f"{st.shard.name:<12} {st.shard.address:<40} {state}")
    elif args.shard_command == "recover":
        out = recover(store.engine, store.shard_connections())
        print(f"{out['committed']} committed, {out['rolled_back']} rolled back, "
              f"{out['unreachable']} shard(s) unreachable")
    elif args.shard_command == "map":
        _print_map(store, args.catalog)
    elif args.shard_command == "move":
        print(move_range(store.engine, store.shard_connections(), args.catalog, args.lo, args.shard))
    return 0


def _print_map(store, name: str) -> None:
    from ..errors import ConfigError
    from ..shard.shard_map import read_map
    from ..store.schema import DENSITY_ORDER, HEALPIX_ORDER

    with store.engine.connect() as conn:
        stats = store._stats(conn, name)  # CatalogNotFoundError for an unknown name
        cmap = read_map(conn, stats.id)
    if cmap is None:
        raise ConfigError(f"catalog {name!r} is not sharded: its rows are on the coordinator")
    density = store.density(name)
    shift = 2 * (HEALPIX_ORDER - DENSITY_ORDER)
    lo_pix = np.asarray(density["pixel"], np.int64) << shift
    counts = np.asarray(density["count"], np.int64)
    cum = np.concatenate(([0], np.cumsum(counts)))
    rows = cum[np.searchsorted(lo_pix, cmap.hi, side="right")] - cum[np.searchsorted(lo_pix, cmap.lo, side="left")]
    print(f"catalog {name!r}: map version {cmap.version}, {len(cmap.lo)} ranges")
    print(f"{'lo':>20} {'hi':>20} {'shard':<12} {'rows':>12}")
    for i in range(len(cmap.lo)):
        print(f"{int(cmap.lo[i]):>20} {int(cmap.hi[i]):>20} {cmap.shard_of(i).name:<12} {int(rows[i]):>12}")
    per = {}
    for i in range(len(cmap.lo)):
        per[cmap.shard_of(i).name] = per.get(cmap.shard_of(i).name, 0) + int(rows[i])
    print("rows per shard: " + ", ".join(f"{k} {v}" for k, v in sorted(per.items())))

