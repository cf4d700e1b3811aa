"""Gaia archive bulk partitions for tests, written in each release's exact layout.

Layouts (as the ESA Gaia archive writes its ``gaia_source`` bulk files):

* DR1 ``GaiaSource_000-000-000.csv.gz`` / TGAS ``TgasSource_000-000-000.csv.gz``: plain CSV, a header
  row, empty fields for nulls, booleans ``false``/``true``, ref_epoch 2015.0; most gaia_source rows
  are 2-parameter (no parallax/proper motion); TGAS rows all 5-parameter, ``hip``/``tycho2_id`` first.
* DR2 ``GaiaSource_<first source_id>_<last source_id>.csv.gz``: plain CSV, header row, empty fields
  for nulls, ref_epoch 2015.5, ``radial_velocity``.
* EDR3/DR3 ``GaiaSource_000000-003111.csv.gz`` (HEALPix level-8 range of the rows): ECSV, i.e.
  ~1000 ``#`` YAML header lines, the header row, data; missing values written ``null``, booleans
  ``True``/``False``, ref_epoch 2016.0; EDR3 has ``dr2_radial_velocity`` instead of radial_velocity.

Rows: the real Gaia DR3 rows of ``tests/data/gaia_dr3`` (50 cone rows and 2 stars with radial
velocities; their text is copied verbatim, nulls rewritten as the bulk files write them; where they
come from: tests/data/README.md), followed by generated rows (realistic magnitudes, errors,
2-parameter sources, negative parallaxes, missing radial velocities). Everything is deterministic
in ``seed``.

``gaia_rows(release, n, seed)`` gives the cells as a pyarrow Table of strings (null = missing), the
exact text the writers put in the file, so tests can compare a reader's output with what was written
(:func:`expected_float`, :func:`expected_int`).

Gaia data: ESA/Gaia/DPAC, CC BY-SA 3.0 IGO.
"""
from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: The real Gaia DR3 rows shipped with the tests (tests/data/README.md says where they come from).
GAIA_DATA = Path(__file__).resolve().parents[1] / "data" / "gaia_dr3"

REF_EPOCH_TEXT = {"dr1": "2015.0", "dr2": "2015.5", "edr3": "2016.0", "dr3": "2016.0"}
SOLUTION_ID = {"dr1": "1635378410781933568", "dr2": "1635721458409799680",
               "edr3": "1636042515805110273", "dr3": "1636148068921376768"}
DESIGNATION = {"dr2": "Gaia DR2", "edr3": "Gaia EDR3", "dr3": "Gaia DR3"}

# --- column orders -------------------------------------------------------------------------------

#: Gaia DR3 gaia_source, the 152 columns of the bulk files, in order, with their ECSV datatype
#: (f4 float32, f8 float64, i2 int16, i8 int64, ? bool, S string).
_DR3 = """
solution_id:i8 designation:S source_id:i8 random_index:i8 ref_epoch:f8 ra:f8 ra_error:f4
dec:f8 dec_error:f4 parallax:f8 parallax_error:f4 parallax_over_error:f4 pm:f4 pmra:f8
pmra_error:f4 pmdec:f8 pmdec_error:f4 ra_dec_corr:f4 ra_parallax_corr:f4 ra_pmra_corr:f4
ra_pmdec_corr:f4 dec_parallax_corr:f4 dec_pmra_corr:f4 dec_pmdec_corr:f4
parallax_pmra_corr:f4 parallax_pmdec_corr:f4 pmra_pmdec_corr:f4 astrometric_n_obs_al:i2
astrometric_n_obs_ac:i2 astrometric_n_good_obs_al:i2 astrometric_n_bad_obs_al:i2
astrometric_gof_al:f4 astrometric_chi2_al:f4 astrometric_excess_noise:f4
astrometric_excess_noise_sig:f4 astrometric_params_solved:i2 astrometric_primary_flag:?
nu_eff_used_in_astrometry:f4 pseudocolour:f4 pseudocolour_error:f4 ra_pseudocolour_corr:f4
dec_pseudocolour_corr:f4 parallax_pseudocolour_corr:f4 pmra_pseudocolour_corr:f4
pmdec_pseudocolour_corr:f4 astrometric_matched_transits:i2 visibility_periods_used:i2
astrometric_sigma5d_max:f4 matched_transits:i2 new_matched_transits:i2
matched_transits_removed:i2 ipd_gof_harmonic_amplitude:f4 ipd_gof_harmonic_phase:f4
ipd_frac_multi_peak:i2 ipd_frac_odd_win:i2 ruwe:f4 scan_direction_strength_k1:f4
scan_direction_strength_k2:f4 scan_direction_strength_k3:f4 scan_direction_strength_k4:f4
scan_direction_mean_k1:f4 scan_direction_mean_k2:f4 scan_direction_mean_k3:f4
scan_direction_mean_k4:f4 duplicated_source:? phot_g_n_obs:i2 phot_g_mean_flux:f8
phot_g_mean_flux_error:f4 phot_g_mean_flux_over_error:f4 phot_g_mean_mag:f4 phot_bp_n_obs:i2
phot_bp_mean_flux:f8 phot_bp_mean_flux_error:f4 phot_bp_mean_flux_over_error:f4
phot_bp_mean_mag:f4 phot_rp_n_obs:i2 phot_rp_mean_flux:f8 phot_rp_mean_flux_error:f4
phot_rp_mean_flux_over_error:f4 phot_rp_mean_mag:f4 phot_bp_rp_excess_factor:f4
phot_bp_n_contaminated_transits:i2 phot_bp_n_blended_transits:i2
phot_rp_n_contaminated_transits:i2 phot_rp_n_blended_transits:i2 phot_proc_mode:i2 bp_rp:f4
bp_g:f4 g_rp:f4 radial_velocity:f4 radial_velocity_error:f4 rv_method_used:i2
rv_nb_transits:i2 rv_nb_deblended_transits:i2 rv_visibility_periods_used:i2
rv_expected_sig_to_noise:f4 rv_renormalised_gof:f4 rv_chisq_pvalue:f4 rv_time_duration:f4
rv_amplitude_robust:f4 rv_template_teff:f4 rv_template_logg:f4 rv_template_fe_h:f4
rv_atm_param_origin:i2 vbroad:f4 vbroad_error:f4 vbroad_nb_transits:i2 grvs_mag:f4
grvs_mag_error:f4 grvs_mag_nb_transits:i2 rvs_spec_sig_to_noise:f4 phot_variable_flag:S l:f8
b:f8 ecl_lon:f8 ecl_lat:f8 in_qso_candidates:? in_galaxy_candidates:? non_single_star:i2
has_xp_continuous:? has_xp_sampled:? has_rvs:? has_epoch_photometry:? has_epoch_rv:?
has_mcmc_gspphot:? has_mcmc_msc:? in_andromeda_survey:? classprob_dsc_combmod_quasar:f4
classprob_dsc_combmod_galaxy:f4 classprob_dsc_combmod_star:f4 teff_gspphot:f4
teff_gspphot_lower:f4 teff_gspphot_upper:f4 logg_gspphot:f4 logg_gspphot_lower:f4
logg_gspphot_upper:f4 mh_gspphot:f4 mh_gspphot_lower:f4 mh_gspphot_upper:f4
distance_gspphot:f4 distance_gspphot_lower:f4 distance_gspphot_upper:f4 azero_gspphot:f4
azero_gspphot_lower:f4 azero_gspphot_upper:f4 ag_gspphot:f4 ag_gspphot_lower:f4
ag_gspphot_upper:f4 ebpminrp_gspphot:f4 ebpminrp_gspphot_lower:f4 ebpminrp_gspphot_upper:f4
libname_gspphot:S
"""
DR3_TYPES: dict[str, str] = dict(item.split(":") for item in _DR3.split())
DR3_COLUMNS: tuple[str, ...] = tuple(DR3_TYPES)

_CORR = ("ra_dec_corr", "ra_parallax_corr", "ra_pmra_corr", "ra_pmdec_corr", "dec_parallax_corr",
         "dec_pmra_corr", "dec_pmdec_corr", "parallax_pmra_corr", "parallax_pmdec_corr", "pmra_pmdec_corr")

#: Gaia DR1 gaia_source (Gaia DR1 data model, section 1.1), in archive order.
DR1_COLUMNS: tuple[str, ...] = (
    "solution_id", "source_id", "random_index", "ref_epoch", "ra", "ra_error", "dec", "dec_error",
    "parallax", "parallax_error", "pmra", "pmra_error", "pmdec", "pmdec_error", *_CORR,
    "astrometric_n_obs_al", "astrometric_n_obs_ac", "astrometric_n_good_obs_al",
    "astrometric_n_good_obs_ac", "astrometric_n_bad_obs_al", "astrometric_n_bad_obs_ac",
    "astrometric_delta_q", "astrometric_excess_noise", "astrometric_excess_noise_sig",
    "astrometric_primary_flag", "astrometric_relegation_factor", "astrometric_weight_al",
    "astrometric_weight_ac", "astrometric_priors_used", "matched_observations", "duplicated_source",
    "scan_direction_strength_k1", "scan_direction_strength_k2", "scan_direction_strength_k3",
    "scan_direction_strength_k4", "scan_direction_mean_k1", "scan_direction_mean_k2",
    "scan_direction_mean_k3", "scan_direction_mean_k4", "phot_g_n_obs", "phot_g_mean_flux",
    "phot_g_mean_flux_error", "phot_g_mean_mag", "phot_variable_flag", "l", "b", "ecl_lon", "ecl_lat",
)
#: Gaia DR1 tgas_source: hip and tycho2_id first, then the gaia_source columns.
TGAS_COLUMNS: tuple[str, ...] = ("hip", "tycho2_id", *DR1_COLUMNS)

#: Gaia DR2 gaia_source bulk CSV columns (Gaia DR2 data model, section 14.1.1), in archive order.
DR2_COLUMNS: tuple[str, ...] = (
    "solution_id", "designation", "source_id", "random_index", "ref_epoch", "ra", "ra_error", "dec",
    "dec_error", "parallax", "parallax_error", "parallax_over_error", "pmra", "pmra_error", "pmdec",
    "pmdec_error", *_CORR, "astrometric_n_obs_al", "astrometric_n_obs_ac",
    "astrometric_n_good_obs_al", "astrometric_n_bad_obs_al", "astrometric_gof_al",
    "astrometric_chi2_al", "astrometric_excess_noise", "astrometric_excess_noise_sig",
    "astrometric_params_solved", "astrometric_primary_flag", "astrometric_weight_al",
    "astrometric_pseudo_colour", "astrometric_pseudo_colour_error", "mean_varpi_factor_al",
    "astrometric_matched_observations", "visibility_periods_used", "astrometric_sigma5d_max",
    "frame_rotator_object_type", "matched_observations", "duplicated_source", "phot_g_n_obs",
    "phot_g_mean_flux", "phot_g_mean_flux_error", "phot_g_mean_flux_over_error", "phot_g_mean_mag",
    "phot_bp_n_obs", "phot_bp_mean_flux", "phot_bp_mean_flux_error", "phot_bp_mean_flux_over_error",
    "phot_bp_mean_mag", "phot_rp_n_obs", "phot_rp_mean_flux", "phot_rp_mean_flux_error",
    "phot_rp_mean_flux_over_error", "phot_rp_mean_mag", "phot_bp_rp_excess_factor", "phot_proc_mode",
    "bp_rp", "bp_g", "g_rp", "radial_velocity", "radial_velocity_error", "rv_nb_transits",
    "rv_template_teff", "rv_template_logg", "rv_template_fe_h", "phot_variable_flag", "l", "b",
    "ecl_lon", "ecl_lat", "priam_flags", "teff_val", "teff_percentile_lower", "teff_percentile_upper",
    "a_g_val", "a_g_percentile_lower", "a_g_percentile_upper", "e_bp_min_rp_val",
    "e_bp_min_rp_percentile_lower", "e_bp_min_rp_percentile_upper", "flame_flags", "radius_val",
    "radius_percentile_lower", "radius_percentile_upper", "lum_val", "lum_percentile_lower",
    "lum_percentile_upper",
)

#: Gaia EDR3 gaia_source (Gaia EDR3 data model), in archive order: DR3's first 96 columns less the
#: RVS/GSP-Phot/classification ones, and the six dr2_* radial-velocity columns.
EDR3_COLUMNS: tuple[str, ...] = (
    *DR3_COLUMNS[:DR3_COLUMNS.index("phot_rp_mean_mag") + 1],
    "phot_bp_n_contaminated_transits", "phot_bp_n_blended_transits",
    "phot_rp_n_contaminated_transits", "phot_rp_n_blended_transits", "phot_proc_mode",
    "phot_bp_rp_excess_factor", "bp_rp", "bp_g", "g_rp", "dr2_radial_velocity",
    "dr2_radial_velocity_error", "dr2_rv_nb_transits", "dr2_rv_template_teff",
    "dr2_rv_template_logg", "dr2_rv_template_fe_h", "l", "b", "ecl_lon", "ecl_lat",
)

_EXTRA_TYPES = {
    "hip": "i8", "tycho2_id": "S", "astrometric_n_good_obs_ac": "i2", "astrometric_n_bad_obs_ac": "i2",
    "astrometric_priors_used": "i2", "matched_observations": "i2", "frame_rotator_object_type": "i2",
    "astrometric_matched_observations": "i2", "priam_flags": "i8", "flame_flags": "i8",
    "dr2_rv_nb_transits": "i2", "dr2_radial_velocity": "f4", "dr2_radial_velocity_error": "f4",
    "dr2_rv_template_teff": "f4", "dr2_rv_template_logg": "f4", "dr2_rv_template_fe_h": "f4",
}
_EDR3_UNITS = {"dr2_radial_velocity": "km.s**-1", "dr2_radial_velocity_error": "km.s**-1",
               "dr2_rv_template_teff": "K", "dr2_rv_template_logg": "log(cm.s**-2)",
               "dr2_rv_template_fe_h": "'''dex'''"}
_EDR3_DESCRIPTIONS = {
    "dr2_radial_velocity": "Radial velocity from Gaia DR2",
    "dr2_radial_velocity_error": "Radial velocity error from Gaia DR2",
    "dr2_rv_nb_transits": "Number of transits used to compute radial velocity in Gaia DR2",
    "dr2_rv_template_teff": "Teff of the template used to compute radial velocity in Gaia DR2",
    "dr2_rv_template_logg": "logg of the template used to compute radial velocity in Gaia DR2",
    "dr2_rv_template_fe_h": "Fe/H of the template used to compute radial velocity in Gaia DR2",
}


def columns_of(release: str, *, tgas: bool = False) -> tuple[str, ...]:
    """The bulk file's columns, in order."""
    if release == "dr1":
        return TGAS_COLUMNS if tgas else DR1_COLUMNS
    return {"dr2": DR2_COLUMNS, "edr3": EDR3_COLUMNS, "dr3": DR3_COLUMNS}[release]


def column_type(release: str, name: str) -> str:
    kind = DR3_TYPES.get(name) or _EXTRA_TYPES.get(name) or "f8"
    if release in ("dr1", "dr2") and kind == "f4" and not name.endswith("_corr"):
        kind = "f8"  # DR1/DR2 wrote most floats as doubles
    return kind


# --- the real rows -------------------------------------------------------------------------------

def _data_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line for line in f if not line.startswith("#")]


@functools.lru_cache(maxsize=1)
def real_dr3_rows() -> pa.Table | None:
    """The real Gaia DR3 rows as bulk-file cells (strings, null = missing), in DR3 column order:
    the 50 cone rows (``astroquery_gaia_dr3_cone50.ecsv``) and the 2 VOTable stars with radial
    velocities. None when ``GAIA_DATA`` is missing."""
    cone = GAIA_DATA / "astroquery_gaia_dr3_cone50.ecsv"
    if not cone.is_file():
        return None
    reader = csv.reader(_data_lines(cone), delimiter=" ", quotechar='"')
    header = next(reader)
    cells = [row for row in reader if row]
    index = {name: i for i, name in enumerate(header)}
    cols = {name: [row[index[name]] or None for row in cells] for name in DR3_COLUMNS}

    vot = GAIA_DATA / "astroquery_gaia_dr3_2rows.vot"
    if vot.is_file():
        from astropy.table import Table  # the archive's VOTable: upper-case DESIGNATION/SOURCE_ID
        t = Table.read(vot, format="votable")
        lower = {c.lower(): c for c in t.colnames}
        for name in DR3_COLUMNS:
            col = t[lower[name]]
            mask = np.ma.getmaskarray(col)
            data = np.ma.getdata(col)
            for value, masked in zip(data, mask):
                cols[name].append(None if masked else _text_of(value))
    return pa.table({name: pa.array(values, pa.string()) for name, values in cols.items()})


def _text_of(value) -> str:
    """Archive-style text of one VOTable value."""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, np.floating):
        return str(value) if value.dtype == np.float32 else repr(float(value))
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode()
    return str(value)


# --- generated rows ------------------------------------------------------------------------------

def _as_text(values: np.ndarray, kind: str, null: np.ndarray | None = None) -> pa.Array:
    if kind == "?":
        arr = pa.array(np.where(values, "True", "False"))
    elif kind == "S":
        arr = pa.array(np.asarray(values, dtype=str))
    elif kind == "f4":
        arr = pa.array(np.asarray(values, np.float32)).cast(pa.string())
    elif kind == "f8":
        arr = pa.array(np.asarray(values, np.float64)).cast(pa.string())
    else:
        arr = pa.array(np.asarray(values, np.int64)).cast(pa.string())
    if null is not None and null.any():
        arr = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), arr)
    return arr


def _source_ids(ra: np.ndarray, dec: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaia-style ids: HEALPix level-12 nested pixel << 35, DPC code, running number << 7."""
    n = len(ra)
    try:
        import astropy.units as u
        from astropy_healpix import HEALPix
        pix = HEALPix(nside=4096, order="nested").lonlat_to_healpix(ra * u.deg, dec * u.deg).astype(np.int64)
    except ImportError:  # pragma: no cover - astropy-healpix is a project dependency
        pix = np.full(n, 12_000_000, np.int64)
    # Unique within a file and (almost surely) across files generated with other seeds.
    running = rng.choice((1 << 25) - 1, n, replace=False).astype(np.int64) + 1
    return (pix << 35) + (rng.integers(0, 4, n) << 32) + (running << 7)


def _context(two: np.ndarray, six: np.ndarray, has_rv: np.ndarray, rng) -> dict:
    n = len(two)
    return {"two": two, "six": six, "has_rv": has_rv, "gsp": rng.random(n) < 0.3,
            "bprp": rng.random(n) < 0.95}


def _filler(name: str, kind: str, n: int, rng: np.random.Generator, ctx: dict, release: str) -> pa.Array:
    """Plausible values for a column the tests do not look at (realistic text widths and nulls)."""
    two, six, has_rv, gsp = ctx["two"], ctx["six"], ctx["has_rv"], ctx["gsp"]
    null = np.zeros(n, bool)
    if name in ("parallax_over_error", "pm", "astrometric_delta_q"):
        null = two
    elif "pseudocolour" in name or "pseudo_colour" in name:
        null = ~six
    elif name == "nu_eff_used_in_astrometry":
        null = two | six
    elif name.startswith(("rv_", "dr2_rv_", "vbroad", "grvs_", "rvs_")):
        null = ~has_rv
    elif "gspphot" in name or name.endswith(("_val", "_lower", "_upper")) or name in ("priam_flags", "flame_flags"):
        null = ~gsp
    elif name.startswith(("phot_bp_mean", "phot_rp_mean", "bp_", "g_rp", "phot_bp_rp")):
        null = ~ctx["bprp"]
    elif name.startswith("classprob"):
        null = rng.random(n) < 0.1
    if kind == "?":
        return _as_text(rng.random(n) < 0.05, kind)
    if kind == "S":
        if name == "phot_variable_flag":
            values = np.where(rng.random(n) < 0.02, "VARIABLE", "NOT_AVAILABLE")
        elif name == "libname_gspphot":
            values = rng.choice(["MARCS", "PHOENIX", "A", "OB"], n)
        else:
            values = np.full(n, "")
        return _as_text(values, kind, null)
    if kind in ("i2", "i8"):
        if name == "solution_id":
            return pa.array([SOLUTION_ID[release]] * n, pa.string())
        if name == "random_index":
            return _as_text(rng.integers(0, 1_800_000_000, n), kind)
        return _as_text(rng.integers(0, 450, n), kind, null)
    if name.endswith("_corr"):
        values = rng.uniform(-0.6, 0.6, n)
    elif name in ("l", "ecl_lon"):
        values = rng.uniform(0, 360, n)
    elif name in ("b", "ecl_lat"):
        values = rng.uniform(-90, 90, n)
    elif "teff" in name:
        values = rng.uniform(3200, 9000, n)
    elif name.endswith("_flux"):
        values = rng.lognormal(7, 2, n)
    else:
        values = rng.lognormal(0, 1.2, n)
    return _as_text(values, kind, null)


def _generated(release: str, n: int, rng: np.random.Generator, *, tgas: bool) -> pa.Table:
    names = columns_of(release, tgas=tgas)
    g = np.clip(21.0 - rng.exponential(1.7, n), 5.5, 21.0)
    if release == "dr1":
        two = np.zeros(n, bool) if tgas else rng.random(n) > 0.08  # 5-parameter: the TGAS subset
        if not tgas:
            g = np.where(two, g, np.clip(g - 9.0, 5.5, 12.0))
    else:
        two = rng.random(n) < np.where(g > 19.5, 0.5, 0.05)
    six = ~two & (rng.random(n) < 0.55) if release in ("edr3", "dr3") else np.zeros(n, bool)
    has_rv = (release != "dr1") & ~two & (g < 15.0) & (rng.random(n) < 0.6)
    g_null = rng.random(n) < (0.0 if release == "dr1" else 0.003)

    dec = -60.0 + rng.uniform(-0.5, 0.5, n)
    ra = 280.0 + rng.uniform(-0.5, 0.5, n) / np.cos(np.radians(dec))
    sig = np.clip(0.02 * 10 ** (0.2 * (g - 15.0)), 0.008, 5.0) * np.where(two, 4.0, 1.0)
    true_plx = rng.lognormal(np.log(0.4), 0.9, n)
    plx = true_plx + rng.normal(0, 1, n) * 1.3 * sig  # faint stars: many negative parallaxes
    pmra = rng.normal(-2.0, 5.0, n) + rng.normal(0, 1, n) * sig
    pmdec = rng.normal(-4.0, 5.0, n) + rng.normal(0, 1, n) * sig
    rv, rv_err = rng.normal(-10.0, 35.0, n), 0.3 + rng.exponential(1.5, n)
    sid = _source_ids(ra, dec, rng)

    ctx = _context(two, six, has_rv, rng)
    core = {
        "source_id": _as_text(sid, "i8"),
        "ref_epoch": pa.array([REF_EPOCH_TEXT[release]] * n, pa.string()),
        "ra": _as_text(ra, "f8"), "dec": _as_text(dec, "f8"),
        "ra_error": _as_text(sig * rng.uniform(0.8, 1.2, n), column_type(release, "ra_error")),
        "dec_error": _as_text(sig * rng.uniform(0.8, 1.2, n), column_type(release, "dec_error")),
        "parallax": _as_text(plx, "f8", two),
        "parallax_error": _as_text(1.3 * sig, column_type(release, "parallax_error"), two),
        "pmra": _as_text(pmra, "f8", two), "pmdec": _as_text(pmdec, "f8", two),
        "pmra_error": _as_text(1.1 * sig, column_type(release, "pmra_error"), two),
        "pmdec_error": _as_text(1.0 * sig, column_type(release, "pmdec_error"), two),
        "parallax_over_error": _as_text(plx / (1.3 * sig), column_type(release, "parallax_over_error"), two),
        "pm": _as_text(np.hypot(pmra, pmdec), "f4", two),
        "phot_g_mean_mag": _as_text(g, column_type(release, "phot_g_mean_mag"), g_null),
        "astrometric_params_solved": _as_text(np.where(two, 3, np.where(six, 95, 31)), "i2"),
        "pseudocolour": _as_text(rng.uniform(1.3, 1.8, n), "f4", ~six),
    }
    for name in _CORR:
        core[name] = _as_text(rng.uniform(-0.6, 0.6, n), "f4", two if name != "ra_dec_corr" else None)
    rv_names = ("dr2_radial_velocity", "dr2_radial_velocity_error") if release == "edr3" else \
        ("radial_velocity", "radial_velocity_error")
    core[rv_names[0]] = _as_text(rv, "f4", ~has_rv)
    core[rv_names[1]] = _as_text(rv_err, "f4", ~has_rv)
    if release in DESIGNATION:
        core["designation"] = pc.binary_join_element_wise(DESIGNATION[release], core["source_id"], " ")
    if tgas:
        hip = rng.random(n) < 0.05
        core["hip"] = _as_text(rng.integers(1, 120_000, n), "i8", ~hip)
        tyc = [f"{a}-{b}-1" for a, b in zip(rng.integers(1, 9538, n), rng.integers(1, 12000, n))]
        core["tycho2_id"] = _as_text(np.array(tyc), "S", hip)
    cols = {name: core[name] if name in core else _filler(name, column_type(release, name), n, rng, ctx, release)
            for name in names}
    return pa.table(cols)


def _adapt_real(real: pa.Table, release: str, rng: np.random.Generator, *, tgas: bool) -> pa.Table:
    """The real DR3 rows in another release's layout: same text where the column exists, that
    release's ref_epoch/designation/conventions, generated values for the columns DR3 lacks."""
    if release == "dr3":
        return real
    params = real["astrometric_params_solved"].to_pylist()
    if tgas:  # TGAS holds 5-parameter solutions only
        keep = [p is not None and p != "3" for p in params]
        real = real.filter(pa.array(keep))
        params = real["astrometric_params_solved"].to_pylist()
    n = real.num_rows
    two = np.array([p == "3" for p in params], bool)
    six = np.array([p == "95" for p in params], bool)
    has_rv = np.array([v is not None for v in real["radial_velocity"].to_pylist()], bool)
    ctx = _context(two, six, has_rv, rng)
    sid = real["source_id"]
    rename = {"dr2_radial_velocity": "radial_velocity", "dr2_radial_velocity_error": "radial_velocity_error",
              "dr2_rv_nb_transits": "rv_nb_transits", "dr2_rv_template_teff": "rv_template_teff",
              "dr2_rv_template_logg": "rv_template_logg", "dr2_rv_template_fe_h": "rv_template_fe_h"}
    cols = {}
    for name in columns_of(release, tgas=tgas):
        kind = column_type(release, name)
        if name == "ref_epoch":
            cols[name] = pa.array([REF_EPOCH_TEXT[release]] * n, pa.string())
        elif name == "designation":
            cols[name] = pc.binary_join_element_wise(DESIGNATION[release], sid, " ")
        elif name == "solution_id":
            cols[name] = pa.array([SOLUTION_ID[release]] * n, pa.string())
        elif name == "astrometric_params_solved" and release == "dr2":
            cols[name] = pa.array(["3" if t else "31" for t in two], pa.string())  # no 6-parameter in DR2
        elif name == "hip" and tgas:
            cols[name] = pa.nulls(n, pa.string())
        elif name == "tycho2_id" and tgas:
            cols[name] = pa.array([f"{9000 + i}-{100 + i}-1" for i in range(n)], pa.string())
        elif release == "edr3" and name in rename:
            cols[name] = real[rename[name]].combine_chunks()
        elif name in real.column_names:
            cols[name] = real[name].combine_chunks()
        else:
            cols[name] = _filler(name, kind, n, rng, ctx, release)
    return pa.table(cols)


def gaia_rows(release: str, n: int = 1000, seed: int = 0, *, real: bool = True, tgas: bool = False) -> pa.Table:
    """``n`` rows of a ``release`` ("dr1", "dr2", "edr3", "dr3") bulk file as text cells (null =
    missing), sorted by source_id as the archive's files are: the real DR3 rows first (``real``;
    all 52 when ``n`` allows, in that release's layout), then generated ones."""
    rng = np.random.default_rng(seed)
    parts = []
    real_rows = real_dr3_rows() if real else None
    if real_rows is not None and n > 0:
        adapted = _adapt_real(real_rows, release, rng, tgas=tgas)
        parts.append(adapted.slice(0, min(n, adapted.num_rows)))
    done = sum(p.num_rows for p in parts)
    if n > done:
        gen = _generated(release, n - done, rng, tgas=tgas)
        if parts:  # never reuse a real source id
            taken = pc.is_in(gen["source_id"], value_set=parts[0]["source_id"].combine_chunks())
            assert not pc.any(taken).as_py()
        parts.append(gen)
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if release in ("dr1", "dr2"):  # their CSV writes booleans false/true
        for i, name in enumerate(table.column_names):
            if column_type(release, name) == "?":
                table = table.set_column(i, name, pc.utf8_lower(table[name]))
    order = np.argsort(table["source_id"].to_numpy().astype(np.int64), kind="stable")
    return table.take(pa.array(order))


def expected_float(rows: pa.Table, name: str) -> np.ndarray:
    """The float64 values a column's text says (NaN where null), parsed by Python's float()."""
    return np.array([np.nan if v is None else float(v) for v in rows[name].to_pylist()], np.float64)


def expected_int(rows: pa.Table, name: str) -> np.ndarray:
    return np.array([int(v) for v in rows[name].to_pylist()], np.int64)


# --- headers -------------------------------------------------------------------------------------

def _dr3_header_blocks() -> tuple[list[str], dict[str, list[str]], list[str]]:
    """The real archive ECSV header split into (preamble, per-column blocks, meta lines)."""
    src = GAIA_DATA / "astroquery_gaia_dr3_5rows.ecsv"
    if src.is_file():
        with open(src, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f if line.startswith("#")]
    else:  # a minimal header of the same shape
        lines = ["# %ECSV 1.0", "# ---", "# delimiter: ','", "# datatype:"]
        names = {"f4": "float32", "f8": "float64", "i2": "int16", "i8": "int64", "?": "bool", "S": "string"}
        for name, kind in DR3_TYPES.items():
            lines += ["# -", f"#   name: {name}", f"#   datatype: {names[kind]}"]
        lines += ["# meta:", "#   RELEASE: Gaia DR3"]
    start = lines.index("# datatype:") + 1
    stop = next(i for i, line in enumerate(lines) if line.startswith("# meta:") or line.startswith("# schema:"))
    preamble, body, meta = lines[:start], lines[start:stop], lines[stop:]
    blocks: dict[str, list[str]] = {}
    current: list[str] = []
    for line in body:
        if line == "# -":
            current = [line]
            continue
        current.append(line)
        m = re.match(r"#   name: (\S+)$", line)
        if m:
            blocks[m.group(1)] = current
    return preamble, blocks, meta


def ecsv_header(release: str, *, release_meta: bool = True, columns=None) -> list[str]:
    """The '#' lines of an EDR3/DR3 bulk file: the real DR3 archive header (``dist``, a query
    column, removed), for EDR3 with the dr2_* blocks; ``release_meta=False`` drops the meta
    section (which names the release); ``columns`` limits the datatype blocks to those."""
    preamble, blocks, meta = _dr3_header_blocks()
    out = list(preamble)
    for name in columns or columns_of(release):
        if name in blocks:
            out += blocks[name]
        else:
            kind = {"f4": "float32", "i2": "int16"}[_EXTRA_TYPES[name]]
            out += ["# -", f"#   name: {name}", f"#   datatype: {kind}"]
            if name in _EDR3_UNITS:
                out.append(f"#   unit: {_EDR3_UNITS[name]}")
            out.append(f"#   description: {_EDR3_DESCRIPTIONS[name]}")
    if release_meta:
        if release == "edr3":
            meta = [line.replace("Gaia DR3", "Gaia EDR3").replace("gaiadr3", "gaiaedr3") for line in meta]
        out += meta
    return out


# --- writers -------------------------------------------------------------------------------------

def partition_name(release: str, rows: pa.Table, *, index: int = 0, tgas: bool = False) -> str:
    if release == "dr1":
        stem = "TgasSource" if tgas else "GaiaSource"
        return f"{stem}_{index // 1_000_000:03d}-{index // 1000 % 1000:03d}-{index % 1000:03d}.csv.gz"
    sid = rows["source_id"].to_numpy().astype(np.int64)
    if release == "dr2":
        return f"GaiaSource_{sid.min()}_{sid.max()}.csv.gz"
    return f"GaiaSource_{sid.min() >> 43:06d}-{sid.max() >> 43:06d}.csv.gz"


def encode_rows(rows: pa.Table, *, null: str, delimiter: str = ",") -> bytes:
    """The data lines, one per row, each ending in a newline (no Python loop over rows)."""
    if rows.num_rows == 0:
        return b""
    cols = [pc.fill_null(rows[name].combine_chunks(), null) for name in rows.column_names]
    lines = pc.binary_join_element_wise(*cols, delimiter)
    lines = pc.binary_join_element_wise(lines, "", "\n").cast(pa.large_string())  # row + "\n"
    offsets = np.frombuffer(lines.buffers()[1], np.int64)[lines.offset:lines.offset + len(lines) + 1]
    return lines.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]


def write_partition(directory, release: str, rows: pa.Table, *, name: str | None = None,
                    ecsv: bool | None = None, release_meta: bool = True, tgas: bool = False,
                    index: int = 0, compresslevel: int = 6) -> Path:
    """Write ``rows`` (from :func:`gaia_rows`) as the archive writes a ``release`` bulk file;
    ECSV (``null`` for missing) for EDR3/DR3 unless ``ecsv=False``, plain CSV (empty for missing)
    otherwise. Returns the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if ecsv is None:
        ecsv = release in ("edr3", "dr3")
    head = ecsv_header(release, release_meta=release_meta, columns=rows.column_names) if ecsv else []
    text = "".join(line + "\n" for line in head) + ",".join(rows.column_names) + "\n"
    body = encode_rows(rows, null="null" if ecsv else "")
    path = directory / (name or partition_name(release, rows, index=index, tgas=tgas))
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0) as f:
        f.write(text.encode())
        f.write(body)
    return path


def write_dr3_partition(directory, n: int = 1000, seed: int = 0, *, real: bool = True, **kw) -> Path:
    return write_partition(directory, "dr3", gaia_rows("dr3", n, seed, real=real), **kw)


def write_edr3_partition(directory, n: int = 1000, seed: int = 0, *, real: bool = True, **kw) -> Path:
    return write_partition(directory, "edr3", gaia_rows("edr3", n, seed, real=real), **kw)


def write_dr2_partition(directory, n: int = 1000, seed: int = 0, *, real: bool = True, **kw) -> Path:
    return write_partition(directory, "dr2", gaia_rows("dr2", n, seed, real=real), **kw)


def write_dr1_partition(directory, n: int = 1000, seed: int = 0, *, tgas: bool = False, real: bool = True,
                        **kw) -> Path:
    return write_partition(directory, "dr1", gaia_rows("dr1", n, seed, real=real, tgas=tgas), tgas=tgas, **kw)


def relocated(release: str, rows: pa.Table, ra: np.ndarray, dec: np.ndarray, seed: int = 0, *,
              id_ra: np.ndarray | None = None, id_dec: np.ndarray | None = None) -> pa.Table:
    """``rows`` moved to (``ra``, ``dec``) (degrees at the reference epoch), with new source ids
    whose HEALPix level-12 pixel is that of (``id_ra``, ``id_dec``), by default the positions
    themselves (Gaia's ids keep where a source was when its record was made); sorted by id."""
    rng = np.random.default_rng(seed)
    ra, dec = np.asarray(ra, float) % 360.0, np.asarray(dec, float)
    sid = _source_ids(ra if id_ra is None else np.asarray(id_ra, float) % 360.0,
                      dec if id_dec is None else np.asarray(id_dec, float), rng)
    cols = {"ra": _as_text(ra, "f8"), "dec": _as_text(dec, "f8"), "source_id": _as_text(sid, "i8")}
    if release in DESIGNATION:
        cols["designation"] = pc.binary_join_element_wise(DESIGNATION[release], cols["source_id"], " ")
    table = rows
    for name, values in cols.items():
        table = table.set_column(table.column_names.index(name), name, values)
    return table.take(pa.array(np.argsort(sid, kind="stable")))


def with_motion(rows: pa.Table, index: int, pmra: float, pmdec: float) -> pa.Table:
    """``rows`` with row ``index`` given this proper motion (mas/yr) and a 5-parameter solution."""
    out = rows
    for name, value in (("pmra", pmra), ("pmdec", pmdec), ("parallax", 5.0), ("pmra_error", 0.05),
                        ("pmdec_error", 0.05), ("parallax_error", 0.05), ("astrometric_params_solved", 31)):
        if name not in out.column_names:
            continue
        values = out[name].to_pylist()
        values[index] = str(value)
        out = out.set_column(out.column_names.index(name), name, pa.array(values, pa.string()))
    return out


def write_bulk_by_pixels(directory, release: str, rows: pa.Table, files: int) -> list[Path]:
    """``rows`` as bulk files that tile the sky by HEALPix level-8 ranges of their source ids, as the
    archive's EDR3/DR3 files (``GaiaSource_<first>-<last>.csv.gz``, pixels first..last) or DR2's
    (``GaiaSource_<first source_id>_<last source_id>.csv.gz``) do: ``files`` files, each holding
    the rows of a run of the occupied pixels."""
    sid = rows["source_id"].to_numpy().astype(np.int64)
    pix = sid >> 43
    occupied = np.unique(pix)
    groups = np.array_split(occupied, min(files, len(occupied)))
    out = []
    for k, group in enumerate(groups):
        first = 0 if k == 0 else int(group[0])
        last = 12 * 4 ** 8 - 1 if k == len(groups) - 1 else int(groups[k + 1][0]) - 1
        part = rows.filter(pa.array((pix >= first) & (pix <= last)))
        if release == "dr2":
            ids = part["source_id"].to_numpy().astype(np.int64)
            name = f"GaiaSource_{ids.min()}_{ids.max()}.csv.gz"
        else:
            name = f"GaiaSource_{first:06d}-{last:06d}.csv.gz"
        out.append(write_partition(directory, release, part, name=name))
    return out


def file_md5(path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_md5sum(directory, names=None) -> Path:
    """``_MD5SUM.txt`` as the archive ships beside its partitions: ``<md5>  <file name>`` lines for
    ``names`` (default every ``*.csv.gz`` in ``directory``)."""
    directory = Path(directory)
    if names is None:
        names = sorted(p.name for p in directory.glob("*.csv.gz"))
    out = directory / "_MD5SUM.txt"
    out.write_text("".join(f"{file_md5(directory / name)}  {name}\n" for name in names))
    return out


# --- HATS catalogs -------------------------------------------------------------------------------

#: Parquet type of each gaia_source datatype code.
ARROW_TYPES = {"f4": pa.float32(), "f8": pa.float64(), "i2": pa.int16(), "i8": pa.int64(), "?": pa.bool_(),
               "S": pa.string()}


def typed_rows(release: str, rows: pa.Table) -> pa.Table:
    """:func:`gaia_rows`' text cells in the archive's types (float32 errors, int16 counts, ...), as
    a HATS catalog stores them."""
    return pa.table({name: rows[name].cast(ARROW_TYPES[column_type(release, name)]) for name in rows.column_names})


class HatsCatalog:
    """What :func:`write_hats_catalog` wrote."""

    def __init__(self, path: Path, rows: pa.Table, partitions: list[tuple[int, int]], files: list[Path]) -> None:
        self.path = path                  # the catalog directory
        self.rows = rows                  # every row, typed, ``_healpix_29`` first, by partition then pixel
        self.partitions = partitions      # (Norder, Npix), sorted
        self.files = files                # the partition files, in hats_partitions' order

    def expected(self, name: str) -> np.ndarray:
        """A column's values as the reader gives them (float64, NaN = null; int64 source_id)."""
        col = self.rows[name]
        if name.lower() == "source_id":
            return col.to_numpy().astype(np.int64)
        return col.cast(pa.float64()).to_numpy(zero_copy_only=False)


def write_hats_catalog(directory, release: str = "dr3", n: int = 1000, seed: int = 0, order: int = 6, *,
                       max_rows: int | None = None, real: bool = True, rows: pa.Table | None = None,
                       obs_collection: str | None = "default", properties_name: str = "hats.properties",
                       npix_dirs: int = 0, info_dir_column: bool = False, upper_case: bool = False) -> HatsCatalog:
    """Write a HATS catalog of ``n`` Gaia rows (from :func:`gaia_rows`, in the archive's types) in
    ``directory``, as hats-import lays it out::

        hats.properties                 obs_collection=gaia_<release>, hats_col_ra=ra, hats_nrows ...
        partition_info.csv              Norder,Npix (and Dir with ``info_dir_column``)
        dataset/_common_metadata        the Parquet schema
        dataset/Norder=K/Dir=D/Npix=N.parquet    D = N // 10000 * 10000

    Rows go to the partition of their order-``order`` nested HEALPix pixel; a partition with more
    than ``max_rows`` rows is split into its order+1 children (repeatedly), so orders mix. Each
    file is sorted by ``_healpix_29`` (the order-29 nested pixel, :func:`astrodb.query.healpix.hpx29`,
    the first column). The first ``npix_dirs`` partitions with 2+ rows are written the newer way, as
    a directory ``Npix=N/`` of two Parquet files. ``obs_collection=None`` leaves the release out of
    the properties; ``upper_case`` writes the column names in capitals.
    """
    from astrodb.query.healpix import hpx29

    directory = Path(directory)
    table = typed_rows(release, rows if rows is not None else gaia_rows(release, n, seed, real=real))
    pix = hpx29(table["ra"].to_numpy(), table["dec"].to_numpy())
    table = table.add_column(0, "_healpix_29", pa.array(pix, pa.int64()))
    if upper_case:
        table = table.rename_columns([c if c.startswith("_") else c.upper() for c in table.column_names])

    def parent(k: int) -> np.ndarray:
        return pix >> (2 * (29 - k))

    parts: dict[tuple[int, int], np.ndarray] = {}
    todo = [(order, int(p)) for p in np.unique(parent(order))]
    while todo:
        k, p = todo.pop()
        members = np.nonzero(parent(k) == p)[0]
        if max_rows is not None and len(members) > max_rows and k < 29:
            todo += [(k + 1, int(c)) for c in np.unique(parent(k + 1)[members])]
        else:
            parts[(k, p)] = members
    dataset = directory / "dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    pieces, files, dirs_left = [], [], npix_dirs
    for k, p in sorted(parts):
        members = parts[(k, p)]
        piece = table.take(pa.array(members[np.argsort(pix[members], kind="stable")]))
        pieces.append(piece)
        where = dataset / f"Norder={k}" / f"Dir={p // 10000 * 10000}"
        where.mkdir(parents=True, exist_ok=True)
        if dirs_left and piece.num_rows >= 2:
            dirs_left -= 1
            sub = where / f"Npix={p}"
            sub.mkdir(exist_ok=True)
            half = piece.num_rows // 2
            for i, chunk in enumerate((piece.slice(0, half), piece.slice(half))):
                pq.write_table(chunk, sub / f"part{i}.parquet")
                files.append(sub / f"part{i}.parquet")
        else:
            pq.write_table(piece, where / f"Npix={p}.parquet")
            files.append(where / f"Npix={p}.parquet")
    pq.write_metadata(table.schema, dataset / "_common_metadata")
    partitions = sorted(parts)
    info = "Norder,Npix,Dir\n" if info_dir_column else "Norder,Npix\n"
    info += "".join(f"{k},{p},{p // 10000 * 10000}\n" if info_dir_column else f"{k},{p}\n" for k, p in partitions)
    (directory / "partition_info.csv").write_text(info)
    collection = f"gaia_{release}" if obs_collection == "default" else obs_collection
    props = [f"obs_collection={collection}" if collection else "obs_collection=stars",
             "dataproduct_type=object", f"hats_nrows={table.num_rows}", "hats_col_ra=ra", "hats_col_dec=dec",
             f"hats_max_rows={max_rows or table.num_rows}", f"hats_order={max(k for k, _ in partitions)}",
             "hats_builder=astrodb tests", "hats_creation_date=2025-01-01T00\\:00UTC", "hats_version=v0.1",
             "obs_regime=Optical"]
    if collection:
        props.append(f"obs_title=Gaia {release.upper()} gaia_source (test)")
    (directory / properties_name).write_text("#HATS catalog\n" + "\n".join(props) + "\n")
    return HatsCatalog(directory, pa.concat_tables(pieces), partitions, files)
