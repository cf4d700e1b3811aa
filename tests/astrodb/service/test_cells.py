"""Rows rendered as text: both paths (Python for small results, pyarrow for large) parse back to
the same values in every format, missing values and awkward strings included, and rendering
stops at a deadline."""
from __future__ import annotations

import csv
import io
import json
import time
import warnings

import numpy as np
import pytest
from astropy.io.votable import parse_single_table
from astropy.table import Table

from astrodb.service import cells
from astrodb.service.formats import gsss_csv, json_result, text_table, votable
from astrodb.query.columns import SourceColumns

AWKWARD = np.array([1e-5, 0.1, 1 / 3, 1e22, -0.0, 5e-324, 2.0, 269.45207511, 1e16, 123456789.0, -7.25e-300, np.nan])


def _rows(n: int, seed: int = 1) -> SourceColumns:
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    ra[: len(AWKWARD)] = AWKWARD[:n] if n < len(AWKWARD) else AWKWARD
    pm = rng.normal(0, 5, n)
    pm[::7] = np.nan
    ids = rng.integers(0, 2 ** 62, n, dtype=np.int64)
    return SourceColumns(["source_id", "ra", "pmra", "ref_epoch", "propagated"],
                {"source_id": ids, "ra": ra, "pmra": pm, "ref_epoch": np.full(n, 2016.0),
                 "propagated": rng.uniform(size=n) < 0.5})


def _same(values, expected) -> bool:
    got = np.asarray(values, float)
    exp = np.asarray(expected, float)
    return bool(np.array_equal(got, exp, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(exp)))


SIZES = [5, cells.ARROW_MIN_ROWS - 1, cells.ARROW_MIN_ROWS, 2 * cells.CHUNK_ROWS + 17]


@pytest.mark.parametrize("n", SIZES)
def test_json_parses_back_exactly(n):
    rows = _rows(n)
    doc = json.loads(json_result(rows, {"query": "cone"}))
    assert doc["meta"] == {"query": "cone"} and [c["name"] for c in doc["columns"]] == rows.names
    cols = list(zip(*doc["rows"]))
    assert list(cols[0]) == rows.data["source_id"].tolist()          # int64 exact
    assert _same(cols[1], rows.data["ra"])
    assert [v is None for v in cols[2]] == np.isnan(rows.data["pmra"]).tolist()
    assert _same([np.nan if v is None else v for v in cols[2]], rows.data["pmra"])
    assert list(cols[4]) == rows.data["propagated"].tolist()


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("fmt", ["ecsv", "csv"])
def test_ecsv_and_csv_read_back_exactly(n, fmt):
    rows = _rows(n)
    body = text_table(rows, fmt, {"catalog": "g", "epoch": None})
    with warnings.catch_warnings():   # astropy's fast CSV reader warns on 5e-324 (and reads it right)
        warnings.simplefilter("ignore")
        t = Table.read(io.BytesIO(body), format="ascii.ecsv" if fmt == "ecsv" else "ascii.csv")
    assert t.colnames == rows.names and len(t) == n
    assert t["source_id"].dtype.kind == "i" and np.array_equal(t["source_id"], rows.data["source_id"])
    assert t["ref_epoch"].dtype.kind == "f"          # "2016.0", not "2016": readers keep floats
    assert _same(np.ma.filled(t["ra"].astype(float), np.nan), rows.data["ra"])
    assert _same(np.ma.filled(t["pmra"].astype(float), np.nan), rows.data["pmra"])
    assert np.array_equal(np.asarray(t["propagated"]).astype(str) == "True", rows.data["propagated"])
    if fmt == "ecsv":
        assert t["ra"].unit == "deg" and t.meta == {"catalog": "g"}


@pytest.mark.parametrize("n", SIZES)
def test_votable_parses_back_exactly(n):
    rows = _rows(n)
    body = votable(rows, description="x", epoch=2030.0, truncated=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = parse_single_table(io.BytesIO(body), verify="exception").to_table()
    assert len(t) == n and [int(s) for s in t["source_id"]] == rows.data["source_id"].tolist()
    assert _same(np.ma.filled(t["ra"].astype(float), np.nan), rows.data["ra"])
    assert _same(np.ma.filled(t["pmra"], np.nan), rows.data["pmra"])
    assert np.array_equal(np.asarray(t["propagated"], bool), rows.data["propagated"])


@pytest.mark.parametrize("n", [8, cells.ARROW_MIN_ROWS + 3])
def test_strings_escaped_for_each_format(n):
    words = np.resize(np.array(['plain', 'a,b', 'say "hi"', '<&>', ' lead', 'back\\slash', 'tab\there', 'ünï']), n)
    for dialect, parse in ((cells.CSV, lambda b: next(csv.reader(io.StringIO(b.decode())))),
                           (cells.JSON, lambda b: json.loads(b.decode().rstrip(",\n")))):
        body = cells.lines([words, np.arange(n)], dialect)
        lines = body.split(b"\n") if dialect is cells.CSV else [b.rstrip(b",") for b in body.split(b"],")]
        got = [parse(line if dialect is cells.CSV else line + b"]")[0] for line in lines if line.strip()]
        assert got == words.tolist()
    xml = cells.lines([words], cells.VOTABLE).decode()
    assert "&lt;&amp;&gt;" in xml and "<&>" not in xml


def test_both_paths_give_the_same_values():
    rows = _rows(cells.ARROW_MIN_ROWS + 500)
    cols = [rows.data[n] for n in rows.names]
    small = cells._python_lines(cols, cells.CSV)
    large = cells._arrow_lines(cols, cells.CSV).decode()
    a = list(csv.reader(io.StringIO(small)))
    b = list(csv.reader(io.StringIO(large)))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x[0] == y[0] and x[4] == y[4]
        assert [float(v) if v else None for v in x[1:4]] == [float(v) if v else None for v in y[1:4]]


def test_gsss_csv_counts_and_crlf():
    n = cells.ARROW_MIN_ROWS + 1
    body = gsss_csv([("objID", np.arange(n)), ("ra", np.linspace(0, 1, n))])
    lines = body.decode().split("\r\n")
    assert lines[0] == f"#Number of sources: {n}" and lines[1] == "objID,ra" and len(lines) == n + 3


def test_rendering_stops_at_the_deadline():
    cols = [np.arange(3 * cells.CHUNK_ROWS, dtype=float)]
    with pytest.raises(cells.DeadlineExceeded, match=f"0 of {3 * cells.CHUNK_ROWS} rows"):
        cells.lines(cols, cells.CSV, deadline=time.monotonic() - 1)
    assert cells.lines(cols, cells.CSV, deadline=time.monotonic() + 60).count(b"\n") == 3 * cells.CHUNK_ROWS
