"""IVOA Simple Cone Search 1.03 (/scs/{catalog}) through the app on both backends."""
from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io.votable import parse

from service_fixtures import CENTER, make_client

_UCD1 = ("ID_MAIN", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN")


def vot(resp):
    """Parse strictly: any VOTable warning (bad UCD, misplaced element, ...) is an error."""
    return parse(io.BytesIO(resp.content), verify="exception")


def error_info(resp) -> str:
    doc = vot(resp)
    errors = [i for i in doc.infos if i.name == "Error"]
    assert len(errors) == 1
    return errors[0].value


def test_cone_is_a_compliant_votable_with_the_store_rows(client, store):
    r = client.get("/scs/gaia_dr3", params={"RA": CENTER[0], "DEC": CENTER[1], "SR": 0.1})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    doc = vot(r)
    assert len(doc.resources) == 1 and len(doc.resources[0].tables) == 1
    table = doc.resources[0].tables[0]
    ucds = [f.ucd for f in table.fields]
    for ucd in ("ID_MAIN", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN"):
        assert ucds.count(ucd) == 1
    f = {x.ucd: x for x in table.fields}
    assert f["ID_MAIN"].datatype == "char" and f["POS_EQ_RA_MAIN"].datatype == "double"
    t = table.to_table()
    ref = store.cone(*CENTER, 0.1, catalog="gaia_dr3")
    assert len(t) == len(ref) > 50
    assert [int(s) for s in t["source_id"]] == list(ref["source_id"])   # exact int64 ids, nearest first
    assert np.array_equal(np.asarray(t["ra"]), np.asarray(ref["ra"]))    # full precision
    assert np.array_equal(np.asarray(t["dec"]), np.asarray(ref["dec"]))
    assert {"pmra", "parallax", "mag", "distance"} <= set(t.colnames)


def test_verbosity_epoch_and_case_insensitive_names(client, store):
    r1 = client.get("/scs/gaia_dr3", params={"ra": 150.01, "dec": 2.0, "sr": 0.05, "verb": 1})
    t1 = vot(r1).get_first_table().to_table()
    assert t1.colnames == ["source_id", "ra", "dec", "distance"]
    t3 = vot(client.get("/scs/gaia_dr3", params={"RA": 150.01, "DEC": 2.0, "SR": 0.05, "VERB": 3})).get_first_table()
    assert len(t3.fields) >= 17
    r = client.get("/scs/gaia_dr3", params={"RA": 150.01, "DEC": 2.0, "SR": 0.05, "EPOCH": 2035.5})
    t = vot(r).get_first_table().to_table()
    ref = store.cone(150.01, 2.0, 0.05, catalog="gaia_dr3", epoch=2035.5)
    assert [int(s) for s in t["source_id"]] == list(ref["source_id"])
    assert np.array_equal(np.asarray(t["ra"]), np.asarray(ref["ra"]))
    assert "ra_epoch_error" in t.colnames and "propagated" in t.colnames
    assert b'epoch="J2035.5"' in r.content


def test_sr_zero_is_a_metadata_query_and_maxrec_flags_overflow(client):
    r = client.get("/scs/gaia_dr3", params={"RA": 150, "DEC": 2, "SR": 0})
    table = vot(r).get_first_table()
    assert r.status_code == 200 and len(table.array) == 0 and len(table.fields) > 5
    r = client.get("/scs/gaia_dr3", params={"RA": 150, "DEC": 2, "SR": 0.2, "MAXREC": 7})
    doc = vot(r)
    assert len(doc.get_first_table().array) == 7
    status = [i.value for i in doc.resources[0].infos if i.name == "QUERY_STATUS"]
    assert status == ["OVERFLOW"]              # one status, before the table (valid in VOTable 1.1)
    r = client.get("/scs/gaia_dr3", params={"RA": 150, "DEC": 2, "SR": 0.01})
    assert "OVERFLOW" not in r.text


def test_service_row_limit_truncates_nearest_first(served):
    with make_client(served[0], max_rows=20) as c:
        r = c.get("/scs/gaia_dr3", params={"RA": 150, "DEC": 2, "SR": 0.3, "MAXREC": 500})
        t = vot(r).get_first_table().to_table()
        assert len(t) == 20 and np.all(np.diff(np.asarray(t["distance"])) >= 0)
        assert 'value="OVERFLOW"' in r.text and 'name="row_limit" value="20"' in r.text


@pytest.mark.parametrize("query, param", [
    ({"DEC": 2, "SR": 0.1}, "RA"),
    ({"RA": 150, "SR": 0.1}, "DEC"),
    ({"RA": 150, "DEC": 2}, "SR"),
    ({"RA": "abc", "DEC": 2, "SR": 0.1}, "RA"),
    ({"RA": 150, "DEC": "2x", "SR": 0.1}, "DEC"),
    ({"RA": 150, "DEC": 91, "SR": 0.1}, "DEC"),
    ({"RA": 150, "DEC": -90.5, "SR": 0.1}, "DEC"),
    ({"RA": 361, "DEC": 2, "SR": 0.1}, "RA"),
    ({"RA": 150, "DEC": 2, "SR": -0.1}, "SR"),
    ({"RA": 150, "DEC": 2, "SR": 5}, "SR"),          # above the documented maximum (1 deg)
    ({"RA": 150, "DEC": 2, "SR": "nan"}, "SR"),
    ({"RA": 150, "DEC": 2, "SR": 0.1, "VERB": 4}, "VERB"),
    ({"RA": 150, "DEC": 2, "SR": 0.1, "EPOCH": "soon"}, "EPOCH"),
    ({"RA": 150, "DEC": 2, "SR": 0.1, "EPOCH": 20300}, "EPOCH"),
    ({"RA": 150, "DEC": 2, "SR": 0.1, "MAXREC": -1}, "MAXREC"),
])
def test_bad_parameters_give_400_and_an_error_votable_naming_them(client, query, param):
    r = client.get("/scs/gaia_dr3", params=query)
    assert r.status_code == 400
    assert error_info(r).startswith(f"{param}: ")


def test_unknown_catalog_is_404_with_an_error_votable(client):
    r = client.get("/scs/nosuch", params={"RA": 150, "DEC": 2, "SR": 0.1})
    assert r.status_code == 404 and "no catalog 'nosuch'" in error_info(r)
    r = client.get("/scs/<x>&amp;", params={"RA": 150, "DEC": 2, "SR": 0.1})
    assert r.status_code == 404 and "<x>&amp;" in error_info(r)  # escaped, still valid XML
    r = client.get("/scs/a%00b", params={"RA": 150, "DEC": 2, "SR": 0.1})
    assert r.status_code == 400 and error_info(r).startswith("catalog: ")


@pytest.mark.parametrize("query", [
    {"RA": 150.0, "DEC": 2.0, "SR": 0.1},                              # rows, VERB 2
    {"RA": 150.0, "DEC": 2.0, "SR": 0.05, "VERB": 3, "EPOCH": 2030},   # every column, propagated
    {"RA": 150.0, "DEC": 2.0, "SR": 0.0},                              # metadata only
    {"RA": 150.0, "DEC": 2.0, "SR": 0.3, "MAXREC": 3},                 # overflow
    {"RA": 150.0, "DEC": 95, "SR": 0.1},                               # error document
])
def test_answers_pass_astropys_strict_parse_as_votable_1_1_with_the_scs_ucd1_words(client, query):
    r = client.get("/scs/gaia_dr3", params=query)
    doc = parse(io.BytesIO(r.content), verify="exception")     # raises on any VOTable warning
    assert doc.version == "1.1" and b'xmlns="http://www.ivoa.net/xml/VOTable/v1.1"' in r.content
    if r.status_code != 200:
        assert r.status_code == 400 and error_info(r).startswith("DEC: ")
        return
    ucds = {f.ucd: f for f in doc.get_first_table().fields}
    assert all(u in ucds for u in _UCD1)
    assert ucds["ID_MAIN"].datatype == "char" and ucds["POS_EQ_DEC_MAIN"].datatype == "double"
    assert ucds["POS_EQ_RA_MAIN"].ref == "icrs" and ucds["POS_EQ_RA_MAIN"].unit == "deg"


def test_api_votables_are_strict_votable_1_3_with_ucd1_plus(client):
    r = client.get("/v1/cone", params={"catalog": "gaia_dr3", "ra": 150.0, "dec": 2.0, "radius": 0.1,
                                       "format": "votable", "limit": 5})
    doc = parse(io.BytesIO(r.content), verify="exception")
    assert r.status_code == 200 and doc.version == "1.3"
    assert [f.ucd for f in doc.get_first_table().fields][:3] == ["meta.id;meta.main", "pos.eq.ra;meta.main",
                                                                 "pos.eq.dec;meta.main"]
    assert [i.value for i in doc.resources[0].infos if i.name == "QUERY_STATUS"] == ["OVERFLOW"]
