"""Typed fit results, one per image, also stored on each corrector like stcal's ``fit_info``."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

SUCCESS = "SUCCESS"
REFERENCE = "REFERENCE"


@dataclass
class FitResult:
    """The outcome of one alignment fit for one image.

    ``status`` is "SUCCESS", "REFERENCE" (the frame of a relative alignment: unchanged) or
    "FAILED: <why>" (the image's WCS is unchanged). Positions and residuals are arcsec in the
    fit's tangent plane (``plane_center``, deg); ``matrix``/``shift`` map the image's sources
    onto the reference there (``corrected = matrix @ p + shift``).
    """

    name: str
    group_id: object
    status: str
    message: str = ""
    fitgeometry: str = "rshift"
    step: str = "relative"                   # "relative" or "absolute"
    matrix: np.ndarray = field(default_factory=lambda: np.eye(2))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(2))
    rotation: float = 0.0                    # deg, mean of the axes' rotations
    scale: float = 1.0                       # geometric mean of the axes' scales
    skew: float = 0.0                        # deg
    rmse: float = float("nan")               # arcsec, residuals of the group's used links
    mae: float = float("nan")                # arcsec
    nmatches: int = 0                        # links used in the fit (after clipping) for the group
    nref: int = 0                            # of which to the reference catalog
    matched_input_idx: np.ndarray = field(default_factory=lambda: np.empty(0, np.intp))
    matched_ref_idx: np.ndarray = field(default_factory=lambda: np.empty(0, np.intp))
    matched_ref_image: np.ndarray = field(default_factory=lambda: np.empty(0, np.intp))  # -1: reference catalog
    nclipped: int = 0                        # links of the image dropped by sigma clipping
    plane_center: tuple[float, float] = (0.0, 0.0)
    center: tuple[float, float] = (0.0, 0.0)  # group centre in the plane (arcsec)
    reference: dict | None = None            # absolute step: the reference catalog used (source, query, sha256)

    @property
    def ok(self) -> bool:
        """True for "SUCCESS" and "REFERENCE"."""
        return not self.status.startswith("FAILED")

    def fit_info(self) -> dict:
        """The stcal/tweakwcs ``fit_info`` dictionary (same keys where they exist)."""
        info = {"status": self.status, "fitgeom": self.fitgeometry, "matrix": self.matrix,
                "shift": self.shift, "center": self.center, "rot": (self.rotation, self.rotation),
                "<rot>": self.rotation, "proper_rot": self.rotation, "scale": (self.scale, self.scale),
                "<scale>": self.scale, "skew": self.skew, "rmse": self.rmse, "mae": self.mae,
                "nmatches": self.nmatches, "matched_input_idx": self.matched_input_idx,
                "matched_ref_idx": self.matched_ref_idx, "matched_ref_image": self.matched_ref_image,
                "nclipped": self.nclipped, "message": self.message,
                "fit_result": self}
        return info

    def to_dict(self) -> dict:
        """JSON-friendly dictionary (arrays as lists)."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, np.ndarray):
                out[k] = v.tolist()
        return out
