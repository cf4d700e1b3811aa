"""astrodb: a Gaia and user catalog store with exact, epoch-aware cone and footprint queries.

>>> import astrodb
>>> store = astrodb.connect()          # $ASTRODB_URL, else an embedded SQLite file
>>> store.init()                       # create / upgrade the schema
>>> store.ingest_catalog("stars.ecsv", name="mine", epoch=2016.0)
>>> store.cone(269.45, 4.69, 0.1, catalog="mine", epoch=2025.0)
"""
from .errors import (AstrodbError, CatalogExistsError, CatalogNotFoundError, ConfigError,
                     IngestError, OutsideRegionError, QueryError)
from .store.store import CatalogInfo, Store, connect

__version__ = "0.1.0"

__all__ = ["connect", "Store", "CatalogInfo", "AstrodbError", "ConfigError", "IngestError",
           "CatalogExistsError", "CatalogNotFoundError", "QueryError", "OutsideRegionError", "__version__"]
