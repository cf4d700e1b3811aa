"""Data and helpers of the service tests (a module with a unique name: test files import it)."""
from __future__ import annotations

import os
import warnings
from datetime import datetime, timedelta, timezone

import numpy as np
import astropy.units as u

from astrodb.store.schema import prov_images, prov_runs
from tests.support.synth import gaia_like

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from astrodb.service import Settings, create_app

CENTER = (150.0, 2.0)
PG_ADMIN = os.environ.get("ASTRODB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
RUN_IDS = ["0a1b2c3d-0000-4000-8000-000000000001", "0a1b2c3d-0000-4000-8000-000000000002"]


def gaia_table(n=3000, seed=1):
    t = gaia_like(n, *CENTER, 0.5, seed=seed, fast=5)
    rng = np.random.default_rng(seed)
    has_pm = ~np.isnan(np.asarray(t["pmra"]))
    for c in ("pmra_error", "pmdec_error"):
        t[c] = np.where(has_pm, rng.uniform(0.02, 0.5, n), np.nan) * u.mas / u.yr
    t["parallax_error"] = np.where(has_pm, rng.uniform(0.02, 0.5, n), np.nan) * u.mas
    t["source_id"] = t["source_id"] + 4_000_000_000_000_000_000  # Gaia-sized ids (> 2**53)
    return t


def record_runs(store) -> None:
    """Two runs as the aligner records them (blobs: npz rows and matches, FITS header text)."""
    from astropy.wcs import WCS
    from astrodb.provenance import npz_bytes
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = CENTER
    header = w.to_header().tostring().encode()
    cat = npz_bytes(row=np.arange(48), x=np.linspace(0, 100, 48), y=np.linspace(0, 50, 48), weight=np.ones(48))
    matches = npz_bytes(input=np.arange(40), partner=np.arange(40), partner_image=np.full(40, -1))
    t0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
    with store.engine.begin() as conn:
        for k, rid in enumerate(RUN_IDS):
            conn.execute(prov_runs.insert().values(
                run_id=rid, step=("relative", "absolute")[k], started_at=t0 + timedelta(hours=k),
                finished_at=t0 + timedelta(hours=k, seconds=3), user_name="tester", host="h",
                software={"astrodb": "0.1.0"}, parameters={"searchrad": 2.0, "nclip": 3, "sigma": 3.0},
                status="success", message=None, n_images=1, n_aligned=1,
                ref_kind="store" if k else "none", ref_source="store:gaia_dr3" if k else None,
                ref_catalog="gaia_dr3" if k else None, ref_query={"ra": 150.0, "dec": 2.0} if k else None,
                ref_files=[["/data/x.ecsv", "ab" * 32]] if k else None, ref_rows=100 if k else None,
                ref_sha256="cd" * 32 if k else None))
            conn.execute(prov_images.insert().values(
                run_id=rid, image_index=0, name="img1", group_id="1", epoch=2024.5, catalog_source="img1.ecsv",
                catalog_sha256="ef" * 32, catalog_rows=50, rows_used=48, catalog_data=cat, wcs_kind="fits",
                input_wcs=header, output_wcs=header, status="SUCCESS", fitgeometry="rshift",
                matrix=[[1, 0], [0, 1]], shift=[0.01, -0.02], rotation=1e-4, scale=1.0, skew=0.0,
                rmse=0.003, mae=0.002, nmatches=40, nref=60, nclipped=2, matches=matches))


def make_client(url: str, **settings) -> TestClient:
    return TestClient(create_app(Settings(store_url=url, **settings)), raise_server_exceptions=False)
