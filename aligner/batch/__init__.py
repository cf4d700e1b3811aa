"""Batch alignment: many associations (image sets), each aligned as one task on a Dask cluster.

:mod:`.associations` reads the batch (a folder of manifests, or one table with an association
column) and keys each association by what determines its result; :mod:`.task` aligns one
association on a worker, which only reads the store, and returns its provenance records;
:mod:`.runner` submits the tasks, records each association's runs once from the client and
summarizes.
"""
from .associations import Association, read_associations
from .runner import BatchResult, align_batch
from .task import AssociationResult

__all__ = ["Association", "AssociationResult", "BatchResult", "align_batch", "read_associations"]
