"""The Gaia release names of stcal and the JWST pipeline, and the store catalogs they stand for.

``GAIADR1``/``GAIADR2``/``GAIADR3`` name the store's ``gaia_dr1``/``gaia_dr2``/``gaia_dr3``
catalogs (what ``astrodb ingest gaia --release`` names them); ``GAIAREFCAT`` and
``GAIADR3_S3`` name ``gaia_dr3``.
"""
from __future__ import annotations

__all__ = ["GAIA_NAMES", "store_catalog"]

#: stcal's name (upper case) -> the store catalog it stands for.
GAIA_NAMES = {"GAIADR1": "gaia_dr1", "GAIADR2": "gaia_dr2", "GAIADR3": "gaia_dr3",
              "GAIAREFCAT": "gaia_dr3", "GAIADR3_S3": "gaia_dr3"}


def store_catalog(name: str) -> str | None:
    """The store catalog a Gaia release name stands for (any case, surrounding blanks ignored).

    Parameters
    ----------
    name : str
        E.g. ``GAIADR3`` or ``gaiadr3``.

    Returns
    -------
    str or None
        E.g. ``gaia_dr3``; None when ``name`` is not one of :data:`GAIA_NAMES`.
    """
    return GAIA_NAMES.get(name.strip().upper())
