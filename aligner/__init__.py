"""aligner: tweakreg-style relative and absolute alignment of image WCSs (FITS WCS and gwcs).

A drop-in for ``stcal.tweakreg`` users (same functions, parameters and defaults), with one
joint fit of every image against the reference and its overlapping images, arcsec units for
every WCS kind, and Gaia reference catalogs from the local ``astrodb`` store at the
observation epoch.
"""
from .align import absolute_align, relative_align
from .catalogs import filter_catalog_by_bounding_box
from .correctors import make_corrector, write_wcs
from .epochs import EPOCH_SPAN_YR, epoch_runs
from .errors import AlignerError, AlignmentError, AlignmentWarning, CatalogError, ParameterError
from .parameters import AbsoluteParameters, RelativeParameters
from .results import FitResult

__all__ = ["relative_align", "absolute_align", "filter_catalog_by_bounding_box", "FitResult",
           "AlignerError", "AlignmentError", "AlignmentWarning", "CatalogError", "ParameterError",
           "make_corrector", "write_wcs", "RelativeParameters", "AbsoluteParameters", "epoch_runs",
           "EPOCH_SPAN_YR"]
