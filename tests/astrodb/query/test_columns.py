"""Store.search (numpy columns, no Table: what the HTTP service renders) is Store.cone /
Store.footprint, on both backends: same columns, units, descriptions, values, masks and meta."""
from __future__ import annotations

import numpy as np
import pytest

from astrodb.errors import CatalogNotFoundError, QueryError
from astrodb.query.columns import SourceColumns
from astrodb.query.regions import Cone, Polygon
from tests.support.synth import gaia_like

CENTER = (150.0, 2.0)


@pytest.fixture(scope="module")
def store(db_factory):
    s = db_factory.store()
    s.ingest_catalog(gaia_like(3000, *CENTER, 0.5, seed=11), "g", epoch=2016.0)
    yield s
    s.close()


def _same(ref, got) -> None:
    assert got.colnames == ref.colnames and len(got) == len(ref)
    for name in ref.colnames:
        a, b = ref[name], got[name]
        assert a.unit == b.unit and a.description == b.description, name
        assert np.array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b)), name
        assert np.array_equal(np.ma.getdata(a), np.ma.getdata(b), equal_nan=a.dtype.kind == "f"), name


@pytest.mark.parametrize("epoch", [None, 2030.0, 1990.5])
def test_search_columns_equal_store_cone(store, epoch):
    rng = np.random.default_rng(3)
    cases = [(CENTER[0] + dx, CENTER[1] + dy, r) for dx, dy, r in
             zip(rng.uniform(-0.4, 0.4, 12), rng.uniform(-0.4, 0.4, 12), rng.uniform(0.001, 0.3, 12))]
    cases += [(*CENTER, 0.8), (CENTER[0] + 90, CENTER[1], 0.1)]      # the whole catalog; an empty cone
    for ra, dec, r in cases:
        for columns in (None, ["source_id", "ra", "dec", "pmra"]):
            ref = store.cone(ra, dec, r, catalog="g", epoch=epoch, columns=columns)
            cols = store.search(Cone.create(ra, dec, r), catalog="g", epoch=epoch, columns=columns)
            assert isinstance(cols, SourceColumns) and cols.meta == ref.meta
            _same(ref, cols.to_table())
            back = SourceColumns.from_table(ref)
            assert back.names == cols.names
            for n in cols.names:
                assert np.array_equal(back.data[n], cols.data[n], equal_nan=cols.data[n].dtype.kind == "f")


def test_search_takes_footprint_regions(store):
    verts = [[149.9, 1.9], [150.1, 1.9], [150.1, 2.1], [149.9, 2.1]]
    ref = store.footprint(verts, catalog="g", epoch=2024.0)
    _same(ref, store.search(verts, catalog="g", epoch=2024.0).to_table())
    _same(ref, store.search(Polygon.create(np.asarray(verts)), catalog="g", epoch=2024.0).to_table())


def test_search_errors_are_the_stores(store):
    with pytest.raises(CatalogNotFoundError, match="no catalog 'nope'"):
        store.search(Cone.create(*CENTER, 0.1), catalog="nope")
    with pytest.raises(QueryError, match="unknown column"):
        store.search(Cone.create(*CENTER, 0.1), catalog="g", columns=["ra", "bogus"])
    with pytest.raises(QueryError, match="epoch"):
        store.search(Cone.create(*CENTER, 0.1), catalog="g", epoch=1e9)


def test_head_keeps_the_nearest(store):
    cols = store.search(Cone.create(*CENTER, 0.3), catalog="g")
    top = cols.head(5)
    assert len(top) == 5 and np.all(np.diff(top.data["distance"]) >= 0)
    assert np.array_equal(top.data["source_id"], cols.data["source_id"][:5]) and top.meta == cols.meta
