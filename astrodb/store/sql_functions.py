"""The SQL functions psql users call (PostgreSQL): astrodb.propagate, astrodb.displacement_bound,
astrodb.cone and astrodb.footprint, generated here; each migration that creates or replaces them
keeps the SQL it ran frozen beside it (``migrations/versions/*.sql``), so that replaying an old
revision gives the schema it gave, and ``tests/astrodb/store/test_sql_functions.py`` checks that
:func:`create_sql` builds exactly the functions the migrations leave (a revision that changes
them writes its frozen SQL from here).

They give the Python API's answers (``Store.cone`` / ``Store.footprint`` /
``astrodb.epoch.propagate`` without observer), in degrees:

* ``astrodb.propagate(ra, dec, pmra, pmdec, parallax, radial_velocity, ref_epoch, epoch)``
  -> ``astrodb.radec`` (ra, dec): ERFA ``eraPmsafe`` space motion (parallax override,
  ``eraStarpv``'s relativistic Doppler relation, light time at both epochs) in the closed form
  ``astrodb.epoch`` uses. ``eraStarpv``'s fixed-point iteration has the exact solution
  d = 2 / ((1 - beta_r)^2 + 1 + beta_t^2) and ``eraStarpm``'s light-time equation is a quadratic
  whose root is taken in a cancellation-free form, so nothing needs iterating.
* ``astrodb.displacement_bound(pm_max, zeta_max, dt [, parallax_max, observer_distance])``:
  ``astrodb.epoch.displacement_bound``.
* ``astrodb.cone(catalog, ra, dec, radius [, epoch])``: pre-filter by the HEALPix ranges that
  cover the disc (``astrodb._hpx_ranges`` over ``astrodb.hpx_disc``, both here), one range scan
  each of the catalog partition's (catalog_id, hpx29) btree, the disc widened for another epoch
  by the catalog's motion statistics exactly as ``astrodb.query.search.prefilter_radius``;
  propagation; then the exact cut on the Vincenty distance (astropy's ``angular_separation``);
  ordered by distance.
* ``astrodb.hpx_disc(k, ra, dec, radius)``: the nested HEALPix pixels of order k that meet a
  disc (inclusive: every one of them, and a few more), in SQL.
* ``astrodb.footprint(catalog, polygon [, epoch])``: a spherical polygon with great-circle
  edges, as ``astrodb.query.regions.Polygon`` (gnomonic projection about the normalized vertex
  mean, even-odd rule), distance from the polygon's centre.

How they are built, for speed:

* ``cone`` is a one-line SQL function (inlined by the planner, so it costs nothing) over a
  plpgsql function that validates the arguments, looks the catalog up once and runs one static
  query with ``plan_cache_mode = force_generic_plan``: the query is planned once per session
  (a nested loop of index range scans over the cover's ranges, the sources partitions pruned at
  executor start-up to the catalog's own) and then only executed. Measured on 10 M rows: an
  inlined SQL function whose body holds the whole query is re-planned on every call (~0.5 ms
  more than a bare index query at 1'), and planning it with the catalog unknown keeps every
  partition in the plan; JIT compilation (tens to hundreds of ms for these expressions) and
  parallel workers cost more than a whole 2 deg cone, so ``jit`` and parallel workers are off
  inside these functions, and so are table scans and hash or merge joins: a generic plan does
  not know how few ranges a cone has.
* ``hpx_disc`` is one set-based query in ``OFFSET 0`` stages (about 0.07 ms for 24 pixels): a
  stage the planner flattened into the next would repeat its expressions in every use of them.
* The propagation arithmetic is written once (``_stages``) and rendered both as plpgsql
  statements (``astrodb.propagate``) and as a chain of subqueries inside the cone/footprint
  queries (SQL expressions per row are several times cheaper than a plpgsql call per row). Each
  link is an ``OFFSET 0`` subquery so that the planner evaluates it once per row instead of
  substituting (and so repeating) its expressions into the next link.
* ``footprint`` builds one query per call whose edge tests are constants (``EXECUTE``).

Input checks: ``astrodb.propagate`` raises (SQLSTATE 22023, naming the argument) for a
declination outside [-90, 90] deg or a non-finite position; ``astrodb.footprint`` refuses a
polygon with no area or with crossing edges, as ``astrodb.query.regions.Polygon`` does.
"""
from __future__ import annotations

import math

# --- constants (as astrodb.epoch / ERFA's erfam.h; Python computes the doubles) ---------------
_DAU = 149597870.7e3                  # astronomical unit (m)
_CMPS = 299792458.0                   # speed of light (m/s)
_DC = 86400.0 / (_DAU / _CMPS)        # speed of light (au/day)
_DR2AS = 206264.8062470963551564734   # arcseconds per radian
_C_AUYR = _DC * 365.25                # speed of light (au per Julian year)
_F = 326.0                            # eraPmsafe: parallax >= F * proper motion (rad/yr)
_PXMIN = 5e-7                         # eraPmsafe: minimum parallax (arcsec)
_SEPS_SLACK = 1.0 + 1e-6              # as astrodb.epoch: "might the override apply?" margin

#: Slack added to every pre-filter radius (deg), as astrodb.query.search._PAD_DEG.
_PAD_DEG = 1e-7

K = {
    "MAS2RAD": repr(math.pi / (180.0 * 3600.0 * 1000.0)),
    "D2R": repr(math.pi / 180.0),     # as numpy.radians
    "R2D": repr(180.0 / math.pi),     # as numpy.degrees
    "G0": repr(_DR2AS / _C_AUYR),     # light time (yr) of a star at parallax 1"
    "BETA": repr(1e3 / _CMPS),        # radial velocity (km/s) -> fraction of c
    "THR": repr(_F * math.sqrt(2.0) * _SEPS_SLACK),
    "F": repr(_F),
    "PXMIN": repr(_PXMIN),
    "PAD": repr(_PAD_DEG),
}

#: GUCs of the functions that run the queries: no JIT compilation (it costs more than any cone)
#: and no parallel workers (their start-up costs more than all but huge cones).
_QUERY_SETTINGS = ("SET jit = off\nSET max_parallel_workers_per_gather = 0\n"
                   # the ranges of astrodb._hpx_cover are few: one index range scan each, never a table scan
                   "SET enable_seqscan = off\nSET enable_hashjoin = off\nSET enable_mergejoin = off\n"
                   # its pixels are tens, estimated 10^5: a hash table sized for those costs more than the cone
                   "SET enable_hashagg = off")


def _k(text: str) -> str:
    """Substitute the {NAME} constants of K into SQL text (other braces are left alone)."""
    for name, value in K.items():
        text = text.replace("{" + name + "}", value)
    return text


# --- propagation, written once -------------------------------------------------------------------
def _stages(ra: str, dec: str, pmra: str, pmdec: str, plx: str, rv: str, t0: str, ep: str):
    """The propagation as successive groups of ``name: SQL expression``.

    An expression uses the input expressions and the names of earlier groups. The result is
    ``_ra2``/``_dec2`` (deg; RA not yet wrapped, Dec not yet clipped), valid when ``_ok``;
    otherwise the source keeps its input position. Times are Julian years, lengths in units of
    the (pmsafe) distance r; see astrodb.epoch._kernel for the derivation.
    """
    pa = f"({pmra} * {{MAS2RAD}})"
    pd = f"({pmdec} * {{MAS2RAD}})"
    mu = f"sqrt({pa} * {pa} + {pd} * {pd})"
    px = f"({plx} * 1e-3)"
    s1 = {
        "_sd": f"sin({dec} * {{D2R}})",
        "_cd": f"cos({dec} * {{D2R}})",
        "_pa": pa,
        "_pd": pd,
        "_mu": mu,
        # eraPmsafe's parallax override max(px, F * seps, PXMIN) (greatest() ignores a NULL px);
        # seps (the coordinate-motion angle) only where it can matter. _g = r / c (yr).
        "_g": f"{{G0}} / CASE WHEN {px} >= {{THR}} * {mu} THEN greatest({px}, {{PXMIN}}) "
              f"ELSE greatest({px}, {{F}} * astrodb._pmsafe_seps({dec} * {{D2R}}, {pa} / cos({dec} * {{D2R}}), {pd}), "
              f"{{PXMIN}}) END",
        "_bsr": f"coalesce({rv}, 0.0) * {{BETA}}",          # observed radial beta
    }
    s2 = {
        # eraStarpv: the observed -> inertial fixed point d = 1 + beta_r(inertial), closed form.
        "_d": "2.0 / ((1.0 - _bsr) * (1.0 - _bsr) + 1.0 + (_mu * _g) * (_mu * _g))",
        "_m": f"({ep} - {t0}) / _g",                        # elapsed time in units of r / c
        "_ok": f"{pmra} IS NOT NULL AND {pmdec} IS NOT NULL "
               f"AND _bsr * _bsr + (_mu * _g) * (_mu * _g) <= 0.25 "   # eraStarpv: faster stays
               f"AND abs(({ep} - {t0}) / _g) < 'Infinity'::float8",
    }
    s3 = {
        # eraStarpm's light time: x = T / tl1 solves
        # (d (1 - beta_r))^2 x^2 - 2 (d + m) x + m (2 + m) = 0 (smaller root, no cancellation).
        "_x": "_m * (2.0 + _m) / (_d + _m + sqrt((_d + _m) * (_d + _m) "
              "- (_d * (1.0 - _bsr)) * (_d * (1.0 - _bsr)) * _m * (2.0 + _m)))",
    }
    s4 = {
        # Observed place: r [(1 + (d - 1) x) u + d x tl1 (pa e_a + pd e_d)] in the local frame.
        "_a": "1.0 + (_d - 1.0) * _x",
        "_b": "_pa * (_d * _x * _g)",
        "_c": "_pd * (_d * _x * _g)",
        "_xx": "(1.0 + (_d - 1.0) * _x) * _cd - _pd * (_d * _x * _g) * _sd",
    }
    s5 = {
        # Direction: dRA = atan2(b, X); sin(dDec) = (c - sd b^2 / (H + X)) / N when X > 0.
        "_ra2": f"{ra} + {{R2D}} * atan2(_b, _xx)",
        "_dec2": f"CASE WHEN _xx > 0.0 THEN {dec} + {{R2D}} * asin((_c - _sd * _b * _b / "
                 f"(sqrt(_xx * _xx + _b * _b) + _xx)) / sqrt(_a * _a + _b * _b + _c * _c)) "
                 f"ELSE {{R2D}} * atan2(_a * _sd + _c * _cd, sqrt(_xx * _xx + _b * _b)) END",
    }
    return [{name: _k(expr) for name, expr in group.items()} for group in (s1, s2, s3, s4, s5)]


def _pipeline(base: str, epoch: str) -> str:
    """``base``, a SELECT with the columns ra, "dec", pmra, pmdec, parallax, radial_velocity,
    ref_epoch (and any others), extended with ra_t, dec_t: the positions at ``epoch``."""
    sql = base
    groups = _stages("q.ra", 'q."dec"', "q.pmra", "q.pmdec", "q.parallax", "q.radial_velocity",
                     "q.ref_epoch", epoch)
    for i, group in enumerate(groups):
        cols = ",\n         ".join(f"{expr} AS {name}" for name, expr in group.items())
        barrier = "" if i == 0 else "\n  OFFSET 0"   # the base itself holds plain columns
        sql = f"SELECT q.*,\n         {cols}\n  FROM ({sql}{barrier}) q"
    return (f"SELECT q.*, astrodb._wrap360(CASE WHEN q._ok THEN q._ra2 ELSE q.ra END) AS ra_t,\n"
            f"       CASE WHEN q._ok THEN greatest(-90.0, least(90.0, q._dec2)) ELSE q.\"dec\" END AS dec_t\n"
            f"  FROM ({sql}\n  OFFSET 0) q")


def _propagate_plpgsql() -> str:
    groups = _stages("ra", '"dec"', "pmra", "pmdec", "parallax", "radial_velocity", "ref_epoch", "epoch")
    names = [name for g in groups for name in g]
    lines = []
    for i, g in enumerate(groups):
        for name, expr in g.items():
            lines.append(f"  {name} := {expr};")
        if i == 1:
            lines.append("  IF NOT coalesce(_ok, false) THEN\n"
                         "    RETURN ROW(astrodb._wrap360(ra), \"dec\")::astrodb.radec;\n  END IF;")
    decls = "\n".join(f"  {n} {'boolean' if n == '_ok' else 'float8'};" for n in names)
    return f"""
CREATE FUNCTION astrodb.propagate(ra float8, "dec" float8, pmra float8, pmdec float8,
                                  parallax float8, radial_velocity float8,
                                  ref_epoch float8, epoch float8)
RETURNS astrodb.radec
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
{decls}
BEGIN
  IF pmra IS NULL OR pmdec IS NULL OR ra IS NULL OR "dec" IS NULL THEN
    RETURN ROW(astrodb._wrap360(ra), "dec")::astrodb.radec;
  END IF;
{chr(10).join(lines)}
  RETURN ROW(astrodb._wrap360(_ra2), greatest(-90.0, least(90.0, _dec2)))::astrodb.radec;
END
$fn$;
COMMENT ON FUNCTION astrodb.propagate(float8, float8, float8, float8, float8, float8, float8, float8) IS
'Position (deg) at Julian year epoch of a star at (ra, dec) (deg) at Julian year ref_epoch, with pmra '
'(mas/yr, times cos dec), pmdec (mas/yr), parallax (mas) and radial_velocity (km/s): ERFA eraPmsafe '
'space motion, as astrodb.epoch.propagate. NULL pmra or pmdec, or NULL epoch: the position unchanged.';
"""


# --- cone / footprint ------------------------------------------------------------------------------
#: Output columns after source_id, ra, dec, distance.
_REST = ("ra_error", "dec_error", "pmra", "pmra_error", "pmdec", "pmdec_error", "parallax",
         "parallax_error", "radial_velocity", "radial_velocity_error", "ref_epoch", "mag", "weight")
_COLUMNS = ("source_id bigint, ra float8, \"dec\" float8, distance float8, "
            + ", ".join(f"{c} float8" for c in _REST))
_BASE_COLS = "s.source_id, s.ra, s.\"dec\", " + ", ".join(f"s.{c}" for c in _REST)


def _separation(lon1: str, slat1: str, clat1: str, ra2: str, dec2: str) -> str:
    """Vincenty distance (deg), as astropy's angular_separation, from a centre given by its
    longitude (rad) and the sine and cosine of its latitude to (ra2, dec2) (deg)."""
    return _k(
        f"{{R2D}} * atan2(sqrt((cos({dec2} * {{D2R}}) * sin({ra2} * {{D2R}} - {lon1}))^2 "
        f"+ ({clat1} * sin({dec2} * {{D2R}}) - {slat1} * cos({dec2} * {{D2R}}) * cos({ra2} * {{D2R}} - {lon1}))^2), "
        f"{slat1} * sin({dec2} * {{D2R}}) + {clat1} * cos({dec2} * {{D2R}}) * cos({ra2} * {{D2R}} - {lon1}))")


def _in_ranges(ra: str, dec: str, radius: str, catalog: str, order: str | None = None) -> str:
    """The pre-filter: the sources of ``catalog`` in the HEALPix ranges covering the disc, one
    range scan each of the (catalog_id, hpx29) index; ``s`` is the sources, ``r`` the ranges.
    ``order``: the cover's order (``astrodb._cover_order``), the cover then planned into the
    calling static query (``astrodb._hpx_cover``); None: through ``astrodb._hpx_ranges``, for
    dynamic SQL, planned per call, where planning the inlined cover would cost milliseconds.
    LATERAL keeps that plan whatever the statistics say (measured: a join planned on a Gaia
    partition not yet analyzed read all of it, 1.4 s instead of ~1 ms). A sharded catalog's
    rows are elsewhere: :func:`_shard_ranges`."""
    cover = (f"astrodb._hpx_cover({ra}, {dec}, {radius}, {order})" if order is not None
             else f"astrodb._hpx_ranges({ra}, {dec}, {radius}, {catalog})")
    return (f"{cover} r\n"
            f"  CROSS JOIN LATERAL (SELECT * FROM astrodb.sources s0 WHERE s0.catalog_id = {catalog}\n"
            f"    AND s0.hpx29 BETWEEN r.lo AND r.hi OFFSET 0) s")


#: The FROM clause of a sharded catalog's pre-filter, as a format() string of the catalog id and
#: the cover's ranges (:func:`_shard_ranges`).
_SHARDED_FROM = "astrodb.sharded_sources s WHERE s.catalog_id = %s AND (%s)"


def _shard_ranges(target: str, ra: str, dec: str, radius: str, catalog: str, order: str) -> str:
    """A plpgsql statement setting ``target`` (text) to the pre-filter's FROM clause for a sharded
    catalog (:mod:`astrodb.shard`): its rows are ``astrodb.sharded_sources``, foreign partitions on
    the shards, and the cover's ranges are written into the query as constants. The planner then
    prunes the partitions to those the cover meets and postgres_fdw sends each one query holding
    every range (measured, 47-row cones through three shards: 2.1 ms, against 6.2 ms for one
    parameterized remote scan per range as the one-server LATERAL plan makes)."""
    return (f"SELECT format('{_SHARDED_FROM}', {catalog}, coalesce(string_agg(format("
            f"'s.hpx29 BETWEEN %s AND %s', c.lo, c.hi), ' OR '), 'false')) INTO {target}\n"
            f"    FROM astrodb._hpx_cover({ra}, {dec}, {radius}, {order}) c;")


def _sharded(catalog: str) -> str:
    """SQL: whether ``catalog`` (an id) is sharded (has a shard map)."""
    return f"EXISTS (SELECT 1 FROM astrodb.shard_ranges m WHERE m.catalog_id = {catalog})"


# --- HEALPix cover of a disc, in SQL -------------------------------------------------------------
#: Largest HEALPix order the cones' pixel ranges use (order-20 pixels are 0.2 arcsec across).
_HPX_MAX_ORDER = 20
#: Side of an order-0 pixel (deg): sqrt(4 pi / 12).
_HPX_SIZE0 = math.degrees(math.sqrt(4.0 * math.pi / 12.0))
#: The catalogs' density map's order (astrodb.store.schema.DENSITY_ORDER, frozen by revision 0010).
_DENSITY_ORDER = 7
#: Whole sky, square degrees.
_SKY_DEG2 = 4.0 * math.pi * math.degrees(1.0) ** 2
#: Rows expected in a cone from which each further order of its cover pays (astrodb._cover_order).
_REFINE_ROWS = (2, 20, 150)


def _max_pixrad(order: int) -> float:
    """Largest angular distance (rad) from an order's pixel centre to a point of the pixel: the
    distance between the centre at (z = 2/3, phi = pi / (4 nside)) and the corner at
    (z = 1 - (1 - 1/nside)^2 / 3, phi = 0), where the most distorted pixels are (Gorski et al.
    2005); checked against every pixel's corners up to order 8 in the tests."""
    ns = 2 ** order

    def vec(z: float, phi: float) -> tuple[float, float, float]:
        r = math.sqrt((1.0 - z) * (1.0 + z))
        return r * math.cos(phi), r * math.sin(phi), z

    (ax, ay, az), (bx, by, bz) = vec(2.0 / 3.0, math.pi / (4 * ns)), vec(1.0 - (1.0 - 1.0 / ns) ** 2 / 3.0, 0.0)
    cross = math.sqrt((ay * bz - az * by) ** 2 + (az * bx - ax * bz) ** 2 + (ax * by - ay * bx) ** 2)
    return math.atan2(cross, ax * bx + ay * by + az * bz)  # not acos: exact for the tiny angles of high orders


def _ring_of(theta: str) -> str:
    """The (fractional) ring index at colatitude theta (rad), rings 1 .. 4 nside - 1 from the
    north pole; in the polar caps from sin(theta / 2), which keeps its precision near the poles."""
    return (f"CASE WHEN {theta} < {math.acos(2.0 / 3.0)!r} THEN ns * {math.sqrt(6.0)!r} * sin({theta} / 2) "
            f"WHEN {theta} > {math.pi - math.acos(2.0 / 3.0)!r} THEN 4 * ns - ns * {math.sqrt(6.0)!r} * cos({theta} / 2) "
            f"ELSE ns * (2 - 1.5 * cos({theta})) END")


def _hpx_impl() -> str:
    pixrad = "ARRAY[" + ", ".join(repr(_max_pixrad(k) * (1 + 1e-9) + 1e-12) for k in range(30)) + "]::float8[]"
    # Bits of ix (iy) to the even (odd) bits of the nested index, a byte at a time from a table
    # (one expression instead of five mask-and-shift stages: fewer plan nodes to start per cone).
    table = "(ARRAY[" + ", ".join(str(sum(((i >> b) & 1) << (2 * b) for b in range(8))) for i in range(256)) + "]::int8[])"

    def spread(x: str) -> str:
        return " | ".join(f"({table}[((({x}) >> {8 * j}) & 255) + 1] << {16 * j})" if j else f"{table}[(({x}) & 255) + 1]"
                          for j in range(4))
    return f"""
-- Nested HEALPix pixels of order k (0..29, unchecked) that meet the disc of radius (deg) about
-- (ra, dec): every pixel whose centre is within radius + the order's largest pixel radius, found
-- ring by ring (the rings' z and pixel longitudes: Gorski et al. 2005, ApJ 622, 759), then
-- (ring, pixel) -> (face, x, y) -> nested index. Each stage is an OFFSET 0 subquery, so its
-- expressions are computed once per row. A plain SQL function, so that a static query calling
-- it plans it in (no function call, no tuplestore: measured ~50 us a cone less than plpgsql).
CREATE FUNCTION astrodb._hpx_pixels(k int, ra float8, "dec" float8, radius float8)
RETURNS TABLE (pixel bigint)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 30
AS $fn$
  WITH d0 AS (
    SELECT _hpx_pixels.k AS k, (1::bigint << _hpx_pixels.k) AS ns, radians(90.0 - _hpx_pixels."dec") AS th0,
           radians(_hpx_pixels.ra) AS ph0, least(radians(_hpx_pixels.radius) + ({pixrad})[_hpx_pixels.k + 1], pi()) AS rb
    OFFSET 0
  ), d AS (
    -- the rings within the enlarged disc's colatitudes, one more on each side (tested below)
    SELECT k, ns, th0, ph0, sin(th0) AS s0, sin(rb / 2) AS h0,
           greatest(1, floor({_ring_of("greatest(th0 - rb, 0.0)")})::bigint - 1) AS r_lo,
           least(4 * ns - 1, ceil({_ring_of("least(th0 + rb, pi())")})::bigint + 1) AS r_hi
    FROM d0 OFFSET 0
  ), rz AS (
    -- each ring's colatitude (in the caps from its arc sine, exact near the poles), pixels, offset
    SELECT k, ns, th0, ph0, s0, h0, ring,
           CASE WHEN ring < ns THEN 2 * asin(ring / (ns * {math.sqrt(6.0)!r}))
                WHEN ring > 3 * ns THEN pi() - 2 * asin((4 * ns - ring) / (ns * {math.sqrt(6.0)!r}))
                ELSE acos((2 * ns - ring) * 2.0 / (3.0 * ns)) END AS th,
           CASE WHEN ring < ns THEN 4 * ring WHEN ring > 3 * ns THEN 4 * (4 * ns - ring) ELSE 4 * ns END AS npr,
           CASE WHEN ring < ns OR ring > 3 * ns OR (ring + ns) % 2 = 0 THEN 0.5 ELSE 0.0 END AS shift
    FROM d, generate_series(d.r_lo, d.r_hi) AS ring OFFSET 0
  ), rh AS (
    -- haversines: the ring point at longitude offset dphi is within rb of the centre when
    -- sin^2(dphi / 2) <= (sin^2(rb / 2) - sin^2((th - th0) / 2)) / (sin th sin th0)
    SELECT k, ns, ph0, ring, npr, shift, h0 * h0 - sin((th - th0) / 2) ^ 2 AS h, sin(th) * s0 AS den
    FROM rz OFFSET 0
  ), rp AS (
    -- half-width in longitude of the ring's arc within the enlarged disc (pi: the whole ring; < 0: none)
    SELECT k, ns, ph0, ring, npr, shift,
           CASE WHEN h < 0 THEN -1.0 WHEN h >= den THEN pi() ELSE 2 * asin(sqrt(h / den)) END AS dphi
    FROM rh OFFSET 0
  ), px AS (
    SELECT k, ns, ring, (((j % npr) + npr) % npr) + 1 AS iphi
    FROM rp, generate_series(
        CASE WHEN dphi >= pi() THEN 0 ELSE ceil((ph0 - dphi) * npr / (2 * pi()) - shift)::bigint END,
        CASE WHEN dphi >= pi() THEN npr - 1 ELSE floor((ph0 + dphi) * npr / (2 * pi()) - shift)::bigint END) AS j
    WHERE dphi >= 0 OFFSET 0
  ), fm AS (
    SELECT k, ns, ring, iphi,
           (iphi - ((ring - ns + 1) >> 1) + ns - 1) >> k AS ifm,
           (iphi - ((3 * ns + 1 - ring) >> 1) + ns - 1) >> k AS ifp
    FROM px OFFSET 0
  ), f AS (
    SELECT k, ns, ring, iphi,
           CASE WHEN ring < ns THEN (iphi - 1) / ring
                WHEN ring > 3 * ns THEN 8 + (iphi - 1) / (4 * ns - ring)
                WHEN ifp = ifm THEN ifp | 4 WHEN ifp < ifm THEN ifp ELSE ifm + 8 END AS face,
           CASE WHEN ring < ns THEN ring WHEN ring > 3 * ns THEN 4 * ns - ring ELSE ns END AS nr,
           CASE WHEN ring < ns OR ring > 3 * ns THEN 0 ELSE (ring + ns) & 1 END AS kshift
    FROM fm OFFSET 0
  ), t AS (
    SELECT k, ns, face, ring - (2 + (face >> 2)) * ns + 1 AS irt,
           2 * iphi - (2 * (face & 3) + CASE WHEN face >> 2 = 1 THEN 0 ELSE 1 END) * nr - kshift - 1 AS ipt
    FROM f OFFSET 0
  ), xy AS (
    SELECT k, face, (ipt - irt) >> 1 AS ix, (-ipt - irt) >> 1 AS iy
    FROM (SELECT k, face, irt, CASE WHEN ipt >= 2 * ns THEN ipt - 8 * ns ELSE ipt END AS ipt FROM t OFFSET 0) u
    OFFSET 0
  )
  SELECT (face << (2 * k)) | {spread("ix")} | (({spread("iy")}) << 1) FROM xy
$fn$;

CREATE FUNCTION astrodb.hpx_disc(k int, ra float8, "dec" float8, radius float8)
RETURNS TABLE (pixel bigint)
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 30
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $fn$
BEGIN
  IF k IS NULL OR k < 0 OR k > 29 THEN
    RAISE EXCEPTION 'astrodb.hpx_disc: order must be within [0, 29], got %', coalesce(k::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN QUERY SELECT p.pixel FROM astrodb._hpx_pixels(k, ra, "dec", radius) p;
END
$fn$;
COMMENT ON FUNCTION astrodb.hpx_disc(int, float8, float8, float8) IS
'Nested HEALPix pixels of order k that meet the disc of radius (deg) about (ra, dec) (deg): all of them, '
'and a few more (those within the largest pixel radius of the disc).';

-- The nested pixel of order k (at most 15) holding (ra, dec) (Gorski et al. 2005, eqs. 11-15 and
-- the nested numbering of their Sect. 4): the density map's pixel under a cone's centre.
CREATE FUNCTION astrodb._hpx_pixel(k int, ra float8, "dec" float8)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $fn$
DECLARE
  ns bigint := 1::bigint << k;
  z float8 := sin(radians("dec"));
  tt float8 := (ra - 360.0 * floor(ra / 360.0)) / 90.0;   -- [0, 4)
  tmp float8;
  jp bigint;
  jm bigint;
  face bigint;
  ix bigint;
  iy bigint;
BEGIN
  IF abs(z) <= 2.0 / 3.0 THEN
    jp := floor(ns * (0.5 + tt) - ns * z * 0.75);
    jm := floor(ns * (0.5 + tt) + ns * z * 0.75);
    face := CASE WHEN jp >> k = jm >> k THEN (jp >> k) | 4 WHEN jp >> k < jm >> k THEN jp >> k ELSE (jm >> k) + 8 END;
    ix := jm & (ns - 1);
    iy := ns - (jp & (ns - 1)) - 1;
  ELSE
    face := least(3, floor(tt)::bigint);
    tmp := ns * sqrt(3.0 * (1.0 - abs(z)));
    jp := least(ns - 1, floor((tt - face) * tmp)::bigint);
    jm := least(ns - 1, floor((1.0 - (tt - face)) * tmp)::bigint);
    IF z > 0 THEN
      ix := ns - jm - 1; iy := ns - jp - 1;
    ELSE
      face := face + 8; ix := jp; iy := jm;
    END IF;
  END IF;
  RETURN (face << (2 * k)) | {spread("ix")} | (({spread("iy")}) << 1);   -- as astrodb._hpx_pixels
END
$fn$;

-- The order of a cone's cover: k0, whose pixels are 1-2 radii across (~8 of them), or finer where
-- the catalog is dense enough to pay for it. A finer order covers the disc more tightly (fewer
-- rows read) with more pixels: from k0 to k0 + 3 a cover is ~8, 15, 36 and 100 pixels of ~8, 3.7,
-- 2.1 and 1.5 times the disc's area (measured), and a pixel costs about as much as a row read.
-- Each further order pays from {", ".join(map(str, _REFINE_ROWS))} rows expected in the disc, from the
-- catalog's order-{_DENSITY_ORDER} density map (catalog_density) under the centre. NULL catalog: k0 + 2.
CREATE FUNCTION astrodb._cover_order(catalog bigint, ra float8, "dec" float8, radius float8)
RETURNS int
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $fn$
DECLARE
  k0 int := CASE WHEN radius >= {_HPX_SIZE0!r} THEN 0
                 ELSE least({_HPX_MAX_ORDER}, floor(ln({_HPX_SIZE0!r} / greatest(radius, 1e-12)) / ln(2.0))::int) END;
  n float8;
  d float8;
BEGIN
  IF catalog IS NULL THEN
    RETURN least({_HPX_MAX_ORDER}, k0 + 2);
  END IF;
  SELECT m.count INTO n FROM astrodb.catalog_density m
   WHERE m.catalog_id = catalog AND m.norder = {_DENSITY_ORDER} AND m.pixel = astrodb._hpx_pixel({_DENSITY_ORDER}, ra, "dec");
  d := coalesce(n, 0.0) * pi() * radius ^ 2 / {_SKY_DEG2 / (12 * 4 ** _DENSITY_ORDER)!r};
  RETURN least({_HPX_MAX_ORDER}, k0 + {" + ".join(f"(d >= {t})::int" for t in _REFINE_ROWS)});
END
$fn$;

-- Inclusive order-29 ranges (lo, hi) whose union holds every position within radius (deg) of
-- (ra, dec): the pixels of astrodb._hpx_pixels of order k, adjacent ones merged. What a cone
-- reads of the (catalog_id, hpx29) index, one range scan per range. Plain SQL, so that the
-- cones' static queries plan it in.
CREATE FUNCTION astrodb._hpx_cover(ra float8, "dec" float8, radius float8, k int)
RETURNS TABLE (lo bigint, hi bigint)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 10
AS $fn$
  SELECT min(g.pixel) << (2 * (29 - _hpx_cover.k)), ((max(g.pixel) + 1) << (2 * (29 - _hpx_cover.k))) - 1
    FROM (SELECT p.pixel, p.pixel - row_number() OVER (ORDER BY p.pixel) AS run
            FROM astrodb._hpx_pixels(_hpx_cover.k, _hpx_cover.ra, _hpx_cover."dec", _hpx_cover.radius) p) g
   GROUP BY g.run
$fn$;

-- The ranges of astrodb._hpx_cover at the order astrodb._cover_order chooses, as a call of its
-- own (planned once per session): for dynamic SQL and clients.
CREATE FUNCTION astrodb._hpx_ranges(ra float8, "dec" float8, radius float8, catalog bigint DEFAULT NULL)
RETURNS TABLE (lo bigint, hi bigint)
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 10
SET plan_cache_mode = force_generic_plan
{_QUERY_SETTINGS}
AS $fn$
BEGIN
  RETURN QUERY SELECT c.lo, c.hi FROM astrodb._hpx_cover(ra, "dec", radius, astrodb._cover_order(catalog, ra, "dec", radius)) c;
END
$fn$;

-- The [lo, hi) cell ranges of catalog_regions.cells / .claimed (little-endian int64 pairs).
CREATE FUNCTION astrodb._cell_ranges(b bytea)
RETURNS TABLE (lo bigint, hi bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
  SELECT (SELECT sum(get_byte(b, 16 * i + j)::bigint << (8 * j)) FROM generate_series(0, 7) j)::bigint,
         (SELECT sum(get_byte(b, 16 * i + 8 + j)::bigint << (8 * j)) FROM generate_series(0, 7) j)::bigint
    FROM generate_series(0, coalesce(length(b), 0) / 16 - 1) i
$fn$;

-- Raise unless a query of the disc (a cone, or a polygon's bounding cap) at epoch (NULL: the
-- stored positions) is exact on a catalog loaded for a region (catalog_regions), as
-- astrodb.query.region_limits.check: the loads finished, the epoch within theirs, and every
-- cell meeting the disc widened by how far a star can move by the epoch among the cells the
-- catalog holds every star of. The cells meeting the disc are taken generously (those within a
-- cell's radius of it), so a disc touching the region's edge may be refused where the Python
-- API, which covers the region exactly, accepts it.
CREATE FUNCTION astrodb._check_region(fn text, cid bigint, p_catalog text, ra float8, "dec" float8,
                                      radius float8, epoch float8, kind text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $fn$
DECLARE
  lim record;
  reach float8 := 0.0;
  held text;
BEGIN
  IF EXISTS (SELECT 1 FROM astrodb.catalog_regions r WHERE r.catalog_id = cid AND r.full_sky AND r.complete) THEN
    RETURN;   -- loaded whole since
  END IF;
  SELECT count(*) AS n, min(r.epoch_lo) AS lo, max(r.epoch_hi) AS hi, max(r.norder) AS k, min(r.ref_epoch) AS ref,
         max(r.pm_max) AS pm, max(r.radial_rate_max) AS rr, max(r.parallax_max) AS px,
         string_agg(format('%s (epochs %s–%s)', r.description, r.epoch_lo, r.epoch_hi), '; ' ORDER BY r.id) AS loads
    INTO lim
    FROM astrodb.catalog_regions r WHERE r.catalog_id = cid AND NOT r.full_sky AND r.complete;
  IF lim.n = 0 THEN
    RAISE EXCEPTION '%: catalog "%" was loaded for a region (%) whose load has not finished: rerun the same '
      'ingest to load the files that are missing', fn, p_catalog,
      (SELECT string_agg(r.description, ', ' ORDER BY r.id) FROM astrodb.catalog_regions r
        WHERE r.catalog_id = cid AND NOT r.full_sky) USING ERRCODE = 'invalid_parameter_value';
  END IF;
  held := format('catalog "%s" holds only the region%s loaded with %s', p_catalog,
                 CASE WHEN lim.n > 1 THEN 's' ELSE '' END, lim.loads);
  IF epoch IS NOT NULL AND NOT (epoch BETWEEN lim.lo AND lim.hi) THEN
    RAISE EXCEPTION '%: %: epoch % is outside them (load the region again with epochs that include %, --epochs LO HI)',
      fn, held, epoch, epoch USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF epoch IS NOT NULL THEN
    reach := astrodb.displacement_bound(lim.pm, lim.rr, epoch - lim.ref, lim.px);
  END IF;
  IF NOT (radius + reach < 180.0) OR EXISTS (
      SELECT 1 FROM astrodb._hpx_pixels(lim.k, ra, "dec", radius + reach) w
       WHERE NOT EXISTS (SELECT 1 FROM astrodb.catalog_regions r CROSS JOIN LATERAL astrodb._cell_ranges(r.claimed) c
                          WHERE r.catalog_id = cid AND NOT r.full_sky AND r.complete
                            AND w.pixel >> (2 * (lim.k - r.norder)) >= c.lo
                            AND w.pixel >> (2 * (lim.k - r.norder)) < c.hi)) THEN
    RAISE EXCEPTION '%: %: this % reaches outside it', fn, held,
      kind || CASE WHEN reach > 0.0 THEN format(' (with the %s" a star can move by %s)', round(reach * 3600.0), epoch) ELSE '' END
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
END
$fn$;
"""


def _catalog_error(fn: str, name: str) -> str:
    return (f"RAISE EXCEPTION '{fn}: no catalog \"%\" in the store (catalogs: %)', {name},\n"
            f"      coalesce((SELECT string_agg(c.name, ', ' ORDER BY c.name) FROM astrodb.catalogs c), 'none')\n"
            f"      USING ERRCODE = 'undefined_object';")


def _check_cone_args(fn: str, epoch: bool) -> str:
    """plpgsql raising an error that names the bad argument (as astrodb.query.regions.Cone)."""
    text = f"""
  IF p_ra IS NULL OR NOT abs(p_ra) < 'Infinity'::float8 THEN
    RAISE EXCEPTION '{fn}: ra must be a finite number of degrees, got %', coalesce(p_ra::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_dec IS NULL OR NOT (p_dec >= -90.0 AND p_dec <= 90.0) THEN
    RAISE EXCEPTION '{fn}: dec must be within [-90, 90] deg, got %', coalesce(p_dec::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_radius IS NULL OR NOT (p_radius > 0.0 AND p_radius <= 180.0) THEN
    RAISE EXCEPTION '{fn}: radius must be within (0, 180] deg, got %', coalesce(p_radius::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;"""
    if epoch:
        text += f"""
  IF p_epoch IS NOT NULL AND NOT abs(p_epoch) < 'Infinity'::float8 THEN
    RAISE EXCEPTION '{fn}: epoch must be a finite Julian year or NULL, got %', p_epoch
      USING ERRCODE = 'invalid_parameter_value';
  END IF;"""
    return text


def _cone_impl() -> str:
    dist = _separation("lon1", "s1", "c1", "s.ra", 's."dec"')
    rest_z = ", ".join(f"z.{c}" for c in _REST)
    rest_s = ", ".join(f"s.{c}" for c in _REST)
    select = (f"SELECT z.source_id, z.ra, z.\"dec\", z.distance, {rest_z}\n"
              f"    FROM (SELECT s.source_id, s.ra, s.\"dec\", {{dist}} AS distance, {rest_s}\n"
              f"            FROM {{src}}\n"
              f"          OFFSET 0) z\n"
              f"   WHERE z.distance <= {{radius}}\n"
              f"   ORDER BY z.distance")
    one = select.format(dist=dist, src=_in_ranges("cra", "p_dec", "pref", "cid", "kk"), radius="p_radius")
    sharded = select.format(dist=_separation("$1", "$2", "$3", "s.ra", 's."dec"'), src="%s", radius="$4")
    return _k(f"""
-- astrodb.cone at the catalog epoch (no propagation). One static query, planned once per
-- session (generic plan): the HEALPix ranges of the disc, a range scan of the catalog's
-- partition's (catalog_id, hpx29) index for each, exact cut, sort. A sharded catalog: the same
-- query over its shards, planned per call with the ranges as constants.
CREATE FUNCTION astrodb._cone(p_catalog text, p_ra float8, p_dec float8, p_radius float8)
RETURNS SETOF astrodb._source_row
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100
SET plan_cache_mode = force_generic_plan
{_QUERY_SETTINGS}
AS $fn$
DECLARE
  cid bigint;
  limited boolean;
  kk int;
  src text;
  cra float8 := p_ra - 360.0 * floor(p_ra / 360.0);    -- ra % 360, as Cone
  pref float8 := least(p_radius + {{PAD}}, 180.0);
  lon1 float8 := cra * {{D2R}};
  s1 float8 := sin(p_dec * {{D2R}});
  c1 float8 := cos(p_dec * {{D2R}});
BEGIN{_check_cone_args("astrodb.cone", False)}
  SELECT c.id, EXISTS (SELECT 1 FROM astrodb.catalog_regions r WHERE r.catalog_id = c.id) INTO cid, limited
    FROM astrodb.catalogs c WHERE c.name = p_catalog;
  IF cid IS NULL THEN
    {_catalog_error("astrodb.cone", "p_catalog")}
  END IF;
  IF limited THEN
    PERFORM astrodb._check_region('astrodb.cone', cid, p_catalog, cra, p_dec, p_radius, NULL, 'cone');
  END IF;
  kk := astrodb._cover_order(cid, cra, p_dec, pref);
  IF {_sharded("cid")} THEN
    {_shard_ranges("src", "cra", "p_dec", "pref", "cid", "kk")}
    RETURN QUERY EXECUTE format($q${sharded}$q$, src) USING lon1, s1, c1, p_radius;
    RETURN;
  END IF;
  RETURN QUERY
  {one};
END
$fn$;
""")


def _cone_at_impl() -> str:
    base = f"SELECT {_BASE_COLS}\n  FROM {_in_ranges('cra', 'p_dec', 'pref', 'k.id', 'kk')}"
    dist = _separation("lon1", "s1", "c1", "p.ra_t", "p.dec_t")
    rest = ", ".join(f"w.{c}" for c in _REST)
    sharded = (f"SELECT w.source_id, w.ra_t, w.dec_t, w.distance, {rest}\n"
               f"    FROM (SELECT p.*, {_separation('$2', '$3', '$4', 'p.ra_t', 'p.dec_t')} AS distance\n"
               f"            FROM ({_pipeline(f'SELECT {_BASE_COLS}{chr(10)}  FROM %s', '$1')}) p\n"
               f"          OFFSET 0) w\n"
               f"   WHERE w.distance <= $5\n"
               f"   ORDER BY w.distance")
    return f"""
-- astrodb.cone at another epoch: the pre-filter widened by the catalog's motion statistics,
-- the positions propagated per row (SQL expressions, no function call per row), the exact cut.
CREATE FUNCTION astrodb._cone_at(p_catalog text, p_ra float8, p_dec float8, p_radius float8, p_epoch float8)
RETURNS SETOF astrodb._source_row
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100
SET plan_cache_mode = force_generic_plan
{_QUERY_SETTINGS}
AS $fn$
DECLARE
  k record;
  pref float8;
  kk int;
  src text;
  cra float8 := p_ra - 360.0 * floor(p_ra / 360.0);
  lon1 float8 := cra * {K['D2R']};
  s1 float8 := sin(p_dec * {K['D2R']});
  c1 float8 := cos(p_dec * {K['D2R']});
BEGIN{_check_cone_args("astrodb.cone", True)}
  SELECT c.id, c.pm_max, c.radial_rate_max, c.parallax_max, c.epoch_min, c.epoch_max,
         EXISTS (SELECT 1 FROM astrodb.catalog_regions r WHERE r.catalog_id = c.id) AS limited INTO k
    FROM astrodb.catalogs c WHERE c.name = p_catalog;
  IF NOT FOUND THEN
    {_catalog_error("astrodb.cone", "p_catalog")}
  END IF;
  IF k.limited THEN
    PERFORM astrodb._check_region('astrodb.cone', k.id, p_catalog, cra, p_dec, p_radius, p_epoch, 'cone');
  END IF;
  pref := astrodb._prefilter_radius(k.pm_max, k.radial_rate_max, k.parallax_max, k.epoch_min, k.epoch_max,
                                    p_radius, p_epoch);
  kk := astrodb._cover_order(k.id, cra, p_dec, pref);
  IF {_sharded("k.id")} THEN
    {_shard_ranges("src", "cra", "p_dec", "pref", "k.id", "kk")}
    RETURN QUERY EXECUTE format($q${sharded}$q$, src) USING p_epoch, lon1, s1, c1, p_radius;
    RETURN;
  END IF;
  RETURN QUERY
  SELECT w.source_id, w.ra_t, w.dec_t, w.distance, {rest}
    FROM (SELECT p.*, {dist} AS distance
            FROM ({_pipeline(base, "p_epoch")}) p
          OFFSET 0) w
   WHERE w.distance <= p_radius
   ORDER BY w.distance;
END
$fn$;
"""


def _wrappers() -> str:
    return f"""
CREATE FUNCTION astrodb.cone(catalog text, ra float8, "dec" float8, radius float8)
RETURNS TABLE({_COLUMNS})
LANGUAGE sql STABLE PARALLEL SAFE ROWS 100 AS $fn$ SELECT * FROM astrodb._cone($1, $2, $3, $4) $fn$;
COMMENT ON FUNCTION astrodb.cone(text, float8, float8, float8) IS
'Sources of catalog within radius (deg) of (ra, dec) (deg, ICRS) at their catalog epoch, ordered by '
'distance (deg): what Store.cone(ra, dec, radius, catalog=catalog) returns.';

CREATE FUNCTION astrodb.cone(catalog text, ra float8, "dec" float8, radius float8, epoch float8)
RETURNS TABLE({_COLUMNS})
LANGUAGE sql STABLE PARALLEL SAFE ROWS 100 AS $fn$ SELECT * FROM astrodb._cone_at($1, $2, $3, $4, $5) $fn$;
COMMENT ON FUNCTION astrodb.cone(text, float8, float8, float8, float8) IS
'Sources of catalog whose position at Julian year epoch (astrodb.propagate) is within radius (deg) of '
'(ra, dec), with ra, dec at epoch, ordered by distance (deg): what Store.cone(..., epoch=epoch) returns. '
'NULL epoch: the catalog epoch.';

CREATE FUNCTION astrodb.footprint(catalog text, polygon float8[], epoch float8 DEFAULT NULL)
RETURNS TABLE({_COLUMNS})
LANGUAGE sql STABLE PARALLEL SAFE ROWS 100 AS $fn$ SELECT * FROM astrodb._footprint($1, $2, $3) $fn$;
COMMENT ON FUNCTION astrodb.footprint(text, float8[], float8) IS
'Sources of catalog inside the spherical polygon ARRAY[[ra, dec], ...] (deg; great-circle edges, the '
'smaller side, within a hemisphere; a flat array of ra, dec pairs also works), optionally at Julian '
'year epoch, ordered by distance (deg) from the polygon centre: what Store.footprint returns.';
"""


_FOOTPRINT = r"""
-- astrodb.footprint: the polygon as astrodb.query.regions.Polygon, then one query whose edge
-- tests are constants (EXECUTE ... USING: the planner folds the parameter array into them).
CREATE FUNCTION astrodb._footprint(p_catalog text, p_polygon float8[], p_epoch float8)
RETURNS SETOF astrodb._source_row
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100
{SETTINGS}
AS $fn$
DECLARE
  nd int := array_ndims(p_polygon);
  n int;
  vra float8[]; vdec float8[];
  vx float8[]; vy float8[]; vz float8[];
  cx float8 := 0; cy float8 := 0; cz float8 := 0; norm float8;
  rx float8; ry float8; rz float8;
  e1x float8; e1y float8; e1z float8; e2x float8; e2y float8; e2z float8;
  px float8[]; py float8[]; dd float8;
  cra float8; cdec float8; crad float8 := 0;
  cat record; pref float8;
  kk float8[]; terms text[] := '{}'; i int; j int; o int; src text;
BEGIN
  -- Vertices: ARRAY[[ra, dec], ...] or a flat ARRAY[ra, dec, ra, dec, ...].
  IF p_polygon IS NULL THEN
    RAISE EXCEPTION 'astrodb.footprint: polygon must not be NULL' USING ERRCODE = 'invalid_parameter_value';
  ELSIF nd = 2 AND array_length(p_polygon, 2) = 2 THEN
    n := array_length(p_polygon, 1);
    SELECT array_agg(p_polygon[r][array_lower(p_polygon, 2)] ORDER BY r),
           array_agg(p_polygon[r][array_lower(p_polygon, 2) + 1] ORDER BY r) INTO vra, vdec
      FROM generate_series(array_lower(p_polygon, 1), array_upper(p_polygon, 1)) r;
  ELSIF nd = 1 AND array_length(p_polygon, 1) % 2 = 0 THEN
    n := array_length(p_polygon, 1) / 2;
    SELECT array_agg(p_polygon[array_lower(p_polygon, 1) + 2 * r] ORDER BY r),
           array_agg(p_polygon[array_lower(p_polygon, 1) + 2 * r + 1] ORDER BY r) INTO vra, vdec
      FROM generate_series(0, n - 1) r;
  ELSE
    RAISE EXCEPTION 'astrodb.footprint: polygon vertices must be ARRAY[[ra, dec], ...] or a flat array of (ra, dec) pairs in degrees, got an array of dimensions %',
      coalesce(array_dims(p_polygon), '(empty)') USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF n IS NULL OR n < 3 THEN
    RAISE EXCEPTION 'astrodb.footprint: a polygon needs at least 3 (ra, dec) vertices, got %', coalesce(n, 0)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR i IN 1..n LOOP
    IF vra[i] IS NULL OR vdec[i] IS NULL
       OR NOT (abs(vra[i]) < 'Infinity'::float8 AND abs(vdec[i]) < 'Infinity'::float8) THEN
      RAISE EXCEPTION 'astrodb.footprint: polygon vertices must be finite' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF abs(vdec[i]) > 90.0 THEN
      RAISE EXCEPTION 'astrodb.footprint: polygon vertex dec must be within [-90, 90] deg, got %', vdec[i]
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
  END LOOP;
  IF p_epoch IS NOT NULL AND NOT abs(p_epoch) < 'Infinity'::float8 THEN
    RAISE EXCEPTION 'astrodb.footprint: epoch must be a finite Julian year or NULL, got %', p_epoch
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT c.id, c.pm_max, c.radial_rate_max, c.parallax_max, c.epoch_min, c.epoch_max INTO cat
    FROM astrodb.catalogs c WHERE c.name = p_catalog;
  IF NOT FOUND THEN
    {CATALOG_ERROR}
  END IF;

  -- Unit vectors, their normalized mean c (the polygon must lie within the hemisphere about
  -- it), a tangent-plane basis (e1, e2) at c and the gnomonic vertex coordinates.
  FOR i IN 1..n LOOP
    vx[i] := cos(vdec[i] * {D2R}) * cos(vra[i] * {D2R});
    vy[i] := cos(vdec[i] * {D2R}) * sin(vra[i] * {D2R});
    vz[i] := sin(vdec[i] * {D2R});
    cx := cx + vx[i]; cy := cy + vy[i]; cz := cz + vz[i];
  END LOOP;
  norm := sqrt(cx * cx + cy * cy + cz * cz);
  IF norm >= 1e-12 THEN
    cx := cx / norm; cy := cy / norm; cz := cz / norm;
  END IF;
  IF norm < 1e-12 OR (SELECT min(vx[r] * cx + vy[r] * cy + vz[r] * cz) FROM generate_series(1, n) r) <= 1e-9 THEN
    RAISE EXCEPTION 'astrodb.footprint: polygon does not fit within a hemisphere; split it into smaller ones'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF abs(cz) < 0.9 THEN rx := 0; ry := 0; rz := 1; ELSE rx := 1; ry := 0; rz := 0; END IF;
  e1x := ry * cz - rz * cy; e1y := rz * cx - rx * cz; e1z := rx * cy - ry * cx;
  norm := sqrt(e1x * e1x + e1y * e1y + e1z * e1z);
  e1x := e1x / norm; e1y := e1y / norm; e1z := e1z / norm;
  e2x := cy * e1z - cz * e1y; e2y := cz * e1x - cx * e1z; e2z := cx * e1y - cy * e1x;
  FOR i IN 1..n LOOP
    dd := vx[i] * cx + vy[i] * cy + vz[i] * cz;
    px[i] := (vx[i] * e1x + vy[i] * e1y + vz[i] * e1z) / dd;
    py[i] := (vx[i] * e2x + vy[i] * e2y + vz[i] * e2z) / dd;
  END LOOP;
  -- Bounding cap: centre c, radius the largest vertex distance; pre-filter as for a cone.
  cra := {R2D} * atan2(cy, cx);
  cra := cra - 360.0 * floor(cra / 360.0);
  cdec := {R2D} * asin(greatest(-1.0, least(1.0, cz)));
  FOR i IN 1..n LOOP
    crad := greatest(crad, astrodb._separation(cra, cdec, vra[i] - 360.0 * floor(vra[i] / 360.0), vdec[i]));
  END LOOP;
  IF EXISTS (SELECT 1 FROM astrodb.catalog_regions r WHERE r.catalog_id = cat.id) THEN
    PERFORM astrodb._check_region('astrodb.footprint', cat.id, p_catalog, cra, cdec, crad, p_epoch, 'polygon');
  END IF;
  pref := astrodb._prefilter_radius(cat.pm_max, cat.radial_rate_max, cat.parallax_max,
                                    cat.epoch_min, cat.epoch_max, crad, p_epoch);

  -- Constants of the query, one array parameter: [1:9] c, e1, e2; [10:12] centre longitude
  -- (rad), sine and cosine of its latitude; then five numbers per edge from vertex j to
  -- vertex i: yi, yj, xj - xi, yj - yi, xi (Polygon.contains' even-odd crossing test).
  kk := ARRAY[cx, cy, cz, e1x, e1y, e1z, e2x, e2y, e2z, cra * {D2R}, sin(cdec * {D2R}), cos(cdec * {D2R})];
  FOR i IN 1..n LOOP
    j := CASE WHEN i = 1 THEN n ELSE i - 1 END;
    IF py[i] <> py[j] THEN   -- a horizontal edge is never crossed
      kk := kk || ARRAY[py[i], py[j], px[j] - px[i], py[j] - py[i], px[i]];
      o := array_length(kk, 1) - 5;
      terms := terms || format('(($5[%s] > m._py) <> ($5[%s] > m._py) AND m._px < $5[%s] * (m._py - $5[%s]) / $5[%s] + $5[%s])::int',
                               o + 1, o + 2, o + 3, o + 1, o + 4, o + 5);
    END IF;
  END LOOP;

  -- The pre-filter's FROM clause: the cover's ranges, or a sharded catalog's shards.
  IF {SHARDED} THEN
    {SHARD_RANGES}
  ELSE
    src := {FROM};
  END IF;
  RETURN QUERY EXECUTE format($q$
SELECT w.source_id, w.ra_t, w.dec_t, w.distance, {REST_W}
  FROM (SELECT m.*, %3$s AS distance
          FROM (SELECT t.*,
                       CASE WHEN t._dd > 0.0 THEN (t._v0 * $5[4] + t._v1 * $5[5] + t._v2 * $5[6]) / t._dd END AS _px,
                       CASE WHEN t._dd > 0.0 THEN (t._v0 * $5[7] + t._v1 * $5[8] + t._v2 * $5[9]) / t._dd END AS _py
                  FROM (SELECT u.*, u._v0 * $5[1] + u._v1 * $5[2] + u._v2 * $5[3] AS _dd
                          FROM (SELECT v.*,
                                       cos(v.dec_t * {D2R}) * cos(v.ra_t * {D2R}) AS _v0,
                                       cos(v.dec_t * {D2R}) * sin(v.ra_t * {D2R}) AS _v1,
                                       sin(v.dec_t * {D2R}) AS _v2
                                  FROM (%1$s) v
                                OFFSET 0) u
                        OFFSET 0) t
                OFFSET 0) m
         WHERE m._dd > 0.0 AND (%2$s) %% 2 = 1
        OFFSET 0) w
 ORDER BY w.distance$q$,
      CASE WHEN p_epoch IS NULL THEN 'SELECT q.*, q.ra AS ra_t, q."dec" AS dec_t FROM (' || {BASE} || ') q'
           ELSE replace({PIPELINE}, '@FROM@', src) END,
      coalesce(array_to_string(terms, ' + '), '0'),
      {DIST})
    USING cat.id, cra, pref, p_epoch, kk, cdec;
END
$fn$;
"""  # noqa: E501 - wrapping these SQL lines would change the SQL the migrations froze


def _footprint_impl() -> str:
    base = f"SELECT {_BASE_COLS} FROM @FROM@"
    dist = _separation("$5[10]", "$5[11]", "$5[12]", "m.ra_t", "m.dec_t")

    def lit(s: str) -> str:   # an SQL string literal holding s
        return "'" + s.replace("'", "''") + "'"

    return (_k(_FOOTPRINT)
            .replace("{SETTINGS}", _QUERY_SETTINGS)
            .replace("{CATALOG_ERROR}", _catalog_error("astrodb.footprint", "p_catalog"))
            .replace("{REST_W}", ", ".join(f"w.{c}" for c in _REST))
            .replace("{SHARDED}", _sharded("cat.id"))
            .replace("{SHARD_RANGES}", _shard_ranges("src", "cra", "cdec", "pref", "cat.id",
                                                     "astrodb._cover_order(cat.id, cra, cdec, pref)"))
            .replace("{FROM}", lit(_in_ranges('$2', '$6', '$3', '$1')))
            .replace("{BASE}", f"replace({lit(base)}, '@FROM@', src)")
            .replace("{PIPELINE}", lit(_pipeline(base, "$4")))
            .replace("{DIST}", lit(dist)))


def _helpers() -> str:
    return _k(f"""
CREATE TYPE astrodb.radec AS (ra float8, "dec" float8);
COMMENT ON TYPE astrodb.radec IS 'A sky position: right ascension and declination (deg, ICRS).';

CREATE TYPE astrodb._source_row AS ({_COLUMNS});

-- RA wrapped into [0, 360), as astrodb.epoch._wrap_ra.
CREATE FUNCTION astrodb._wrap360(x float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT CASE WHEN $1 >= 0.0 AND $1 < 360.0 THEN $1
            WHEN $1 < 0.0 AND $1 >= -360.0 THEN CASE WHEN $1 + 360.0 < 360.0 THEN $1 + 360.0 ELSE 0.0 END
            WHEN $1 >= 360.0 AND $1 < 720.0 THEN $1 - 360.0
            ELSE CASE WHEN $1 - 360.0 * floor($1 / 360.0) < 360.0 THEN $1 - 360.0 * floor($1 / 360.0) ELSE 0.0 END
       END
$fn$;

-- eraSeps(ra, dec, ra + pmr, dec + pmd) of eraPmsafe: dec (rad), pmr = pmra / cos(dec), pmd (rad/yr).
CREATE FUNCTION astrodb._pmsafe_seps(d float8, pmr float8, pmd float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT atan2(sqrt((cos($1 + $3) * sin($2))^2 + (cos($1) * sin($1 + $3) - sin($1) * cos($1 + $3) * cos($2))^2),
             sin($1) * sin($1 + $3) + cos($1) * cos($1 + $3) * cos($2))
$fn$;

-- Angular distance (deg) between two positions (deg): Vincenty, as astropy's angular_separation.
CREATE FUNCTION astrodb._separation(ra1 float8, dec1 float8, ra2 float8, dec2 float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT {{R2D}} * atan2(sqrt((cos($4 * {{D2R}}) * sin($3 * {{D2R}} - $1 * {{D2R}}))^2
                          + (cos($2 * {{D2R}}) * sin($4 * {{D2R}}) - sin($2 * {{D2R}}) * cos($4 * {{D2R}}) * cos($3 * {{D2R}} - $1 * {{D2R}}))^2),
                     sin($2 * {{D2R}}) * sin($4 * {{D2R}}) + cos($2 * {{D2R}}) * cos($4 * {{D2R}}) * cos($3 * {{D2R}} - $1 * {{D2R}}))
$fn$;

CREATE FUNCTION astrodb.displacement_bound(pm_max float8, zeta_max float8, dt float8,
                                           parallax_max float8 DEFAULT 0.0,
                                           observer_distance float8 DEFAULT 0.0)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
  s float8 := abs(pm_max) * {{MAS2RAD}} * abs(dt);
  z float8 := abs(zeta_max) * abs(dt);
  one_z float8; alpha float8; disc float8; t float8; theta float8;
  px_mas float8; a_low float8; sin_phi float8;
BEGIN
  -- NULL, NaN or infinite: no bound (NaN compares above every number in PostgreSQL).
  IF s IS NULL OR z IS NULL OR NOT (s < 'Infinity'::float8) OR NOT (z < 1.0) THEN
    RETURN 180.0;
  END IF;
  one_z := 1.0 - z;
  alpha := 0.25 * one_z + 0.75 * s;
  disc := one_z * one_z - 4.0 * alpha * s;
  IF disc < 0.0 THEN
    RETURN 180.0;
  END IF;
  t := 2.0 * s / (one_z + sqrt(disc));
  theta := atan(t);
  IF coalesce(observer_distance, 0.0) > 0.0 AND (coalesce(parallax_max, 0.0) > 0.0 OR pm_max > 0.0) THEN
    px_mas := greatest(coalesce(parallax_max, 0.0), 1e3 * {{THR}} * abs(pm_max) * {{MAS2RAD}});
    a_low := CASE WHEN t < 4.0 THEN one_z - 0.75 * t * s / (1.0 - 0.25 * t) ELSE 0.0 END;
    IF a_low <= 0.0 THEN
      RETURN 180.0;
    END IF;
    sin_phi := abs(observer_distance) * px_mas * {{MAS2RAD}} / a_low;
    IF NOT sin_phi < 1.0 THEN
      RETURN 180.0;
    END IF;
    theta := theta + asin(sin_phi);
  END IF;
  RETURN least(theta * (1.0 + 1e-3) * {{R2D}} + 1.0 / 3.6e6, 180.0);
END
$fn$;
COMMENT ON FUNCTION astrodb.displacement_bound(float8, float8, float8, float8, float8) IS
'Upper bound (deg) on how far astrodb.propagate moves any source of a catalog whose largest proper '
'motion is pm_max (mas/yr) and largest radial rate zeta_max (1/yr) in dt years (parallax_max in mas, '
'observer_distance in au for an observer shift); as astrodb.epoch.displacement_bound.';

-- Pre-filter radius (deg) of a region of radius (deg) at epoch (NULL: the catalog epoch), as
-- astrodb.query.search.prefilter_radius without observer.
CREATE FUNCTION astrodb._prefilter_radius(pm_max float8, radial_rate_max float8, parallax_max float8,
                                          epoch_min float8, epoch_max float8,
                                          radius float8, epoch float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT least($6 + CASE WHEN $7 IS NULL OR $4 IS NULL THEN 0.0
                       ELSE astrodb.displacement_bound($1, $2, greatest(abs($7 - $4), abs($7 - $5)), $3, 0.0) END
             + {{PAD}}, 180.0)
$fn$;
""")  # noqa: E501 - as _FOOTPRINT's


_DROP = """
DROP FUNCTION IF EXISTS astrodb.footprint(text, float8[], float8);
DROP FUNCTION IF EXISTS astrodb.cone(text, float8, float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb.cone(text, float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb._footprint(text, float8[], float8);
DROP FUNCTION IF EXISTS astrodb._cone_at(text, float8, float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb._cone(text, float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb.propagate(float8, float8, float8, float8, float8, float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb._prefilter_radius(float8, float8, float8, float8, float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb.displacement_bound(float8, float8, float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb._separation(float8, float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb._pmsafe_seps(float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb._wrap360(float8);
DROP FUNCTION IF EXISTS astrodb._hpx_ranges(float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb._hpx_ranges(float8, float8, float8, bigint);
DROP FUNCTION IF EXISTS astrodb._hpx_cover(float8, float8, float8, int);
DROP FUNCTION IF EXISTS astrodb._cover_order(bigint, float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb._hpx_pixel(int, float8, float8);
DROP FUNCTION IF EXISTS astrodb._check_region(text, bigint, text, float8, float8, float8, float8, text);
DROP FUNCTION IF EXISTS astrodb._cell_ranges(bytea);
DROP FUNCTION IF EXISTS astrodb.hpx_disc(int, float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb._hpx_pixels(int, float8, float8, float8);
DROP TYPE IF EXISTS astrodb._source_row;
DROP TYPE IF EXISTS astrodb.radec;
"""


_CHECK = """BEGIN
  IF "dec" IS NOT NULL AND (NOT ("dec" BETWEEN -90.0 AND 90.0) OR "dec" = 'NaN'::float8) THEN
    RAISE EXCEPTION 'astrodb.propagate: dec must be a finite declination within [-90, 90] deg, got %', "dec"
      USING ERRCODE = '22023';
  END IF;
  IF ra IS NOT NULL AND (ra = 'NaN'::float8 OR ra IN ('Infinity'::float8, '-Infinity'::float8)) THEN
    RAISE EXCEPTION 'astrodb.propagate: ra must be a finite right ascension (deg), got %', ra
      USING ERRCODE = '22023';
  END IF;
"""

#: Inserted into astrodb._footprint after the gnomonic vertices (px, py) are known: the same
#: refusals as astrodb.query.regions.Polygon (a line or a bow tie is no region).
_SIMPLE = """  DECLARE
    ar float8 := 0; sp float8; ep float8; a int; b int; a2 int; b2 int;
    d1 float8; d2 float8; d3 float8; d4 float8;
  BEGIN
    sp := greatest((SELECT max(v) - min(v) FROM unnest(px) v), (SELECT max(v) - min(v) FROM unnest(py) v), 1e-300);
    ep := 1e-12 * sp * sp;
    FOR a IN 1..n - 2 LOOP
      a2 := a + 1;
      FOR b IN a + 2..n LOOP
        CONTINUE WHEN a = 1 AND b = n;
        b2 := CASE WHEN b = n THEN 1 ELSE b + 1 END;
        d1 := (px[a2] - px[a]) * (py[b] - py[a]) - (py[a2] - py[a]) * (px[b] - px[a]);
        d2 := (px[a2] - px[a]) * (py[b2] - py[a]) - (py[a2] - py[a]) * (px[b2] - px[a]);
        d3 := (px[b2] - px[b]) * (py[a] - py[b]) - (py[b2] - py[b]) * (px[a] - px[b]);
        d4 := (px[b2] - px[b]) * (py[a2] - py[b]) - (py[b2] - py[b]) * (px[a2] - px[b]);
        IF ((d1 > ep AND d2 < -ep) OR (d1 < -ep AND d2 > ep)) AND ((d3 > ep AND d4 < -ep) OR (d3 < -ep AND d4 > ep)) THEN
          RAISE EXCEPTION 'astrodb.footprint: polygon edges cross each other: give the vertices in order around the region'
            USING ERRCODE = 'invalid_parameter_value';
        END IF;
      END LOOP;
    END LOOP;
    FOR a IN 1..n LOOP
      a2 := CASE WHEN a = n THEN 1 ELSE a + 1 END;
      ar := ar + px[a] * py[a2] - py[a] * px[a2];
    END LOOP;
    IF abs(ar) / 2 <= ep THEN
      RAISE EXCEPTION 'astrodb.footprint: polygon has no area: its vertices lie on one great circle'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
  END;
"""
_SIMPLE_AT = "  -- Bounding cap: centre c, radius the largest vertex distance"



def _propagate_checked() -> str:
    return _propagate_plpgsql().replace("BEGIN\n", _CHECK, 1)


def _footprint_checked() -> str:
    sql = _footprint_impl()
    if _SIMPLE_AT not in sql:
        raise RuntimeError("astrodb._footprint has no bounding-cap step to check the polygon before")
    return sql.replace(_SIMPLE_AT, _SIMPLE + _SIMPLE_AT, 1)


def create_sql() -> str:
    """The DDL that creates every function and type above in the ``astrodb`` schema (PostgreSQL).

    Returns
    -------
    str
        SQL statements, to run in one go on a store without them (see :func:`drop_sql`).
    """
    return "\n".join([_helpers(), _hpx_impl(), _propagate_checked(), _cone_impl(), _cone_at_impl(),
                      _footprint_checked(), _wrappers()])


def drop_sql() -> str:
    """The DDL that drops every function and type :func:`create_sql` creates."""
    return _DROP
