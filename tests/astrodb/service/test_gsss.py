"""The GSSS-compatible /vo/CatalogSearch.aspx, read by stcal's own get_catalog (requests routed
into the app) and by the older client logic (split on CRLF, drop the first line, csv.DictReader)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from astropy.table import Table

from service_fixtures import CENTER

au = pytest.importorskip("stcal.tweakreg.astrometric_utils", reason="stcal (test extra) not installed")


@pytest.fixture
def stcal_via_app(client, monkeypatch):
    """stcal's get_catalog with its HTTP GET served by the app (the URL it builds is kept)."""
    seen = []

    def get(url, headers=None, timeout=None):
        seen.append(url)
        return client.get(url)
    monkeypatch.setattr(au, "SERVICELOCATION", "http://testserver")
    monkeypatch.setattr(au.requests, "get", get)
    return seen


def old_client_rows(body: bytes) -> list[dict]:
    lines = body.decode().split("\r\n")
    del lines[0]                      # "a line stating how many sources follow"
    return list(csv.DictReader(lines))


def test_stcal_get_catalog_reads_the_store_at_the_epoch(client, store, stcal_via_app):
    t = au.get_catalog(CENTER[0], CENTER[1], epoch=2024.25, search_radius=0.1, catalog="GAIADR3")
    assert "/vo/CatalogSearch.aspx?RA=150.0&DEC=2.0&EPOCH=2024.25&SR=0.1&FORMAT=CSV&CAT=GAIADR3" in stcal_via_app[0]
    ref = store.cone(*CENTER, 0.1, catalog="gaia_dr3", epoch=2024.25)
    moving = np.asarray(ref["propagated"], bool)
    assert 0 < len(t) == moving.sum() < len(ref)            # stcal drops the sources without pm
    assert list(t["objID"]) == list(ref["source_id"][moving]) == list(t["GAIAsourceID"])
    assert np.array_equal(np.asarray(t["ra"]), np.asarray(ref["ra"][moving]))
    assert np.array_equal(np.asarray(t["dec"]), np.asarray(ref["dec"][moving]))
    assert np.all(np.asarray(t["epoch"]) == 2024.25)
    assert np.allclose(t["mag"], ref["mag"][moving])
    for c in ("ra", "dec", "mag", "objID", "epoch", "pmra", "pmdec", "raErr", "decErr", "parallax"):
        assert c in t.colnames
    # without an epoch every source comes, at the catalog epoch
    t0 = au.get_catalog(CENTER[0], CENTER[1], epoch=None, search_radius=0.1, catalog="GAIAREFCAT")
    assert len(t0) == len(ref) and np.all(np.asarray(t0["epoch"]) == 2016.0)


def test_old_client_parsing_and_empty_results(client, store):
    params = {"RA": 150.0, "DEC": 2.0, "EPOCH": 2030.0, "SR": 0.05, "FORMAT": "CSV", "CAT": "GAIADR3", "MINDET": 5}
    r = client.get("/vo/CatalogSearch.aspx", params=params)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = old_client_rows(r.content)
    ref = store.cone(150.0, 2.0, 0.05, catalog="gaia_dr3", epoch=2030.0)
    assert r.content.startswith(f"#Number of sources: {len(ref)}\r\n".encode())
    assert [int(x["objID"]) for x in rows] == list(ref["source_id"])
    assert [float(x["ra"]) for x in rows] == list(ref["ra"])
    unmoved = [x for x in rows if x["pmra"] == ""]
    assert unmoved and all(float(x["epoch"]) == 2016.0 for x in unmoved)
    # nothing there: both clients get zero rows, no error
    empty = client.get("/webservices/vo/CatalogSearch.aspx", params={**params, "RA": 300.0})
    assert empty.status_code == 200 and old_client_rows(empty.content) == []
    t = Table.read(empty.content.decode(), format="csv", comment="#")
    assert len(t) == 0 and "ra" in t.colnames


@pytest.mark.parametrize("query, param, status", [
    ({"DEC": 2, "SR": 0.1}, "RA", 400),
    ({"RA": 150, "DEC": 2, "SR": 0}, "SR", 400),
    ({"RA": 150, "DEC": 2, "SR": 3}, "SR", 400),
    ({"RA": 150, "DEC": 95, "SR": 0.1}, "DEC", 400),
    ({"RA": 150, "DEC": 2, "SR": 0.1, "CAT": "USNOB"}, "CAT", 400),
    ({"RA": 150, "DEC": 2, "SR": 0.1, "FORMAT": "HTML"}, "FORMAT", 400),
    ({"RA": 150, "DEC": 2, "SR": 0.1, "EPOCH": "x"}, "EPOCH", 400),
    ({"RA": 150, "DEC": 2, "SR": 0.1, "CAT": "GAIADR2"}, None, 404),   # gaia_dr2 not in this store
])
def test_errors_fail_loudly_in_clients_that_ignore_the_status(client, query, param, status):
    r = client.get("/vo/CatalogSearch.aspx", params=query)
    assert r.status_code == status
    first = r.text.split("\r\n")[0]
    assert first.startswith("#ERROR: " + (f"{param}: " if param else "no catalog 'gaia_dr2'"))
    t = Table.read(r.text, format="csv", comment="#")
    assert t.colnames == ["error"] and len(t) == 1      # no ra/pmra: stcal raises instead of aligning on nothing
    with pytest.raises(KeyError):
        t["ra"]


def test_ra_wraps_and_votable_format(client, store):
    a = client.get("/vo/CatalogSearch.aspx", params={"RA": -210.0, "DEC": 2.0, "SR": 0.05})
    b = client.get("/vo/CatalogSearch.aspx", params={"RA": 150.0, "DEC": 2.0, "SR": 0.05})
    assert a.content == b.content
    v = client.get("/vo/CatalogSearch.aspx", params={"RA": 150.0, "DEC": 2.0, "SR": 0.05, "FORMAT": "VOTABLE"})
    from astropy.io.votable import parse_single_table
    import io
    t = parse_single_table(io.BytesIO(v.content), verify="exception").to_table()   # strict: no warning
    assert len(t) == len(old_client_rows(b.content)) > 0
