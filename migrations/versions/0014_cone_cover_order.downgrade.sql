-- Revision 0014 down: the functions as revision 0011 left them.

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

CREATE TYPE astrodb.radec AS (ra float8, "dec" float8);
COMMENT ON TYPE astrodb.radec IS 'A sky position: right ascension and declination (deg, ICRS).';

CREATE TYPE astrodb._source_row AS (source_id bigint, ra float8, "dec" float8, distance float8, ra_error float8, dec_error float8, pmra float8, pmra_error float8, pmdec float8, pmdec_error float8, parallax float8, parallax_error float8, radial_velocity float8, radial_velocity_error float8, ref_epoch float8, mag float8, weight float8);

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
SELECT 57.29577951308232 * atan2(sqrt((cos($4 * 0.017453292519943295) * sin($3 * 0.017453292519943295 - $1 * 0.017453292519943295))^2
                          + (cos($2 * 0.017453292519943295) * sin($4 * 0.017453292519943295) - sin($2 * 0.017453292519943295) * cos($4 * 0.017453292519943295) * cos($3 * 0.017453292519943295 - $1 * 0.017453292519943295))^2),
                     sin($2 * 0.017453292519943295) * sin($4 * 0.017453292519943295) + cos($2 * 0.017453292519943295) * cos($4 * 0.017453292519943295) * cos($3 * 0.017453292519943295 - $1 * 0.017453292519943295))
$fn$;

CREATE FUNCTION astrodb.displacement_bound(pm_max float8, zeta_max float8, dt float8,
                                           parallax_max float8 DEFAULT 0.0,
                                           observer_distance float8 DEFAULT 0.0)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
  s float8 := abs(pm_max) * 4.8481368110953594e-09 * abs(dt);
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
    px_mas := greatest(coalesce(parallax_max, 0.0), 1e3 * 461.03408236725033 * abs(pm_max) * 4.8481368110953594e-09);
    a_low := CASE WHEN t < 4.0 THEN one_z - 0.75 * t * s / (1.0 - 0.25 * t) ELSE 0.0 END;
    IF a_low <= 0.0 THEN
      RETURN 180.0;
    END IF;
    sin_phi := abs(observer_distance) * px_mas * 4.8481368110953594e-09 / a_low;
    IF NOT sin_phi < 1.0 THEN
      RETURN 180.0;
    END IF;
    theta := theta + asin(sin_phi);
  END IF;
  RETURN least(theta * (1.0 + 1e-3) * 57.29577951308232 + 1.0 / 3.6e6, 180.0);
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
             + 1e-07, 180.0)
$fn$;


-- Nested HEALPix pixels of order k that meet the disc of radius (deg) about (ra, dec): every pixel
-- whose centre is within radius + the order's largest pixel radius, found ring by ring (the rings'
-- z and pixel longitudes: Gorski et al. 2005, ApJ 622, 759), then (ring, pixel) -> (face, x, y) ->
-- nested index. Each stage is an OFFSET 0 subquery, so its expressions are computed once per row.
CREATE FUNCTION astrodb.hpx_disc(k int, ra float8, "dec" float8, radius float8)
RETURNS TABLE (pixel bigint)
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 30
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $fn$
#variable_conflict use_column
BEGIN
  IF k IS NULL OR k < 0 OR k > 29 THEN
    RAISE EXCEPTION 'astrodb.hpx_disc: order must be within [0, 29], got %', coalesce(k::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN QUERY
  WITH d0 AS (
    SELECT k AS k, (1::bigint << k) AS ns, radians(90.0 - hpx_disc."dec") AS th0,
           radians(hpx_disc.ra) AS ph0, least(radians(hpx_disc.radius) + (ARRAY[0.841068671409999, 0.4814604719585275, 0.2543334048082923, 0.1304254356659301, 0.06601476149952824, 0.03320666684597577, 0.016653025229063534, 0.008338920853023603, 0.004172560742472642, 0.0020870552385847405, 0.0010437213103778788, 0.0005219090750931459, 0.00026096664249376046, 0.00013048634780833508, 6.524393091322494e-05, 3.2622155083144155e-05, 1.6311125323096844e-05, 8.155574981929889e-06, 4.077790946026237e-06, 2.038896711869254e-06, 1.0194490405155908e-06, 5.097250665656599e-07, 2.5486304475529687e-07, 1.274320253734961e-07, 6.371651340668055e-08, 3.185875700524748e-08, 1.5929878432952843e-08, 7.965439286147317e-09, 3.98321955017913e-09, 1.9921098447604614e-09]::float8[])[k + 1], pi()) AS rb
    OFFSET 0
  ), d AS (
    -- the rings within the enlarged disc's colatitudes, one more on each side (tested below)
    SELECT k, ns, th0, ph0, sin(th0) AS s0, sin(rb / 2) AS h0,
           greatest(1, floor(CASE WHEN greatest(th0 - rb, 0.0) < 0.8410686705679303 THEN ns * 2.449489742783178 * sin(greatest(th0 - rb, 0.0) / 2) WHEN greatest(th0 - rb, 0.0) > 2.3005239830218627 THEN 4 * ns - ns * 2.449489742783178 * cos(greatest(th0 - rb, 0.0) / 2) ELSE ns * (2 - 1.5 * cos(greatest(th0 - rb, 0.0))) END)::bigint - 1) AS r_lo,
           least(4 * ns - 1, ceil(CASE WHEN least(th0 + rb, pi()) < 0.8410686705679303 THEN ns * 2.449489742783178 * sin(least(th0 + rb, pi()) / 2) WHEN least(th0 + rb, pi()) > 2.3005239830218627 THEN 4 * ns - ns * 2.449489742783178 * cos(least(th0 + rb, pi()) / 2) ELSE ns * (2 - 1.5 * cos(least(th0 + rb, pi()))) END)::bigint + 1) AS r_hi
    FROM d0 OFFSET 0
  ), rz AS (
    -- each ring's colatitude (in the caps from its arc sine, exact near the poles), pixels, offset
    SELECT k, ns, th0, ph0, s0, h0, ring,
           CASE WHEN ring < ns THEN 2 * asin(ring / (ns * 2.449489742783178))
                WHEN ring > 3 * ns THEN pi() - 2 * asin((4 * ns - ring) / (ns * 2.449489742783178))
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
  ),
  b1 AS (SELECT face, k, (ix | (ix << 16)) & 281470681808895 AS ix, (iy | (iy << 16)) & 281470681808895 AS iy FROM xy OFFSET 0),
  b2 AS (SELECT face, k, (ix | (ix << 8)) & 71777214294589695 AS ix, (iy | (iy << 8)) & 71777214294589695 AS iy FROM b1 OFFSET 0),
  b3 AS (SELECT face, k, (ix | (ix << 4)) & 1085102592571150095 AS ix, (iy | (iy << 4)) & 1085102592571150095 AS iy FROM b2 OFFSET 0),
  b4 AS (SELECT face, k, (ix | (ix << 2)) & 3689348814741910323 AS ix, (iy | (iy << 2)) & 3689348814741910323 AS iy FROM b3 OFFSET 0),
  b5 AS (SELECT face, k, (ix | (ix << 1)) & 6148914691236517205 AS ix, (iy | (iy << 1)) & 6148914691236517205 AS iy FROM b4 OFFSET 0)
  SELECT (face << (2 * k)) | ix | (iy << 1) FROM b5;
END
$fn$;
COMMENT ON FUNCTION astrodb.hpx_disc(int, float8, float8, float8) IS
'Nested HEALPix pixels of order k that meet the disc of radius (deg) about (ra, dec) (deg): all of them, '
'and a few more (those within the largest pixel radius of the disc).';

-- Inclusive order-29 ranges (lo, hi) whose union holds every position within radius (deg) of
-- (ra, dec): the pixels of astrodb.hpx_disc at the order whose pixels are about a quarter of the
-- radius across (at most 20), adjacent ones merged. What a cone reads of the
-- (catalog_id, hpx29) index, one range scan per range.
CREATE FUNCTION astrodb._hpx_ranges(ra float8, "dec" float8, radius float8)
RETURNS TABLE (lo bigint, hi bigint)
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 10
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $fn$
DECLARE
  k int := CASE WHEN radius >= 58.632301428350395 THEN 0
                ELSE least(20, floor(ln(58.632301428350395 / greatest(radius, 1e-12)) / ln(2.0))::int + 2) END;
  sh int := 2 * (29 - k);
BEGIN
  RETURN QUERY
  SELECT min(g.pixel) << sh, ((max(g.pixel) + 1) << sh) - 1
    FROM (SELECT p.pixel, p.pixel - row_number() OVER (ORDER BY p.pixel) AS run
            FROM astrodb.hpx_disc(k, ra, "dec", radius) p) g
   GROUP BY g.run;
END
$fn$;


CREATE FUNCTION astrodb.propagate(ra float8, "dec" float8, pmra float8, pmdec float8,
                                  parallax float8, radial_velocity float8,
                                  ref_epoch float8, epoch float8)
RETURNS astrodb.radec
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
  _sd float8;
  _cd float8;
  _pa float8;
  _pd float8;
  _mu float8;
  _g float8;
  _bsr float8;
  _d float8;
  _m float8;
  _ok boolean;
  _x float8;
  _a float8;
  _b float8;
  _c float8;
  _xx float8;
  _ra2 float8;
  _dec2 float8;
BEGIN
  IF "dec" IS NOT NULL AND (NOT ("dec" BETWEEN -90.0 AND 90.0) OR "dec" = 'NaN'::float8) THEN
    RAISE EXCEPTION 'astrodb.propagate: dec must be a finite declination within [-90, 90] deg, got %', "dec"
      USING ERRCODE = '22023';
  END IF;
  IF ra IS NOT NULL AND (ra = 'NaN'::float8 OR ra IN ('Infinity'::float8, '-Infinity'::float8)) THEN
    RAISE EXCEPTION 'astrodb.propagate: ra must be a finite right ascension (deg), got %', ra
      USING ERRCODE = '22023';
  END IF;
  IF pmra IS NULL OR pmdec IS NULL OR ra IS NULL OR "dec" IS NULL THEN
    RETURN ROW(astrodb._wrap360(ra), "dec")::astrodb.radec;
  END IF;
  _sd := sin("dec" * 0.017453292519943295);
  _cd := cos("dec" * 0.017453292519943295);
  _pa := (pmra * 4.8481368110953594e-09);
  _pd := (pmdec * 4.8481368110953594e-09);
  _mu := sqrt((pmra * 4.8481368110953594e-09) * (pmra * 4.8481368110953594e-09) + (pmdec * 4.8481368110953594e-09) * (pmdec * 4.8481368110953594e-09));
  _g := 3.261563777167434 / CASE WHEN (parallax * 1e-3) >= 461.03408236725033 * sqrt((pmra * 4.8481368110953594e-09) * (pmra * 4.8481368110953594e-09) + (pmdec * 4.8481368110953594e-09) * (pmdec * 4.8481368110953594e-09)) THEN greatest((parallax * 1e-3), 5e-07) ELSE greatest((parallax * 1e-3), 326.0 * astrodb._pmsafe_seps("dec" * 0.017453292519943295, (pmra * 4.8481368110953594e-09) / cos("dec" * 0.017453292519943295), (pmdec * 4.8481368110953594e-09)), 5e-07) END;
  _bsr := coalesce(radial_velocity, 0.0) * 3.3356409519815205e-06;
  _d := 2.0 / ((1.0 - _bsr) * (1.0 - _bsr) + 1.0 + (_mu * _g) * (_mu * _g));
  _m := (epoch - ref_epoch) / _g;
  _ok := pmra IS NOT NULL AND pmdec IS NOT NULL AND _bsr * _bsr + (_mu * _g) * (_mu * _g) <= 0.25 AND abs((epoch - ref_epoch) / _g) < 'Infinity'::float8;
  IF NOT coalesce(_ok, false) THEN
    RETURN ROW(astrodb._wrap360(ra), "dec")::astrodb.radec;
  END IF;
  _x := _m * (2.0 + _m) / (_d + _m + sqrt((_d + _m) * (_d + _m) - (_d * (1.0 - _bsr)) * (_d * (1.0 - _bsr)) * _m * (2.0 + _m)));
  _a := 1.0 + (_d - 1.0) * _x;
  _b := _pa * (_d * _x * _g);
  _c := _pd * (_d * _x * _g);
  _xx := (1.0 + (_d - 1.0) * _x) * _cd - _pd * (_d * _x * _g) * _sd;
  _ra2 := ra + 57.29577951308232 * atan2(_b, _xx);
  _dec2 := CASE WHEN _xx > 0.0 THEN "dec" + 57.29577951308232 * asin((_c - _sd * _b * _b / (sqrt(_xx * _xx + _b * _b) + _xx)) / sqrt(_a * _a + _b * _b + _c * _c)) ELSE 57.29577951308232 * atan2(_a * _sd + _c * _cd, sqrt(_xx * _xx + _b * _b)) END;
  RETURN ROW(astrodb._wrap360(_ra2), greatest(-90.0, least(90.0, _dec2)))::astrodb.radec;
END
$fn$;
COMMENT ON FUNCTION astrodb.propagate(float8, float8, float8, float8, float8, float8, float8, float8) IS
'Position (deg) at Julian year epoch of a star at (ra, dec) (deg) at Julian year ref_epoch, with pmra '
'(mas/yr, times cos dec), pmdec (mas/yr), parallax (mas) and radial_velocity (km/s): ERFA eraPmsafe '
'space motion, as astrodb.epoch.propagate. NULL pmra or pmdec, or NULL epoch: the position unchanged.';


-- astrodb.cone at the catalog epoch (no propagation). One static query, planned once per
-- session (generic plan): the HEALPix ranges of the disc, a range scan of the catalog's
-- partition's (catalog_id, hpx29) index for each, exact cut, sort.
CREATE FUNCTION astrodb._cone(p_catalog text, p_ra float8, p_dec float8, p_radius float8)
RETURNS SETOF astrodb._source_row
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100
SET plan_cache_mode = force_generic_plan
SET jit = off
SET max_parallel_workers_per_gather = 0
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $fn$
DECLARE
  cid bigint;
  cra float8 := p_ra - 360.0 * floor(p_ra / 360.0);    -- ra % 360, as Cone
  lon1 float8 := cra * 0.017453292519943295;
  s1 float8 := sin(p_dec * 0.017453292519943295);
  c1 float8 := cos(p_dec * 0.017453292519943295);
BEGIN
  IF p_ra IS NULL OR NOT abs(p_ra) < 'Infinity'::float8 THEN
    RAISE EXCEPTION 'astrodb.cone: ra must be a finite number of degrees, got %', coalesce(p_ra::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_dec IS NULL OR NOT (p_dec >= -90.0 AND p_dec <= 90.0) THEN
    RAISE EXCEPTION 'astrodb.cone: dec must be within [-90, 90] deg, got %', coalesce(p_dec::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_radius IS NULL OR NOT (p_radius > 0.0 AND p_radius <= 180.0) THEN
    RAISE EXCEPTION 'astrodb.cone: radius must be within (0, 180] deg, got %', coalesce(p_radius::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT c.id INTO cid FROM astrodb.catalogs c WHERE c.name = p_catalog;
  IF cid IS NULL THEN
    RAISE EXCEPTION 'astrodb.cone: no catalog "%" in the store (catalogs: %)', p_catalog,
      coalesce((SELECT string_agg(c.name, ', ' ORDER BY c.name) FROM astrodb.catalogs c), 'none')
      USING ERRCODE = 'undefined_object';
  END IF;
  RETURN QUERY
  SELECT z.source_id, z.ra, z."dec", z.distance, z.ra_error, z.dec_error, z.pmra, z.pmra_error, z.pmdec, z.pmdec_error, z.parallax, z.parallax_error, z.radial_velocity, z.radial_velocity_error, z.ref_epoch, z.mag, z.weight
    FROM (SELECT s.source_id, s.ra, s."dec", 57.29577951308232 * atan2(sqrt((cos(s."dec" * 0.017453292519943295) * sin(s.ra * 0.017453292519943295 - lon1))^2 + (c1 * sin(s."dec" * 0.017453292519943295) - s1 * cos(s."dec" * 0.017453292519943295) * cos(s.ra * 0.017453292519943295 - lon1))^2), s1 * sin(s."dec" * 0.017453292519943295) + c1 * cos(s."dec" * 0.017453292519943295) * cos(s.ra * 0.017453292519943295 - lon1)) AS distance, s.ra_error, s.dec_error, s.pmra, s.pmra_error, s.pmdec, s.pmdec_error, s.parallax, s.parallax_error, s.radial_velocity, s.radial_velocity_error, s.ref_epoch, s.mag, s.weight
            FROM astrodb._hpx_ranges(cra, p_dec, least(p_radius + 1e-07, 180.0)) r
  CROSS JOIN LATERAL (SELECT * FROM astrodb.sources s0 WHERE s0.catalog_id = cid
    AND s0.hpx29 BETWEEN r.lo AND r.hi OFFSET 0) s
          OFFSET 0) z
   WHERE z.distance <= p_radius
   ORDER BY z.distance;
END
$fn$;


-- astrodb.cone at another epoch: the pre-filter widened by the catalog's motion statistics,
-- the positions propagated per row (SQL expressions, no function call per row), the exact cut.
CREATE FUNCTION astrodb._cone_at(p_catalog text, p_ra float8, p_dec float8, p_radius float8, p_epoch float8)
RETURNS SETOF astrodb._source_row
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100
SET plan_cache_mode = force_generic_plan
SET jit = off
SET max_parallel_workers_per_gather = 0
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $fn$
DECLARE
  k record;
  pref float8;
  cra float8 := p_ra - 360.0 * floor(p_ra / 360.0);
  lon1 float8 := cra * 0.017453292519943295;
  s1 float8 := sin(p_dec * 0.017453292519943295);
  c1 float8 := cos(p_dec * 0.017453292519943295);
BEGIN
  IF p_ra IS NULL OR NOT abs(p_ra) < 'Infinity'::float8 THEN
    RAISE EXCEPTION 'astrodb.cone: ra must be a finite number of degrees, got %', coalesce(p_ra::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_dec IS NULL OR NOT (p_dec >= -90.0 AND p_dec <= 90.0) THEN
    RAISE EXCEPTION 'astrodb.cone: dec must be within [-90, 90] deg, got %', coalesce(p_dec::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_radius IS NULL OR NOT (p_radius > 0.0 AND p_radius <= 180.0) THEN
    RAISE EXCEPTION 'astrodb.cone: radius must be within (0, 180] deg, got %', coalesce(p_radius::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_epoch IS NOT NULL AND NOT abs(p_epoch) < 'Infinity'::float8 THEN
    RAISE EXCEPTION 'astrodb.cone: epoch must be a finite Julian year or NULL, got %', p_epoch
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT c.id, c.pm_max, c.radial_rate_max, c.parallax_max, c.epoch_min, c.epoch_max INTO k
    FROM astrodb.catalogs c WHERE c.name = p_catalog;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'astrodb.cone: no catalog "%" in the store (catalogs: %)', p_catalog,
      coalesce((SELECT string_agg(c.name, ', ' ORDER BY c.name) FROM astrodb.catalogs c), 'none')
      USING ERRCODE = 'undefined_object';
  END IF;
  pref := astrodb._prefilter_radius(k.pm_max, k.radial_rate_max, k.parallax_max, k.epoch_min, k.epoch_max,
                                    p_radius, p_epoch);
  RETURN QUERY
  SELECT w.source_id, w.ra_t, w.dec_t, w.distance, w.ra_error, w.dec_error, w.pmra, w.pmra_error, w.pmdec, w.pmdec_error, w.parallax, w.parallax_error, w.radial_velocity, w.radial_velocity_error, w.ref_epoch, w.mag, w.weight
    FROM (SELECT p.*, 57.29577951308232 * atan2(sqrt((cos(p.dec_t * 0.017453292519943295) * sin(p.ra_t * 0.017453292519943295 - lon1))^2 + (c1 * sin(p.dec_t * 0.017453292519943295) - s1 * cos(p.dec_t * 0.017453292519943295) * cos(p.ra_t * 0.017453292519943295 - lon1))^2), s1 * sin(p.dec_t * 0.017453292519943295) + c1 * cos(p.dec_t * 0.017453292519943295) * cos(p.ra_t * 0.017453292519943295 - lon1)) AS distance
            FROM (SELECT q.*, astrodb._wrap360(CASE WHEN q._ok THEN q._ra2 ELSE q.ra END) AS ra_t,
       CASE WHEN q._ok THEN greatest(-90.0, least(90.0, q._dec2)) ELSE q."dec" END AS dec_t
  FROM (SELECT q.*,
         q.ra + 57.29577951308232 * atan2(_b, _xx) AS _ra2,
         CASE WHEN _xx > 0.0 THEN q."dec" + 57.29577951308232 * asin((_c - _sd * _b * _b / (sqrt(_xx * _xx + _b * _b) + _xx)) / sqrt(_a * _a + _b * _b + _c * _c)) ELSE 57.29577951308232 * atan2(_a * _sd + _c * _cd, sqrt(_xx * _xx + _b * _b)) END AS _dec2
  FROM (SELECT q.*,
         1.0 + (_d - 1.0) * _x AS _a,
         _pa * (_d * _x * _g) AS _b,
         _pd * (_d * _x * _g) AS _c,
         (1.0 + (_d - 1.0) * _x) * _cd - _pd * (_d * _x * _g) * _sd AS _xx
  FROM (SELECT q.*,
         _m * (2.0 + _m) / (_d + _m + sqrt((_d + _m) * (_d + _m) - (_d * (1.0 - _bsr)) * (_d * (1.0 - _bsr)) * _m * (2.0 + _m))) AS _x
  FROM (SELECT q.*,
         2.0 / ((1.0 - _bsr) * (1.0 - _bsr) + 1.0 + (_mu * _g) * (_mu * _g)) AS _d,
         (p_epoch - q.ref_epoch) / _g AS _m,
         q.pmra IS NOT NULL AND q.pmdec IS NOT NULL AND _bsr * _bsr + (_mu * _g) * (_mu * _g) <= 0.25 AND abs((p_epoch - q.ref_epoch) / _g) < 'Infinity'::float8 AS _ok
  FROM (SELECT q.*,
         sin(q."dec" * 0.017453292519943295) AS _sd,
         cos(q."dec" * 0.017453292519943295) AS _cd,
         (q.pmra * 4.8481368110953594e-09) AS _pa,
         (q.pmdec * 4.8481368110953594e-09) AS _pd,
         sqrt((q.pmra * 4.8481368110953594e-09) * (q.pmra * 4.8481368110953594e-09) + (q.pmdec * 4.8481368110953594e-09) * (q.pmdec * 4.8481368110953594e-09)) AS _mu,
         3.261563777167434 / CASE WHEN (q.parallax * 1e-3) >= 461.03408236725033 * sqrt((q.pmra * 4.8481368110953594e-09) * (q.pmra * 4.8481368110953594e-09) + (q.pmdec * 4.8481368110953594e-09) * (q.pmdec * 4.8481368110953594e-09)) THEN greatest((q.parallax * 1e-3), 5e-07) ELSE greatest((q.parallax * 1e-3), 326.0 * astrodb._pmsafe_seps(q."dec" * 0.017453292519943295, (q.pmra * 4.8481368110953594e-09) / cos(q."dec" * 0.017453292519943295), (q.pmdec * 4.8481368110953594e-09)), 5e-07) END AS _g,
         coalesce(q.radial_velocity, 0.0) * 3.3356409519815205e-06 AS _bsr
  FROM (SELECT s.source_id, s.ra, s."dec", s.ra_error, s.dec_error, s.pmra, s.pmra_error, s.pmdec, s.pmdec_error, s.parallax, s.parallax_error, s.radial_velocity, s.radial_velocity_error, s.ref_epoch, s.mag, s.weight
  FROM astrodb._hpx_ranges(cra, p_dec, pref) r
  CROSS JOIN LATERAL (SELECT * FROM astrodb.sources s0 WHERE s0.catalog_id = k.id
    AND s0.hpx29 BETWEEN r.lo AND r.hi OFFSET 0) s) q
  OFFSET 0) q
  OFFSET 0) q
  OFFSET 0) q
  OFFSET 0) q
  OFFSET 0) q) p
          OFFSET 0) w
   WHERE w.distance <= p_radius
   ORDER BY w.distance;
END
$fn$;


-- astrodb.footprint: the polygon as astrodb.query.regions.Polygon, then one query whose edge
-- tests are constants (EXECUTE ... USING: the planner folds the parameter array into them).
CREATE FUNCTION astrodb._footprint(p_catalog text, p_polygon float8[], p_epoch float8)
RETURNS SETOF astrodb._source_row
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100
SET jit = off
SET max_parallel_workers_per_gather = 0
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
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
  kk float8[]; terms text[] := '{}'; i int; j int; o int;
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
    RAISE EXCEPTION 'astrodb.footprint: no catalog "%" in the store (catalogs: %)', p_catalog,
      coalesce((SELECT string_agg(c.name, ', ' ORDER BY c.name) FROM astrodb.catalogs c), 'none')
      USING ERRCODE = 'undefined_object';
  END IF;

  -- Unit vectors, their normalized mean c (the polygon must lie within the hemisphere about
  -- it), a tangent-plane basis (e1, e2) at c and the gnomonic vertex coordinates.
  FOR i IN 1..n LOOP
    vx[i] := cos(vdec[i] * 0.017453292519943295) * cos(vra[i] * 0.017453292519943295);
    vy[i] := cos(vdec[i] * 0.017453292519943295) * sin(vra[i] * 0.017453292519943295);
    vz[i] := sin(vdec[i] * 0.017453292519943295);
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
  DECLARE
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
  -- Bounding cap: centre c, radius the largest vertex distance; pre-filter as for a cone.
  cra := 57.29577951308232 * atan2(cy, cx);
  cra := cra - 360.0 * floor(cra / 360.0);
  cdec := 57.29577951308232 * asin(greatest(-1.0, least(1.0, cz)));
  FOR i IN 1..n LOOP
    crad := greatest(crad, astrodb._separation(cra, cdec, vra[i] - 360.0 * floor(vra[i] / 360.0), vdec[i]));
  END LOOP;
  pref := astrodb._prefilter_radius(cat.pm_max, cat.radial_rate_max, cat.parallax_max,
                                    cat.epoch_min, cat.epoch_max, crad, p_epoch);

  -- Constants of the query, one array parameter: [1:9] c, e1, e2; [10:12] centre longitude
  -- (rad), sine and cosine of its latitude; then five numbers per edge from vertex j to
  -- vertex i: yi, yj, xj - xi, yj - yi, xi (Polygon.contains' even-odd crossing test).
  kk := ARRAY[cx, cy, cz, e1x, e1y, e1z, e2x, e2y, e2z, cra * 0.017453292519943295, sin(cdec * 0.017453292519943295), cos(cdec * 0.017453292519943295)];
  FOR i IN 1..n LOOP
    j := CASE WHEN i = 1 THEN n ELSE i - 1 END;
    IF py[i] <> py[j] THEN   -- a horizontal edge is never crossed
      kk := kk || ARRAY[py[i], py[j], px[j] - px[i], py[j] - py[i], px[i]];
      o := array_length(kk, 1) - 5;
      terms := terms || format('(($5[%s] > m._py) <> ($5[%s] > m._py) AND m._px < $5[%s] * (m._py - $5[%s]) / $5[%s] + $5[%s])::int',
                               o + 1, o + 2, o + 3, o + 1, o + 4, o + 5);
    END IF;
  END LOOP;

  RETURN QUERY EXECUTE format($q$
SELECT w.source_id, w.ra_t, w.dec_t, w.distance, w.ra_error, w.dec_error, w.pmra, w.pmra_error, w.pmdec, w.pmdec_error, w.parallax, w.parallax_error, w.radial_velocity, w.radial_velocity_error, w.ref_epoch, w.mag, w.weight
  FROM (SELECT m.*, %3$s AS distance
          FROM (SELECT t.*,
                       CASE WHEN t._dd > 0.0 THEN (t._v0 * $5[4] + t._v1 * $5[5] + t._v2 * $5[6]) / t._dd END AS _px,
                       CASE WHEN t._dd > 0.0 THEN (t._v0 * $5[7] + t._v1 * $5[8] + t._v2 * $5[9]) / t._dd END AS _py
                  FROM (SELECT u.*, u._v0 * $5[1] + u._v1 * $5[2] + u._v2 * $5[3] AS _dd
                          FROM (SELECT v.*,
                                       cos(v.dec_t * 0.017453292519943295) * cos(v.ra_t * 0.017453292519943295) AS _v0,
                                       cos(v.dec_t * 0.017453292519943295) * sin(v.ra_t * 0.017453292519943295) AS _v1,
                                       sin(v.dec_t * 0.017453292519943295) AS _v2
                                  FROM (%1$s) v
                                OFFSET 0) u
                        OFFSET 0) t
                OFFSET 0) m
         WHERE m._dd > 0.0 AND (%2$s) %% 2 = 1
        OFFSET 0) w
 ORDER BY w.distance$q$,
      CASE WHEN p_epoch IS NULL THEN 'SELECT q.*, q.ra AS ra_t, q."dec" AS dec_t FROM (' || 'SELECT s.source_id, s.ra, s."dec", s.ra_error, s.dec_error, s.pmra, s.pmra_error, s.pmdec, s.pmdec_error, s.parallax, s.parallax_error, s.radial_velocity, s.radial_velocity_error, s.ref_epoch, s.mag, s.weight FROM astrodb._hpx_ranges($2, $6, $3) r
  CROSS JOIN LATERAL (SELECT * FROM astrodb.sources s0 WHERE s0.catalog_id = $1
    AND s0.hpx29 BETWEEN r.lo AND r.hi OFFSET 0) s' || ') q'
           ELSE 'SELECT q.*, astrodb._wrap360(CASE WHEN q._ok THEN q._ra2 ELSE q.ra END) AS ra_t,
       CASE WHEN q._ok THEN greatest(-90.0, least(90.0, q._dec2)) ELSE q."dec" END AS dec_t
  FROM (SELECT q.*,
         q.ra + 57.29577951308232 * atan2(_b, _xx) AS _ra2,
         CASE WHEN _xx > 0.0 THEN q."dec" + 57.29577951308232 * asin((_c - _sd * _b * _b / (sqrt(_xx * _xx + _b * _b) + _xx)) / sqrt(_a * _a + _b * _b + _c * _c)) ELSE 57.29577951308232 * atan2(_a * _sd + _c * _cd, sqrt(_xx * _xx + _b * _b)) END AS _dec2
  FROM (SELECT q.*,
         1.0 + (_d - 1.0) * _x AS _a,
         _pa * (_d * _x * _g) AS _b,
         _pd * (_d * _x * _g) AS _c,
         (1.0 + (_d - 1.0) * _x) * _cd - _pd * (_d * _x * _g) * _sd AS _xx
  FROM (SELECT q.*,
         _m * (2.0 + _m) / (_d + _m + sqrt((_d + _m) * (_d + _m) - (_d * (1.0 - _bsr)) * (_d * (1.0 - _bsr)) * _m * (2.0 + _m))) AS _x
  FROM (SELECT q.*,
         2.0 / ((1.0 - _bsr) * (1.0 - _bsr) + 1.0 + (_mu * _g) * (_mu * _g)) AS _d,
         ($4 - q.ref_epoch) / _g AS _m,
         q.pmra IS NOT NULL AND q.pmdec IS NOT NULL AND _bsr * _bsr + (_mu * _g) * (_mu * _g) <= 0.25 AND abs(($4 - q.ref_epoch) / _g) < ''Infinity''::float8 AS _ok
  FROM (SELECT q.*,
         sin(q."dec" * 0.017453292519943295) AS _sd,
         cos(q."dec" * 0.017453292519943295) AS _cd,
         (q.pmra * 4.8481368110953594e-09) AS _pa,
         (q.pmdec * 4.8481368110953594e-09) AS _pd,
         sqrt((q.pmra * 4.8481368110953594e-09) * (q.pmra * 4.8481368110953594e-09) + (q.pmdec * 4.8481368110953594e-09) * (q.pmdec * 4.8481368110953594e-09)) AS _mu,
         3.261563777167434 / CASE WHEN (q.parallax * 1e-3) >= 461.03408236725033 * sqrt((q.pmra * 4.8481368110953594e-09) * (q.pmra * 4.8481368110953594e-09) + (q.pmdec * 4.8481368110953594e-09) * (q.pmdec * 4.8481368110953594e-09)) THEN greatest((q.parallax * 1e-3), 5e-07) ELSE greatest((q.parallax * 1e-3), 326.0 * astrodb._pmsafe_seps(q."dec" * 0.017453292519943295, (q.pmra * 4.8481368110953594e-09) / cos(q."dec" * 0.017453292519943295), (q.pmdec * 4.8481368110953594e-09)), 5e-07) END AS _g,
         coalesce(q.radial_velocity, 0.0) * 3.3356409519815205e-06 AS _bsr
  FROM (SELECT s.source_id, s.ra, s."dec", s.ra_error, s.dec_error, s.pmra, s.pmra_error, s.pmdec, s.pmdec_error, s.parallax, s.parallax_error, s.radial_velocity, s.radial_velocity_error, s.ref_epoch, s.mag, s.weight FROM astrodb._hpx_ranges($2, $6, $3) r
  CROSS JOIN LATERAL (SELECT * FROM astrodb.sources s0 WHERE s0.catalog_id = $1
    AND s0.hpx29 BETWEEN r.lo AND r.hi OFFSET 0) s) q
  OFFSET 0) q
  OFFSET 0) q
  OFFSET 0) q
  OFFSET 0) q
  OFFSET 0) q' END,
      coalesce(array_to_string(terms, ' + '), '0'),
      '57.29577951308232 * atan2(sqrt((cos(m.dec_t * 0.017453292519943295) * sin(m.ra_t * 0.017453292519943295 - $5[10]))^2 + ($5[12] * sin(m.dec_t * 0.017453292519943295) - $5[11] * cos(m.dec_t * 0.017453292519943295) * cos(m.ra_t * 0.017453292519943295 - $5[10]))^2), $5[11] * sin(m.dec_t * 0.017453292519943295) + $5[12] * cos(m.dec_t * 0.017453292519943295) * cos(m.ra_t * 0.017453292519943295 - $5[10]))')
    USING cat.id, cra, pref, p_epoch, kk, cdec;
END
$fn$;


CREATE FUNCTION astrodb.cone(catalog text, ra float8, "dec" float8, radius float8)
RETURNS TABLE(source_id bigint, ra float8, "dec" float8, distance float8, ra_error float8, dec_error float8, pmra float8, pmra_error float8, pmdec float8, pmdec_error float8, parallax float8, parallax_error float8, radial_velocity float8, radial_velocity_error float8, ref_epoch float8, mag float8, weight float8)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 100 AS $fn$ SELECT * FROM astrodb._cone($1, $2, $3, $4) $fn$;
COMMENT ON FUNCTION astrodb.cone(text, float8, float8, float8) IS
'Sources of catalog within radius (deg) of (ra, dec) (deg, ICRS) at their catalog epoch, ordered by '
'distance (deg): what Store.cone(ra, dec, radius, catalog=catalog) returns.';

CREATE FUNCTION astrodb.cone(catalog text, ra float8, "dec" float8, radius float8, epoch float8)
RETURNS TABLE(source_id bigint, ra float8, "dec" float8, distance float8, ra_error float8, dec_error float8, pmra float8, pmra_error float8, pmdec float8, pmdec_error float8, parallax float8, parallax_error float8, radial_velocity float8, radial_velocity_error float8, ref_epoch float8, mag float8, weight float8)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 100 AS $fn$ SELECT * FROM astrodb._cone_at($1, $2, $3, $4, $5) $fn$;
COMMENT ON FUNCTION astrodb.cone(text, float8, float8, float8, float8) IS
'Sources of catalog whose position at Julian year epoch (astrodb.propagate) is within radius (deg) of '
'(ra, dec), with ra, dec at epoch, ordered by distance (deg): what Store.cone(..., epoch=epoch) returns. '
'NULL epoch: the catalog epoch.';

CREATE FUNCTION astrodb.footprint(catalog text, polygon float8[], epoch float8 DEFAULT NULL)
RETURNS TABLE(source_id bigint, ra float8, "dec" float8, distance float8, ra_error float8, dec_error float8, pmra float8, pmra_error float8, pmdec float8, pmdec_error float8, parallax float8, parallax_error float8, radial_velocity float8, radial_velocity_error float8, ref_epoch float8, mag float8, weight float8)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 100 AS $fn$ SELECT * FROM astrodb._footprint($1, $2, $3) $fn$;
COMMENT ON FUNCTION astrodb.footprint(text, float8[], float8) IS
'Sources of catalog inside the spherical polygon ARRAY[[ra, dec], ...] (deg; great-circle edges, the '
'smaller side, within a hemisphere; a flat array of ra, dec pairs also works), optionally at Julian '
'year epoch, ordered by distance (deg) from the polygon centre: what Store.footprint returns.';
