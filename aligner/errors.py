"""The aligner's exceptions and warnings.

Unlike stcal's ``TweakregError`` (a ``BaseException``, which ``except Exception`` does not
catch), every error here derives from ``Exception``; bad parameters are also ``ValueError``.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class AlignerError(Exception):
    """Base class of the aligner's errors."""


class ParameterError(AlignerError, ValueError):
    """A parameter is out of range or inconsistent (e.g. separation <= sqrt(2) * tolerance)."""


class CatalogError(AlignerError, ValueError):
    """A source or reference catalog cannot be used (missing columns, bad values, unreadable)."""


class AlignmentError(AlignerError):
    """No image (group) could be aligned; ``results`` holds each image's :class:`FitResult`."""

    def __init__(self, message: str, results: list | None = None) -> None:
        super().__init__(message)
        self.results = list(results or [])


class AlignmentWarning(UserWarning):
    """Some images could not be aligned (their WCS is unchanged); the others were."""


def warn(message: str) -> None:
    """Warn with an :class:`AlignmentWarning` attributed to the first caller outside the aligner."""
    # The public functions run inside context-manager decorators: their frames are skipped too.
    skipped = (_PACKAGE, contextlib.__file__)
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(skipped):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, AlignmentWarning, stacklevel=level)
