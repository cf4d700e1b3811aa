"""Catalogs sharded by HEALPix range over several PostgreSQL servers (PostgreSQL only).

A coordinator (the store a client connects to) holds the catalogs, files, provenance and each
sharded catalog's map; the shards (store databases of their own) hold the rows, one table per
range. Clients send region queries straight to the owning shards (:mod:`.routing`); psql users'
``astrodb.cone()`` / ``footprint()`` on the coordinator read them through ``postgres_fdw``
foreign partitions. Modules: :mod:`.shard_map` (the map), :mod:`.connections` (reaching shards,
failing fast), :mod:`.servers` (adding shards), :mod:`.placement` (tables and partitions),
:mod:`.loading` (atomic loads across shards), :mod:`.routing` (queries), :mod:`.rebalance`
(moving ranges).
"""
from .connections import ShardConnections
from .shard_map import CatalogMap, Shard

__all__ = ["CatalogMap", "Shard", "ShardConnections"]
