"""The ending both steps share: per-image results, corrected WCSs, failures reported, the record.

:func:`finish` turns a step's fit (groups, links, fitted corrections, failure statuses) into one
:class:`~aligner.results.FitResult` per image, corrects the WCS of every image of the groups
that succeeded (handing each to the provenance recorder as soon as it exists), stores the
results on the correctors and raises or warns about the images not aligned. :func:`recorder`
and :func:`recorded` keep a run's provenance record around a step, failures included.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .errors import AlignmentError, warn
from .fit import REFERENCE, Links, decompose
from .images import Group
from .plane import TangentPlane
from .results import REFERENCE as STATUS_REFERENCE, SUCCESS, FitResult

if TYPE_CHECKING:
    from .provenance import Recorder


class _LinkIndex:
    """Each group's links on either side, found once by sorting (not a pass over every link per
    group and image), and the image and catalog row of a link's partner."""

    def __init__(self, groups: list[Group], links: Links) -> None:
        self.groups, self.links = groups, links
        self._sides = []
        for gcol in (links.ga, links.gb):
            order = np.argsort(gcol, kind="stable")
            self._sides.append((order, gcol[order]))
        self._image_index = {g.index: np.array([im.index for im in g.images], np.intp) for g in groups}

    def of(self, side: int, gv: int) -> np.ndarray:
        """Rows of the links with group ``gv`` on ``side`` (0: ga, 1: gb), in link order."""
        order, sorted_g = self._sides[side]
        lo, hi = np.searchsorted(sorted_g, [gv, gv + 1])
        return np.sort(order[lo:hi])

    def partners(self, sel: np.ndarray, other_g: np.ndarray, other_i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the links ``sel``, the partner's catalog row and image index (-1: the reference)."""
        og, oi = other_g[sel], other_i[sel]
        rows = np.full(len(og), -1, np.intp)
        imgs = np.full(len(og), -1, np.intp)
        ref = og == REFERENCE
        rows[ref] = oi[ref]
        for gv in np.unique(og[~ref]):
            m = og == gv
            other = self.groups[gv]
            rows[m] = other.row[oi[m]]
            imgs[m] = self._image_index[gv][other.image[oi[m]]]
        return rows, imgs


def _add_matches(r: FitResult, g: Group, k: int, index: _LinkIndex, la: np.ndarray, lb: np.ndarray,
                 img_a: np.ndarray, img_b: np.ndarray, used: np.ndarray, norm: np.ndarray) -> None:
    """Fill ``r`` (image ``k`` of group ``g``) with its links' matches and residuals: those of
    ``la``/``lb`` (the group's links on either side) that come from the image."""
    links = index.links
    all_a, all_b = la[img_a == k], lb[img_b == k]
    mine_a, mine_b = all_a[used[all_a]], all_b[used[all_b]]
    both = np.concatenate([mine_a, mine_b])
    r.nmatches = len(both)
    r.nref = int(np.count_nonzero(links.gb[mine_a] == REFERENCE))
    r.rmse = float(np.sqrt(np.mean(norm[both] ** 2))) if len(both) else float("nan")
    r.mae = float(np.mean(norm[both])) if len(both) else float("nan")
    r.matched_input_idx = np.concatenate([g.row[links.ia[mine_a]], g.row[links.ib[mine_b]]])
    (rows_a, imgs_a), (rows_b, imgs_b) = index.partners(mine_a, links.gb, links.ib), \
        index.partners(mine_b, links.ga, links.ia)
    r.matched_ref_idx = np.concatenate([rows_a, rows_b])
    r.matched_ref_image = np.concatenate([imgs_a, imgs_b])
    r.nclipped = len(all_a) + len(all_b) - r.nmatches


def group_results(groups: list[Group], links: Links, fitted, status: dict[int, str], fitgeometry: str,
                  step: str, plane: TangentPlane) -> dict[int, list[FitResult]]:
    """One :class:`FitResult` per image of every group, by group index.

    Parameters
    ----------
    groups, links, fitted
        The step's groups, the links of its last fit and that fit (None: no fit).
    status : dict
        Failure (or "REFERENCE") status by group index; the others succeeded.
    fitgeometry, step, plane
        Recorded in every result.
    """
    out: dict[int, list[FitResult]] = {}
    norm = np.zeros(0) if fitted is None else np.hypot(fitted.residuals[:, 0], fitted.residuals[:, 1])
    used = np.zeros(len(links), bool) if fitted is None else fitted.used
    index = _LinkIndex(groups, links)
    for g in groups:
        st = status.get(g.index, SUCCESS)
        results = []
        t = fitted.transforms.get(g.index) if fitted is not None and st == SUCCESS else None
        la, lb = index.of(0, g.index), index.of(1, g.index)
        img_a = g.image[links.ia[la]] if len(la) else np.zeros(0, np.intp)
        img_b = g.image[links.ib[lb]] if len(lb) else np.zeros(0, np.intp)
        for k, im in enumerate(g.images):
            r = FitResult(name=im.name, group_id=im.group_id, status=st, fitgeometry=fitgeometry, step=step,
                          plane_center=(plane.ra0, plane.dec0), center=tuple(g.center.tolist()))
            if st.startswith("FAILED"):
                r.message = st[len("FAILED: "):]
            if t is not None or (st == STATUS_REFERENCE and fitted is not None):
                _add_matches(r, g, k, index, la, lb, img_a, img_b, used, norm)
            if t is not None:
                r.matrix, r.shift = t.matrix.copy(), t.shift.copy()
                d = decompose(t.matrix)
                r.rotation, r.scale, r.skew = d["rotation"], d["geomean_scale"], d["skew"]
            results.append(r)
        out[g.index] = results
    return out


def apply(groups: list[Group], results: dict[int, list[FitResult]], plane: TangentPlane) -> list[FitResult]:
    """Correct the WCS of every image of the successful groups; store results on each corrector.

    Returns the results in the images' order."""
    flat = []
    ref_tp = plane.corrector()
    for g in groups:
        for im, r in zip(g.images, results[g.index]):
            if r.status == SUCCESS:
                im.corrector.set_correction(matrix=r.matrix, shift=r.shift, ref_tpwcs=ref_tp,
                                            meta={"fit_info": r.fit_info(), "fit_result": r})
            else:
                im.corrector.meta["fit_info"] = r.fit_info()
                im.corrector.meta["fit_result"] = r
            flat.append((im.index, r))
    return [r for _, r in sorted(flat, key=lambda p: p[0])]


def report_failures(results: list[FitResult], step: str) -> None:
    """Raise :class:`AlignmentError` when no image was aligned; warn when some were not."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    lines = "; ".join(f"{r.name}: {r.message}" for r in failed[:10])
    if len(failed) == len(results) or all(r.status != SUCCESS for r in results):
        raise AlignmentError(f"{step} alignment failed for every image, WCSs unchanged: {lines}", results)
    warn(f"{step} alignment: {len(failed)} of {len(results)} image(s) not aligned (WCS unchanged): {lines}")


def finish(groups: list[Group], links: Links, fitted, status: dict[int, str], fitgeometry: str, step: str,
           plane: TangentPlane, reference: dict | None = None) -> list[FitResult]:
    """The step's ending: results per image (with ``reference``, the reference catalog used, on
    each), the WCSs of the successful groups corrected, failures raised or warned about.

    Returns
    -------
    list of FitResult
        One per image, in the images' order.

    Raises
    ------
    AlignmentError
        No image could be aligned.
    """
    res = group_results(groups, links, fitted, status, fitgeometry, step, plane)
    if reference is not None:
        for rs in res.values():
            for r in rs:
                r.reference = dict(reference)
    results = apply(groups, res, plane)
    report_failures(results, step)
    return results


# --- provenance ---------------------------------------------------------------------------------

def recorder(step: str, arguments: dict, correctors: Sequence, store, provenance: bool, capture: bool = True
             ) -> Recorder | None:
    """A provenance recorder when a store is given (and recording not switched off); with
    ``capture=False`` the caller has it capture the input WCSs before it changes them."""
    if store is None or not provenance:
        return None
    from .provenance import Recorder

    params = {k: v for k, v in arguments.items() if k not in ("correctors", "store", "provenance")}
    return Recorder(step, params, correctors, store, capture=capture,
                    sink=provenance if callable(provenance) else None)


def record(rec, error: BaseException | None = None) -> None:
    """Write the run's record (with ``error``, the failure it ended with)."""
    if rec is None:
        return
    try:
        rec.write(error)
    except Exception as exc:  # noqa: BLE001
        if error is None:
            raise
        # The fit's own error matters more; say the record failed too.
        error.add_note(f"(its provenance record could not be written: {exc})")


@contextlib.contextmanager
def recorded(rec) -> Iterator[None]:
    """Write ``rec``'s record when the block ends, with the error it raises if any."""
    try:
        yield
    except Exception as exc:
        record(rec, exc)
        raise
    record(rec)
