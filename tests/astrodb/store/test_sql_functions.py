"""The SQL functions for psql users (migration 0002) give the Python API's answers.

astrodb.cone / astrodb.footprint return exactly the rows Store.cone / Store.footprint return
(same source_ids, positions within 0.01 mas, ordered by distance), at the catalog epoch and at
distant epochs with fast movers, across RA 0/360 and at the poles; astrodb.propagate agrees
with astrodb.epoch.propagate (and erfa.pmsafe) and astrodb.displacement_bound with
astrodb.epoch.displacement_bound. PostgreSQL only: the tests skip on SQLite.
"""
from __future__ import annotations

import uuid
import warnings

import erfa
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from astropy.table import Table, vstack

from astrodb import QueryError, epoch as epochs
from astrodb.query.regions import separation_deg
from tests.support.synth import gaia_like

MAS = 1.0 / 3.6e6  # deg
TOL_MAS = 0.01

#: Patches of the test sky: (ra, dec, radius, n, fast movers).
PATCHES = [(0.0, 0.0, 180.0, 3000, 0), (0.0, 89.7, 1.0, 500, 20), (123.0, -89.5, 1.0, 500, 20),
           (359.9, 10.0, 2.0, 1200, 20), (269.45, 4.69, 0.5, 1500, 40)]

def _readme_sql_examples() -> list[str]:
    """The psql statements of the README's ```sql block, one per line."""
    text = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = text.split("```sql\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("--")]


#: psql examples of the README, with 'hip' standing for a catalog ingested from Hipparcos.
README_EXAMPLES = _readme_sql_examples()


def _require_pg(store) -> None:
    if store.backend != "postgresql":
        pytest.skip("the SQL functions exist on PostgreSQL only")


def _sql(store, query: str, **params) -> list[tuple]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(query), params).fetchall()]


def _sql_table(store, query: str, **params) -> Table:
    with store.engine.connect() as conn:
        res = conn.execute(sa.text(query), params)
        names = list(res.keys())
        rows = res.fetchall()
    cols = list(zip(*rows)) if rows else [[] for _ in names]
    t = Table()
    for name, col in zip(names, cols):
        t[name] = np.array([np.nan if v is None else v for v in col],
                           dtype=np.int64 if name == "source_id" else float)
    return t


@pytest.fixture(scope="module")
def sky(store):
    """One catalog with stars all over the sky, dense patches at both poles, across RA 0/360
    and near Barnard's star, fast movers among them, and per-row reference epochs."""
    _require_pg(store)
    parts = [gaia_like(n, ra, dec, r, seed=10 + i, fast=fast) for i, (ra, dec, r, n, fast) in enumerate(PATCHES)]
    t = vstack(parts)
    t["source_id"] = np.arange(len(t), dtype=np.int64) + 1
    t["ref_epoch"][::7] = 2015.5
    name = f"sqlfn_sky_{uuid.uuid4().hex[:8]}"
    store.ingest_catalog(t, name)
    return name, t


def _cone_sql(store, name, ra, dec, radius, epoch=None) -> Table:
    if epoch is None:
        return _sql_table(store, "SELECT * FROM astrodb.cone(:c, :ra, :dec, :r)", c=name, ra=ra, dec=dec, r=radius)
    return _sql_table(store, "SELECT * FROM astrodb.cone(:c, :ra, :dec, :r, :e)", c=name, ra=ra, dec=dec,
                      r=radius, e=epoch)


def _assert_same_rows(got: Table, ref: Table) -> None:
    """Same sources, same positions (0.01 mas), same distances; got ordered by distance."""
    assert sorted(got["source_id"]) == sorted(ref["source_id"])
    assert np.all(np.diff(got["distance"]) >= 0)
    if not len(got):
        return
    g = got[np.argsort(got["source_id"])]
    r = ref[np.argsort(np.asarray(ref["source_id"]))]
    sep = separation_deg(g["ra"], g["dec"], np.asarray(r["ra"], float), np.asarray(r["dec"], float))
    assert sep.max() < TOL_MAS * MAS
    assert np.all((g["ra"] >= 0) & (g["ra"] < 360))
    np.testing.assert_allclose(g["distance"], np.asarray(r["distance"], float), rtol=0, atol=TOL_MAS * MAS)
    for col in ("pmra", "pmdec", "parallax", "radial_velocity", "ref_epoch", "mag", "ra_error"):
        want = np.ma.filled(np.ma.asarray(r[col]).astype(float), np.nan)
        np.testing.assert_array_equal(g[col], want)


def _cases(t, rng, n):
    """Cone centres: on stars (so small cones are not empty), at RA 0/360 and at the poles."""
    fixed = [(0.0, 90.0), (0.0, -90.0), (123.0, -89.6), (359.999, 10.0), (0.0, 10.0), (269.45, 4.69),
             (45.0, 89.9), (359.95, 9.5), (-0.02, 10.0), (360.03, 9.8)]
    out = []
    for k in range(n):
        radius = float(10 ** rng.uniform(np.log10(0.5 / 3600), np.log10(8.0)))
        if k < len(fixed):
            ra, dec = fixed[k]
        else:
            i = int(rng.integers(len(t)))
            ra = float(t["ra"][i]) + rng.uniform(-radius, radius)
            dec = float(np.clip(float(t["dec"][i]) + rng.uniform(-radius, radius), -90, 90))
        out.append((ra, dec, radius))
    return out


@pytest.mark.parametrize("epoch", [None, 1970.0, 2016.0, 2030.0, 2066.0])
def test_cone_equals_store_cone(store, sky, epoch):
    _require_pg(store)
    name, t = sky
    rng = np.random.default_rng(7 if epoch is None else int(epoch))
    total = 0
    for ra, dec, radius in _cases(t, rng, 40):
        got = _cone_sql(store, name, ra, dec, radius, epoch)
        ref = store.cone(ra, dec, radius, catalog=name, epoch=epoch)
        _assert_same_rows(got, ref)
        total += len(got)
    assert total > 500


def test_cone_epoch_form_with_null_epoch_is_the_catalog_epoch(store, sky):
    _require_pg(store)
    name, _ = sky
    a = _cone_sql(store, name, 359.9, 10.0, 0.5)
    b = _sql_table(store, "SELECT * FROM astrodb.cone(:c, 359.9, 10.0, 0.5, NULL)", c=name)
    assert len(a) > 10
    assert list(a["source_id"]) == list(b["source_id"])
    np.testing.assert_array_equal(a["ra"], b["ra"])


def test_fast_movers_are_found_at_distant_epochs(store, sky):
    _require_pg(store)
    name, t = sky
    fast = np.nonzero(np.hypot(t["pmra"], t["pmdec"]) > 1000)[0]
    assert len(fast) >= 50
    for epoch in (1966.0, 2066.0):
        p = epochs.propagate(t["ra"], t["dec"], t["pmra"], t["pmdec"], t["parallax"], t["radial_velocity"],
                             t["ref_epoch"], epoch)
        for i in fast[:25]:
            got = _cone_sql(store, name, float(p.ra[i]), float(p.dec[i]), 1.0 / 3600, epoch)
            assert t["source_id"][i] in got["source_id"]
            row = got[list(got["source_id"]).index(t["source_id"][i])]
            assert separation_deg(row["ra"], row["dec"], p.ra[i], p.dec[i]) < TOL_MAS * MAS
            assert separation_deg(p.ra[i], p.dec[i], t["ra"][i], t["dec"][i]) > 10 / 3600  # it did move


def _random_stars(n, seed):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    dec[:40] = rng.uniform(89.5, 89.99999, 40)
    dec[40:80] = -rng.uniform(89.5, 89.99999, 40)
    speed = 10 ** rng.uniform(-2, 4, n)  # up to 10 arcsec/yr
    ang = rng.uniform(0, 2 * np.pi, n)
    pmra, pmdec = speed * np.cos(ang), speed * np.sin(ang)
    plx = 10 ** rng.uniform(-2, 3, n)
    plx[rng.uniform(size=n) < 0.15] = np.nan
    plx[rng.uniform(size=n) < 0.05] *= -1
    rv = rng.uniform(-500, 500, n)
    rv[rng.uniform(size=n) < 0.4] = np.nan
    t0 = np.where(rng.uniform(size=n) < 0.5, 2016.0, 1991.25)
    t1 = t0 + rng.uniform(-50, 50, n)
    t1[:10] = t0[:10] + 50.0
    t1[10:20] = t0[10:20] - 50.0
    no_pm = rng.uniform(size=n) < 0.1
    pmra[no_pm] = np.nan
    return ra, dec, pmra, pmdec, plx, rv, t0, t1


def _propagate_sql(store, ra, dec, pmra, pmdec, plx, rv, t0, t1):
    def arr(a):
        return [None if np.isnan(x) else float(x) for x in a]

    rows = _sql(store, """
        SELECT p.ra, p.dec FROM unnest(:ra, :dec, :pmra, :pmdec, :plx, :rv, :t0, :t1) WITH ORDINALITY
                                AS u(ra, dec, pmra, pmdec, plx, rv, t0, t1, i),
               LATERAL astrodb.propagate(u.ra, u.dec, u.pmra, u.pmdec, u.plx, u.rv, u.t0, u.t1) p
         ORDER BY u.i""", ra=arr(ra), dec=arr(dec), pmra=arr(pmra), pmdec=arr(pmdec), plx=arr(plx),
                 rv=arr(rv), t0=arr(t0), t1=arr(t1))
    return np.array(rows, dtype=float).T


def test_propagate_equals_python_and_erfa(store):
    _require_pg(store)
    ra, dec, pmra, pmdec, plx, rv, t0, t1 = _random_stars(20000, 3)
    sra, sdec = _propagate_sql(store, ra, dec, pmra, pmdec, plx, rv, t0, t1)
    p = epochs.propagate(ra, dec, pmra, pmdec, plx, rv, t0, t1)
    sep = separation_deg(sra, sdec, p.ra, p.dec) / MAS
    assert sep.max() < TOL_MAS, f"worst {sep.max()} mas at {np.argmax(sep)}"
    assert np.all((sra >= 0) & (sra < 360))
    # No proper motion: exactly the input position.
    keep = ~p.moved
    assert keep.sum() > 100
    np.testing.assert_array_equal(sra[keep], ra[keep])
    np.testing.assert_array_equal(sdec[keep], dec[keep])
    # And erfa.pmsafe itself (the reference model; parallax/rv missing -> 0).
    ok = p.moved
    j0 = 2451545.0 + (t0[ok] - 2000.0) * 365.25
    j1 = 2451545.0 + (t1[ok] - 2000.0) * 365.25
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        era, edec, *_ = erfa.pmsafe(np.radians(ra[ok]), np.radians(dec[ok]),
                                    np.radians(pmra[ok] / 3.6e6) / np.cos(np.radians(dec[ok])),
                                    np.radians(pmdec[ok] / 3.6e6), np.nan_to_num(plx[ok]) / 1e3,
                                    np.nan_to_num(rv[ok]), j0, 0.0, j1, 0.0)
    sep = separation_deg(sra[ok], sdec[ok], np.degrees(era), np.degrees(edec)) / MAS
    assert sep.max() < TOL_MAS


def test_propagate_edge_cases(store):
    _require_pg(store)
    rows = _sql(store, """
        SELECT (astrodb.propagate(10.0, 20.0, NULL, 5.0, 1.0, 0.0, 2016.0, 2066.0)).ra,
               (astrodb.propagate(10.0, 20.0, 5.0, NULL, 1.0, 0.0, 2016.0, 2066.0)).dec,
               (astrodb.propagate(10.0, 20.0, 5.0, 5.0, 1.0, 0.0, 2016.0, NULL)).ra,
               (astrodb.propagate(-10.0, 20.0, NULL, NULL, NULL, NULL, 2016.0, 2066.0)).ra,
               (astrodb.propagate(0.0, 0.0, -10000.0, 0.0, 800.0, 0.0, 2016.0, 2066.0)).ra""")[0]
    assert rows[:3] == (10.0, 20.0, 10.0)
    assert rows[3] == 350.0
    p = epochs.propagate(0.0, 0.0, -10000.0, 0.0, 800.0, 0.0, 2016.0, 2066.0)
    assert abs(rows[4] - p.ra[0]) < TOL_MAS * MAS and rows[4] > 359.0


def test_displacement_bound_equals_python(store):
    _require_pg(store)
    cases = [(0.0, 0.0, 10.0, 0.0, 0.0), (10000.0, 0.0, 50.0, 0.0, 0.0), (10000.0, 1e-4, -50.0, 800.0, 0.0),
             (10.0, 1e-9, 100.0, 1.0, 1.02), (5000.0, 2e-6, 54.0, 700.0, 1.02), (1e6, 0.5, 3.0, 0.0, 0.0),
             (100.0, 0.1, 20.0, 0.0, 0.0), (8000.0, 3e-3, 300.0, 900.0, 1.0)]
    for pm, zeta, dt, plx, obs in cases:
        want = epochs.displacement_bound(pm, zeta, dt, parallax_max=plx, observer_distance=obs)
        got = _sql(store, "SELECT astrodb.displacement_bound(:a, :b, :c, :d, :e)", a=pm, b=zeta, c=dt, d=plx, e=obs)[0][0]
        assert got == pytest.approx(want, rel=1e-14, abs=1e-15), (pm, zeta, dt, plx, obs)
    assert _sql(store, "SELECT astrodb.displacement_bound(100.0, 'Infinity', 1.0)")[0][0] == 180.0
    assert _sql(store, "SELECT astrodb.displacement_bound(100.0, 0.0, 1.0)")[0][0] == pytest.approx(
        epochs.displacement_bound(100.0, 0.0, 1.0), rel=1e-14)


def _polygons():
    """(vertices, description): convex and concave, across RA 0, around a pole, large, tiny."""
    out = [
        (np.array([[359.0, 9.0], [1.0, 9.0], [1.0, 11.0], [0.6, 11.0], [0.6, 9.6], [359.4, 9.6],
                   [359.4, 11.0], [359.0, 11.0]]), "U across RA 0"),
        (np.array([[0.0, 89.5], [90.0, 89.5], [180.0, 89.5], [270.0, 89.5]]), "north pole cap"),
        (np.array([[123.0, -89.2], [243.0, -89.2], [3.0, -89.2]]), "south pole triangle"),
        (np.array([[269.3, 4.5], [269.6, 4.5], [269.6, 4.9], [269.3, 4.9]]), "README box"),
        (np.array([[269.44, 4.68], [269.46, 4.68], [269.46, 4.70]]), "tiny triangle"),
        (np.array([[300.0, -30.0], [60.0, -30.0], [60.0, 30.0], [300.0, 30.0]]), "large across RA 0"),
        (np.array([[269.0, 4.0], [270.0, 4.0], [270.0, 5.0], [269.5, 4.2], [269.0, 5.0]]), "concave (a notch)"),
    ]
    return out


@pytest.mark.parametrize("epoch", [None, 1970.0, 2066.0])
def test_footprint_equals_store_footprint(store, sky, epoch):
    _require_pg(store)
    name, t = sky
    total = 0
    for verts, what in _polygons():
        ref = store.footprint(verts, catalog=name, epoch=epoch)
        lit = "ARRAY[" + ", ".join(f"[{float(a)!r}, {float(d)!r}]" for a, d in verts) + "]::float8[]"
        q = f"SELECT * FROM astrodb.footprint(:c, {lit}" + (")" if epoch is None else f", {epoch!r})")
        got = _sql_table(store, q, c=name)
        _assert_same_rows(got, ref)
        # A flat array of (ra, dec) pairs, bound as a parameter, is the same polygon.
        flat = _sql_table(store, "SELECT * FROM astrodb.footprint(:c, :p, :e)", c=name,
                          p=[float(x) for x in verts.ravel()], e=epoch)
        assert list(flat["source_id"]) == list(got["source_id"]), what
        total += len(got)
    assert total > 300


@pytest.mark.parametrize("verts, words", [
    ("[[269.0, 4.0], [270.0, 4.0], [269.0, 5.0], [270.0, 5.0]]", "edges cross each other"),
    ("[[10, 0], [20, 0], [30, 0]]", "has no area"),
    ("[[10, 0], [10, 10], [10, 20], [10, 5]]", "has no area")])
def test_footprint_refuses_what_is_no_region(store, sky, verts, words):
    # A bow tie or a line: refused as the Python API refuses them (a line used to fail with a
    # syntax error in the generated SQL).
    _require_pg(store)
    name, _ = sky
    with pytest.raises(sa.exc.DBAPIError, match=f"astrodb.footprint: polygon {words}"):
        _sql(store, f"SELECT * FROM astrodb.footprint(:c, ARRAY{verts}::float8[])", c=name)
    with pytest.raises(QueryError, match=words):
        store.footprint(np.array(eval(verts), float), catalog=name)


def test_errors_name_the_bad_argument(store, sky):
    _require_pg(store)
    name, _ = sky
    bad = [
        ("SELECT * FROM astrodb.cone('no_such_catalog_x', 10, 10, 1)", "no_such_catalog_x"),
        ("SELECT * FROM astrodb.cone('no_such_catalog_x', 10, 10, 1, 2030.0)", "no_such_catalog_x"),
        (f"SELECT * FROM astrodb.cone('{name}', 10, 95, 1)", "dec"),
        (f"SELECT * FROM astrodb.cone('{name}', 10, -90.5, 1, 2030.0)", "dec"),
        (f"SELECT * FROM astrodb.cone('{name}', 10, 10, 0)", "radius"),
        (f"SELECT * FROM astrodb.cone('{name}', 10, 10, -1)", "radius"),
        (f"SELECT * FROM astrodb.cone('{name}', 10, 10, 180.5, 2030.0)", "radius"),
        (f"SELECT * FROM astrodb.cone('{name}', 10, 10, NULL)", "radius"),
        (f"SELECT * FROM astrodb.cone('{name}', 'NaN', 10, 1)", "ra"),
        (f"SELECT * FROM astrodb.cone('{name}', 10, 10, 1, 'Infinity')", "epoch"),
        ("SELECT * FROM astrodb.footprint('no_such_catalog_x', ARRAY[[0, 0], [1, 0], [1, 1]])", "no_such_catalog_x"),
        (f"SELECT * FROM astrodb.footprint('{name}', ARRAY[[0, 0], [1, 0]])", "at least 3"),
        (f"SELECT * FROM astrodb.footprint('{name}', ARRAY[[0, 0], [120, 0], [240, 0]])", "hemisphere"),
        (f"SELECT * FROM astrodb.footprint('{name}', ARRAY[[0, 0], [1, 0], [1, 95]])", "dec"),
        (f"SELECT * FROM astrodb.footprint('{name}', ARRAY[0, 0, 1, 0, 1])", "polygon"),
        (f"SELECT * FROM astrodb.footprint('{name}', ARRAY[[0, 0, 1], [1, 0, 1]])", "polygon"),
    ]
    for query, match in bad:
        with pytest.raises(sa.exc.DBAPIError, match=match):
            _sql(store, query)
    # A cone that selects nothing still checks its catalog.
    with pytest.raises(sa.exc.DBAPIError, match="no_such_catalog_x"):
        _sql(store, "SELECT * FROM astrodb.cone('no_such_catalog_x', 10, 10, 1e-9)")


def _nested_plans(store, query: str) -> list[str]:
    """EXPLAIN of every statement ``query`` runs, nested ones included (auto_explain)."""
    notices: list[str] = []
    with store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        raw.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        try:
            conn.execute(sa.text("LOAD 'auto_explain'"))
        except sa.exc.DBAPIError as exc:  # needs a superuser (the test server's default role is)
            conn.invalidate()
            pytest.skip(f"cannot load auto_explain: {exc.orig}")
        for setting in ("SET auto_explain.log_min_duration = 0", "SET auto_explain.log_nested_statements = on",
                        "SET auto_explain.log_level = notice"):
            conn.execute(sa.text(setting))
        conn.execute(sa.text(query)).fetchall()
        conn.invalidate()  # do not hand the session with auto_explain back to the pool
    return notices


def test_cone_plan_reads_the_healpix_ranges_of_the_catalogs_partition(store, sky):
    """Inside the functions: the catalog's partition alone (pruned at executor start-up), its
    (catalog_id, hpx29) index range-scanned once per range of the HEALPix cover (a nested loop;
    the cones plan astrodb._hpx_cover in, the footprint calls astrodb._hpx_ranges), no table
    scan, no JIT, no parallel workers."""
    _require_pg(store)
    name, _ = sky
    cid = _sql(store, "SELECT id FROM astrodb.catalogs WHERE name = :n", n=name)[0][0]
    for query in (f"SELECT * FROM astrodb.cone('{name}', 269.45, 4.69, 0.1)",
                  f"SELECT * FROM astrodb.cone('{name}', 269.45, 4.69, 0.1, 2030.0)",
                  f"SELECT * FROM astrodb.footprint('{name}', ARRAY[[269.3, 4.5], [269.6, 4.5], [269.6, 4.9]], 2030.0)"):
        plans = [p for p in _nested_plans(store, query) if "astrodb.sources" in p or "sources_c" in p]
        plan = "\n".join(plans)
        cover = "Function Scan on _hpx_ranges" if "footprint" in query else "WindowAgg"  # the cover's run merge
        assert cover in plan and "Nested Loop" in plan, plan
        assert "(hpx29 >= r.lo) AND (hpx29 <= r.hi)" in plan or "(hpx29 >= ((min(g.pixel)" in plan, plan
        assert "Seq Scan" not in plan and "Gather" not in plan and "JIT" not in plan, plan
        scanned = {w for line in plan.splitlines() for w in line.split() if w.startswith("sources_c") and w.endswith("_hpx29")}
        assert scanned == {f"sources_c{cid}_hpx29"}, plan


def _barnard_table():
    """Barnard's star (Gaia DR3 values at 2016.0) and a few neighbours."""
    t = gaia_like(60, 269.45, 4.69, 0.15, seed=5)
    t["source_id"] = np.arange(len(t), dtype=np.int64) + 100
    t.add_row({"source_id": 4472832130942575872, "ra": 269.45207511, "dec": 4.69336497, "ra_error": 0.026,
               "dec_error": 0.029, "pmra": -801.551, "pmdec": 10362.394, "parallax": 546.976,
               "radial_velocity": -110.6, "phot_g_mean_mag": 8.19, "ref_epoch": 2016.0})
    return t


def test_readme_examples_run(store, catalog_name):
    _require_pg(store)
    store.ingest_catalog(_barnard_table(), catalog_name)
    assert len(README_EXAMPLES) == 7
    outputs = []
    for example in README_EXAMPLES:
        with store.engine.connect() as conn:
            res = conn.execute(sa.text(example.replace("'hip'", f"'{catalog_name}'")))
            outputs.append((list(res.keys()), res.fetchall()))
    cols, rows = outputs[0]
    assert cols == ["source_id", "ra", "dec", "distance", "ra_error", "dec_error", "pmra", "pmra_error", "pmdec",
                    "pmdec_error", "parallax", "parallax_error", "radial_velocity", "radial_velocity_error",
                    "ref_epoch", "mag", "weight"]
    assert 4472832130942575872 in [r[0] for r in rows]
    # In 2030 Barnard's star has moved 2.4' north: out of a 0.1 deg cone's centre, still inside.
    cols, rows = outputs[1]
    star = [r for r in rows if r[0] == 4472832130942575872][0]
    p = epochs.propagate(269.45207511, 4.69336497, -801.551, 10362.394, 546.976, -110.6, 2016.0, 2030.0)
    assert separation_deg(star[1], star[2], p.ra[0], p.dec[0]) < TOL_MAS * MAS
    assert outputs[2][0] == ["source_id", "ra", "dec", "arcsec"] and len(outputs[2][1]) == 5
    assert len(outputs[3][1]) > 10 and len(outputs[4][1]) > 10
    # The README's propagate example: Barnard's star from Gaia DR3's J2016.0 position.
    cols, rows = outputs[5]
    p = epochs.propagate(269.44850252543836, 4.739420051112412, -801.551, 10362.394, 546.976, -110.6, 2016.0,
                         2030.0)
    assert cols == ["ra", "dec"] and separation_deg(rows[0][0], rows[0][1], p.ra[0], p.dec[0]) < TOL_MAS * MAS
    assert outputs[6][1][0][0] == pytest.approx(epochs.displacement_bound(10362.4, 0.0, 14.0), rel=1e-14)


@pytest.mark.parametrize("ra, dec, what", [(10.0, 95.0, "dec"), (10.0, -90.5, "dec"), ("'NaN'", 10.0, "ra"),
                                          (10.0, "'NaN'", "dec"), ("'Infinity'", 10.0, "ra")])
def test_propagate_refuses_impossible_positions(store, ra, dec, what):
    # (10, 95) used to come back as (190, 85) and (NaN, NaN) as (0, 90).
    _require_pg(store)
    with pytest.raises(sa.exc.DBAPIError, match=f"astrodb.propagate: {what} must be"):
        _sql(store, f"SELECT * FROM astrodb.propagate({ra}, {dec}, 1, 1, 1, 0, 2016, 2030)")
    with pytest.raises(ValueError, match="dec must be within"):
        epochs.propagate(10.0, 95.0, 1.0, 1.0, 1.0, 0.0, 2016.0, 2030.0)


def test_the_package_generator_builds_what_the_migrations_left(db_factory):
    """astrodb.store.sql_functions.create_sql() (what the next revision that changes the
    functions starts from) gives, function by function, the definitions the frozen SQL of the
    migrations installed."""
    from astrodb.store import sql_functions

    store = db_factory.store()
    try:
        _require_pg(store)
        query = ("SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p "
                 "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'astrodb' AND p.proname !~ '^prov_'")
        with store.engine.begin() as conn:
            migrated = dict(conn.exec_driver_sql(query).fetchall())
            conn.execute(sa.text(sql_functions.drop_sql()))
            assert not conn.exec_driver_sql(query).fetchall()
            conn.execute(sa.text(sql_functions.create_sql()))
            generated = dict(conn.exec_driver_sql(query).fetchall())
        assert set(generated) == set(migrated) and len(migrated) >= 10
        for name, body in migrated.items():
            assert generated[name] == body, name
    finally:
        store.close()
