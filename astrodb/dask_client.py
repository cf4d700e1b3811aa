"""The Dask client a parallel job runs on: the caller's, an existing cluster's, or a local one's."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["dask_client"]


@contextmanager
def dask_client(client=None, scheduler: str | None = None, workers: int | None = None) -> Iterator:
    """The client to submit to, closing on exit what it opened.

    Parameters
    ----------
    client : distributed.Client, optional
        The caller's client: given back as it is, and left open.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://HOST:PORT``): a client of it, closed on exit
        (the cluster keeps running).
    workers : int, optional
        Otherwise a new local cluster of this many single-threaded worker processes (default: one
        per core), closed on exit with its client.

    Yields
    ------
    distributed.Client
    """
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as own:
            yield own
        return
    with LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as own:
        yield own
