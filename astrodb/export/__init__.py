"""Store catalogs written for other systems: HATS collections for LSDB (:mod:`astrodb.export.hats`)."""
