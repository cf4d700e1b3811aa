"""Each catalog's HEALPix density map: exactly the rows it holds, after every kind of load."""
from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from astropy_healpix import HEALPix
import astropy.units as u

import astrodb
from astrodb.errors import QueryError
from astrodb.store.schema import catalog_density, catalogs
from tests.support.synth import gaia_like


def _brute(ra, dec, order):
    return np.unique(HEALPix(2 ** order, order="nested").lonlat_to_healpix(ra * u.deg, dec * u.deg),
                     return_counts=True)


def test_a_user_catalog_has_its_map_at_every_order_and_loses_it_with_the_catalog(store, catalog_name, tmp_path):
    t = gaia_like(3000, 0.5, 60.0, 8.0, seed=4)  # across RA = 0/360, many pixels
    path = tmp_path / "c.ecsv"
    t.write(path)
    store.ingest_catalog(path, catalog_name)
    for order in (7, 4, 0):
        m = store.density(catalog_name, order=order)
        pix, n = _brute(np.asarray(t["ra"], float), np.asarray(t["dec"], float), order)
        np.testing.assert_array_equal(m["pixel"], pix)
        np.testing.assert_array_equal(m["count"], n)
        assert m.meta == {"healpix_order": order, "nested": True, "catalog": catalog_name, "rows": 3000}
    for bad in (8, -1, 2.0, True):
        with pytest.raises(QueryError, match="order must be an integer from 0 to 7"):
            store.density(catalog_name, order=bad)
    with pytest.raises(astrodb.CatalogNotFoundError):
        store.density(catalog_name + "_nope")
    with store.engine.connect() as conn:
        cat_id = conn.execute(sa.select(catalogs.c.id).where(catalogs.c.name == catalog_name)).scalar_one()
    store.drop_catalog(catalog_name)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(catalog_density)
                            .where(catalog_density.c.catalog_id == cat_id)).scalar() == 0
