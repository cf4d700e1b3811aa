"""The JSON API (/v1, /health) on both backends: results equal the Store's, errors name the parameter."""
from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest
import sqlalchemy as sa
from astropy.table import Table
from astropy.wcs import WCS

from service_fixtures import CENTER, RUN_IDS, make_client

POLY = [[149.95, 1.95], [150.05, 1.95], [150.05, 2.05], [149.95, 2.05]]


def test_health_and_catalogs(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["catalogs"] == 2 and h["read_only_session"] is True
    assert h["max_radius_deg"] == 1.0 and h["max_rows"] == 1000
    cats = {c["name"]: c for c in client.get("/v1/catalogs").json()["catalogs"]}
    assert set(cats) == {"gaia_dr3", "mine"} and cats["gaia_dr3"]["row_count"] == 3000
    assert cats["mine"]["ref_epoch"] == 2016.0 and len(cats["mine"]["files"][0]["sha256"]) == 64
    assert client.get("/v1/catalogs/mine").json()["row_count"] == 200
    r = client.get("/v1/catalogs/nope")
    assert r.status_code == 404 and "no catalog 'nope'" in r.json()["error"]["message"]


def test_cone_json_equals_the_store(client, store):
    r = client.get("/v1/cone", params={"catalog": "gaia_dr3", "ra": 150.0, "dec": 2.0, "radius": 0.1,
                                       "epoch": "J2030"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    ref = store.cone(150.0, 2.0, 0.1, catalog="gaia_dr3", epoch=2030.0)
    names = [c["name"] for c in doc["columns"]]
    assert names == ref.colnames and doc["meta"]["rows"] == len(ref) and not doc["meta"]["truncated"]
    col = {n: [row[i] for row in doc["rows"]] for i, n in enumerate(names)}
    assert col["source_id"] == list(ref["source_id"])            # int64 > 2**53 exact
    assert col["ra"] == list(ref["ra"]) and col["dec"] == list(ref["dec"])
    pm = ref["pmra"]
    assert [v is None for v in col["pmra"]] == list(np.ma.getmaskarray(pm))
    units = {c["name"]: c["unit"] for c in doc["columns"]}
    assert units["ra"] == "deg" and units["pmra"] == "mas / yr"


@pytest.mark.parametrize("fmt", ["ecsv", "csv", "votable"])
def test_cone_other_formats(client, store, fmt):
    r = client.get("/v1/cone", params={"catalog": "mine", "ra": 10.0, "dec": -30.0, "radius": 0.1, "format": fmt,
                                       "columns": "source_id,ra,dec,mag"})
    assert r.status_code == 200
    ref = store.cone(10.0, -30.0, 0.1, catalog="mine", columns=["source_id", "ra", "dec", "mag"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(io.BytesIO(r.content), format={"ecsv": "ascii.ecsv", "csv": "ascii.csv",
                                                      "votable": "votable"}[fmt])
    assert len(t) == len(ref) > 0 and t.colnames == ref.colnames
    assert np.array_equal(np.asarray(t["ra"], float), np.asarray(ref["ra"]))
    if fmt == "ecsv":
        assert t["ra"].unit == "deg" and t.meta["truncated"] is False and t.meta["catalog"] == "mine"


def test_limit_truncates_and_flags(client):
    r = client.get("/v1/cone", params={"catalog": "gaia_dr3", "ra": 150, "dec": 2, "radius": 0.2, "limit": 5})
    doc = r.json()
    assert len(doc["rows"]) == 5 and doc["meta"]["truncated"] is True and r.headers["x-truncated"] == "true"
    r = client.get("/v1/cone", params={"catalog": "gaia_dr3", "ra": 150, "dec": 2, "radius": 0.5})
    assert r.json()["meta"]["truncated"] is True and len(r.json()["rows"]) == 1000   # the service's max_rows


@pytest.mark.parametrize("params, param", [
    ({"dec": 2, "radius": 0.1}, "ra"),
    ({"ra": "x", "dec": 2, "radius": 0.1}, "ra"),
    ({"ra": 150, "dec": 91, "radius": 0.1}, "dec"),
    ({"ra": 150, "dec": 2, "radius": 0}, "radius"),
    ({"ra": 150, "dec": 2, "radius": -1}, "radius"),
    ({"ra": 150, "dec": 2, "radius": 2.5}, "radius"),        # above the maximum
    ({"ra": 150, "dec": 2, "radius": "inf"}, "radius"),
    ({"ra": 150, "dec": 2, "radius": 0.1, "epoch": "yesterday"}, "epoch"),
    ({"ra": 150, "dec": 2, "radius": 0.1, "format": "fits"}, "format"),
    ({"ra": 150, "dec": 2, "radius": 0.1, "columns": "ra,bogus"}, "columns"),
    ({"ra": 150, "dec": 2, "radius": 0.1, "limit": -2}, "limit"),
    ({"ra": 150, "dec": 2, "radius": 0.1, "catalog": "a\x00b"}, "catalog"),
    ({"ra": 150, "dec": 2, "radius": 0.1, "epoch": 2030, "observer": "1,2"}, "observer"),
    ({"ra": 150, "dec": 2, "radius": 0.1, "epoch": 2030, "observer": "1,nan,0"}, "observer"),
    ({"ra": 150, "dec": 2, "radius": 0.1, "observer": "1,0,0"}, "observer"),   # no epoch
])
def test_cone_bad_parameters(client, params, param):
    r = client.get("/v1/cone", params={"catalog": "gaia_dr3", **params})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["parameter"] == param and err["message"].startswith(param)


def test_footprint_polygon_and_wcs(client, store):
    r = client.post("/v1/footprint", json={"catalog": "gaia_dr3", "polygon": POLY, "epoch": 2025.0})
    ref = store.footprint(np.array(POLY), catalog="gaia_dr3", epoch=2025.0)
    rows = r.json()["rows"]
    assert r.status_code == 200 and [x[0] for x in rows] == list(ref["source_id"]) and len(ref) > 10
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = CENTER
    w.wcs.crpix = [512.5, 512.5]
    w.wcs.cd = [[-0.1 / 1024, 0], [0, 0.1 / 1024]]
    header = {k: v for k, v in w.to_header().items()}
    r = client.post("/v1/footprint", json={"catalog": "gaia_dr3", "wcs": header, "shape": [1024, 1024],
                                           "format": "votable"})
    ref = store.footprint((w, (1024, 1024)), catalog="gaia_dr3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(io.BytesIO(r.content), format="votable")
    assert r.status_code == 200 and [int(s) for s in t["source_id"]] == list(ref["source_id"])


@pytest.mark.parametrize("body, param", [
    ({"polygon": [[1, 2], [3, 4]]}, "polygon"),
    ({"polygon": [[1, 2], [3, 4], [5]]}, "polygon"),
    ({"polygon": [[1, 95], [3, 4], [5, 6]]}, "polygon"),
    ({"polygon": [[0, 0], [120, 0], [240, 0]]}, "polygon"),           # a great circle: no smaller side
    ({"polygon": [[140, 0], [160, 0], [160, 10], [140, 10]]}, "polygon"),   # larger than max radius
    ({"wcs": {"CTYPE1": "RA---XYZ"}, "shape": [10, 10]}, "wcs"),
    ({"wcs": {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN"}}, "shape"),
    ({}, "polygon"),
    ({"polygon": POLY, "epoch": 1e9}, "epoch"),
    ({"polygon": POLY, "unknown": 1}, "unknown"),
])
def test_footprint_bad_bodies(client, body, param):
    r = client.post("/v1/footprint", json={"catalog": "gaia_dr3", **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["parameter"] == param


@pytest.mark.parametrize("via_audit", [True, False])
def test_runs_list_get_and_prov(client, monkeypatch, via_audit):
    from astrodb.service import runs as R
    if not via_audit:            # the service's own queries, used when astrodb.provenance is absent
        monkeypatch.setattr(R, "_audit", lambda: None)
    elif R._audit() is None:
        pytest.skip("astrodb.provenance (show_run, export_prov) not installed")
    runs = client.get("/v1/runs").json()["runs"]
    assert [r["run_id"] for r in runs] == RUN_IDS[::-1]                 # newest first
    assert client.get("/v1/runs", params={"step": "absolute"}).json()["runs"][0]["run_id"] == RUN_IDS[1]
    assert client.get("/v1/runs", params={"catalog": "nope"}).json()["runs"] == []
    run = client.get(f"/v1/runs/{RUN_IDS[1]}").json()
    assert run["parameters"]["searchrad"] == 2.0 and run["ref_catalog"] == "gaia_dr3"
    assert run["started_at"].startswith("2026-11-20T13:00")
    im = run["images"][0]
    assert im["name"] == "img1" and im["rmse"] == 0.003 and im["output_wcs_bytes"] > 100 and "output_wcs" not in im
    assert client.get(f"/v1/runs/{RUN_IDS[1][:8]}").status_code == 400          # prefix shared by both runs
    assert client.get(f"/v1/runs/{RUN_IDS[1][-12:]}").status_code == 404
    assert client.get("/v1/runs/not%25a_run").json()["error"]["parameter"] == "id"
    r = client.get(f"/v1/runs/{RUN_IDS[1]}/prov")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    prov = r.json()
    assert len(prov["activity"]) >= 1 and prov["entity"] and prov["wasGeneratedBy"] and prov["used"]
    text = json.dumps(prov)
    assert RUN_IDS[1] in text and "gaia_dr3" in text
    if via_audit:
        from prov.model import ProvDocument
        assert ProvDocument.deserialize(content=r.text, format="json").get_records()
        assert "activity(" in client.get(f"/v1/runs/{RUN_IDS[1]}/prov", params={"format": "provn"}).text
    assert client.get("/v1/runs/0a1b2c3d-ffff/prov").status_code == 404


def test_no_endpoint_writes_and_sessions_are_read_only(client):
    app = client.app
    for route in app.routes:
        methods = getattr(route, "methods", set()) or set()
        assert methods <= {"GET", "HEAD", "POST"}, route.path
        if "POST" in methods:
            assert route.path == "/v1/footprint"        # a query with a body, nothing stored
    engine = app.state.service.store.engine
    with pytest.raises(sa.exc.DBAPIError, match="read-only|readonly|query_only|attempt to write"):
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM catalogs")


def test_openapi_documents_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    for path in ("/scs/{catalog}", "/vo/CatalogSearch.aspx", "/v1/catalogs", "/v1/cone", "/v1/footprint",
                 "/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/prov", "/health"):
        assert path in spec["paths"], path
    names = [p["name"] for p in spec["paths"]["/scs/{catalog}"]["get"]["parameters"]]
    assert {"RA", "DEC", "SR", "VERB", "EPOCH", "MAXREC"} <= set(names)
    assert client.get("/docs").status_code == 200


def test_settings_limits_are_served(served):
    with make_client(served[0], max_radius=0.05, max_rows=3) as c:
        assert c.get("/v1/cone", params={"catalog": "mine", "ra": 10, "dec": -30, "radius": 0.06}).status_code == 400
        doc = c.get("/v1/cone", params={"catalog": "mine", "ra": 10, "dec": -30, "radius": 0.05}).json()
        assert doc["meta"]["row_limit"] == 3 and len(doc["rows"]) <= 3
