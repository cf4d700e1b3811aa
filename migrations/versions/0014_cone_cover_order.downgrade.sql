-- Revision 0014 down, first step: drop the functions revision 0014 added; the migration then runs
-- revision 0011's frozen upgrade SQL, which drops and recreates the rest as 0011 left them.
DROP FUNCTION IF EXISTS astrodb._hpx_ranges(float8, float8, float8, bigint);
DROP FUNCTION IF EXISTS astrodb._hpx_cover(float8, float8, float8, int);
DROP FUNCTION IF EXISTS astrodb._cover_order(bigint, float8, float8, float8);
DROP FUNCTION IF EXISTS astrodb._hpx_pixel(int, float8, float8);
DROP FUNCTION IF EXISTS astrodb._check_region(text, bigint, text, float8, float8, float8, float8, text);
DROP FUNCTION IF EXISTS astrodb._cell_ranges(bytea);
DROP FUNCTION IF EXISTS astrodb._hpx_pixels(int, float8, float8, float8);
