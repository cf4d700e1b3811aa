"""Position uncertainties at the query epoch: linear propagation with the pm errors and their
correlations, and a prior on the unknown motion of 2-parameter sources."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

import astrodb
from astrodb import epoch as epochs


def test_position_errors_match_monte_carlo():
    rng = np.random.default_rng(3)
    sig, sig_pm, rho, dt = 0.4, 0.3, -0.6, 14.0
    cov = [[sig**2, rho * sig * sig_pm], [rho * sig * sig_pm, sig_pm**2]]
    draws = rng.multivariate_normal([0, 0], cov, size=400_000)
    expected = np.std(draws[:, 0] + dt * draws[:, 1])
    ra_e, dec_e = epochs.position_errors([sig], [sig], [sig_pm], [sig_pm], dt, has_pm=[True],
                                         ra_pmra_corr=[rho], dec_pmdec_corr=[0.0])
    assert ra_e[0] == pytest.approx(expected, rel=5e-3)
    assert dec_e[0] == pytest.approx(np.hypot(sig, dt * sig_pm))


def test_two_parameter_sources_grow_with_the_prior_and_dt_zero_changes_nothing():
    ra_e, dec_e = epochs.position_errors([1.0, 0.2], [2.0, 0.3], [np.nan, np.nan], [np.nan, 0.1], -4.0,
                                         has_pm=[False, True], pm_prior=5.0)
    assert ra_e[0] == pytest.approx(np.hypot(1.0, 20.0)) and dec_e[0] == pytest.approx(np.hypot(2.0, 20.0))
    assert ra_e[1] == pytest.approx(0.2)  # pm present, its error unknown: counts as zero
    assert dec_e[1] == pytest.approx(np.hypot(0.3, 0.4))
    same = epochs.position_errors([1.0], [2.0], [3.0], [np.nan], 0.0, has_pm=[False])
    assert same[0][0] == 1.0 and same[1][0] == 2.0
    with pytest.raises(ValueError, match="pm_prior"):
        epochs.position_errors([1.0], [1.0], [1.0], [1.0], 1.0, has_pm=[True], pm_prior=-1)


def test_query_reports_errors_at_the_epoch(db_factory):
    store = db_factory.store()
    t = Table({"ra": [10.0, 10.001], "dec": [20.0, 20.0], "ra_error": [1.0, 1.0], "dec_error": [2.0, 2.0],
               "pmra": [np.nan, 5.0], "pmdec": [np.nan, -3.0], "pmra_error": [np.nan, 0.5],
               "pmdec_error": [np.nan, 0.25], "parallax": [np.nan, 1.0], "source_id": [1, 2]})
    store.ingest_catalog(t, name="errs", epoch=2016.0)
    at_ref = store.cone(10.0, 20.0, 0.01, catalog="errs")
    assert "ra_epoch_error" not in at_ref.colnames
    got = store.cone(10.0, 20.0, 0.01, catalog="errs", epoch=2026.0, pm_prior=2.0)
    by_id = {int(r["source_id"]): r for r in got}
    assert by_id[1]["ra_epoch_error"] == pytest.approx(np.hypot(1.0, 20.0))
    assert by_id[1]["dec_epoch_error"] == pytest.approx(np.hypot(2.0, 20.0))
    assert not by_id[1]["propagated"] and by_id[2]["propagated"]
    assert by_id[2]["ra_epoch_error"] == pytest.approx(np.hypot(1.0, 5.0))
    assert by_id[2]["dec_epoch_error"] == pytest.approx(np.hypot(2.0, 2.5))
    assert str(got["ra_epoch_error"].unit) == "mas"
    default = store.cone(10.0, 20.0, 0.01, catalog="errs", epoch=2026.0)
    assert default[default["source_id"] == 1]["ra_epoch_error"][0] == pytest.approx(
        np.hypot(1.0, 10 * epochs.DEFAULT_PM_PRIOR))
    with pytest.raises(astrodb.QueryError, match="pm_prior"):
        store.cone(10.0, 20.0, 0.01, catalog="errs", epoch=2026.0, pm_prior=float("nan"))
    store.close()
