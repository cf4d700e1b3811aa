"""The service's cone search without astropy Tables (rows.cone_rows) returns exactly Store.cone."""
from __future__ import annotations

import numpy as np
import pytest

from astrodb.service.rows import Rows, cone_rows
from service_fixtures import CENTER


@pytest.mark.parametrize("epoch", [None, 2030.0, 1990.5])
def test_cone_rows_equal_store_cone(store, epoch):
    rng = np.random.default_rng(3)
    cases = [(CENTER[0] + dx, CENTER[1] + dy, r) for dx, dy, r in
             zip(rng.uniform(-0.4, 0.4, 15), rng.uniform(-0.4, 0.4, 15), rng.uniform(0.001, 0.3, 15))]
    cases.append((*CENTER, 0.6))                                     # the whole catalog and beyond
    for ra, dec, r in cases:
        for columns in (None, ["source_id", "ra", "dec", "pmra"]):
            ref = store.cone(ra, dec, r, catalog="gaia_dr3", epoch=epoch, columns=columns)
            rows = cone_rows(store, "gaia_dr3", ra, dec, r, epoch=epoch, columns=columns)
            got = rows.to_table()
            assert got.colnames == ref.colnames and len(got) == len(ref)
            for name in ref.colnames:
                a, b = ref[name], got[name]
                assert a.unit == b.unit and a.description == b.description, name
                assert np.array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b)), name
                assert np.array_equal(np.ma.getdata(a), np.ma.getdata(b), equal_nan=a.dtype.kind == "f"), name
            back = Rows.from_table(ref)
            assert back.names == rows.names
            for n in rows.names:
                assert np.array_equal(back.data[n], rows.data[n], equal_nan=rows.data[n].dtype.kind == "f")
