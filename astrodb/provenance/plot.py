"""Residuals of a recorded run, recomputed from the record, and their plots.

For every matched pair the record holds (``prov_images.matches``: the image's catalog row, the
partner's row and the partner: -1 for the reference catalog, else an image index), the image
source is taken through the image's WCS after the run (the output WCS when it was aligned, else
the input, unchanged) and the partner through its own: the reference rows recorded for a file
or table reference, the same store query run again for a store reference (used only when its
rows' sha256 equals the recorded one: a catalog changed since cannot give the rows used), or
the partner image's source through that image's WCS after the run. The residual is partner
minus source, in mas east and north at the source, and in pixels through the WCS's local
Jacobian there.

Only the pairs the fit kept are recorded (clipped ones are not), so the rms of these residuals is
the recorded rmse (up to how exactly the corrected WCS realizes the fitted transform).
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table

from .arrays import npz_load
from .audit import requery_reference, run_record
from .plugins import NoAlignerError
from .corrections import resolve_wcs

_RAD2MAS = 180.0 / np.pi * 3.6e6


def _pix2sky(wcs, x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    if hasattr(wcs, "forward_transform"):
        ra, dec = wcs(x, y, with_bounding_box=False)
    else:
        ra, dec = wcs.all_pix2world(x, y, 0)
    return np.asarray(ra, float), np.asarray(dec, float)


def _unit(ra, dec):
    a, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], -1)


def _east_north(ra, dec):
    a, d = np.radians(ra), np.radians(dec)
    e = np.stack([-np.sin(a), np.cos(a), np.zeros_like(a)], -1)
    n = np.stack([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)], -1)
    return e, n


def _offsets_mas(ra0, dec0, ra1, dec1):
    """(east, north) mas of (ra1, dec1) from (ra0, dec0) in the tangent plane at (ra0, dec0)."""
    s, p = _unit(ra0, dec0), _unit(ra1, dec1)
    e, n = _east_north(ra0, dec0)
    z = np.sum(p * s, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(p * e, -1) / z * _RAD2MAS, np.sum(p * n, -1) / z * _RAD2MAS


def _extent(wcs, x, y):
    """((x0, x1), (y0, y1)) of the image: a gwcs's bounding box or a FITS WCS's pixel shape, else
    the sources' range."""
    try:
        if hasattr(wcs, "forward_transform") and wcs.bounding_box is not None:
            bb = wcs.bounding_box
            (x0, x1), (y0, y1) = bb.bounding_box(order="F") if hasattr(bb, "bounding_box") else bb
            return (float(x0), float(x1)), (float(y0), float(y1))
        shape = getattr(wcs, "pixel_shape", None)
        if shape is not None and shape[0]:
            return (-0.5, shape[0] - 0.5), (-0.5, shape[1] - 0.5)
    except Exception:  # noqa: BLE001 - an odd bounding box: fall back on the sources
        pass
    if len(x):
        return (float(np.min(x)), float(np.max(x))), (float(np.min(y)), float(np.max(y)))
    return (0.0, 1.0), (0.0, 1.0)


class _Image:
    """One image's record, decoded lazily: rows used, WCS after the run."""

    def __init__(self, store, row: dict) -> None:
        self.store, self.row = store, row
        data = npz_load(row["catalog_data"])
        self.rows = np.asarray(data.get("row", np.empty(0, np.intp)))
        self.x = np.asarray(data.get("x", np.empty(0)), float)
        self.y = np.asarray(data.get("y", np.empty(0)), float)
        self.matches = npz_load(row["matches"])
        self._wcs = None
        self.wcs_note = ""  # why the WCS after the run cannot be had (None then)
        self._order = np.argsort(self.rows, kind="stable")

    @property
    def wcs(self):
        if self._wcs is None and not self.wcs_note:
            blob = self.row["output_wcs"] if self.row["output_wcs"] is not None else self.row["input_wcs"]
            try:
                self._wcs = resolve_wcs(self.store, self.row["wcs_kind"], blob)
            except NoAlignerError as exc:  # an aligned gwcs recorded as a correction needs the aligner
                self.wcs_note = f"pairs not shown: {exc}"
        return self._wcs

    def positions(self, catalog_rows):
        """(x, y, found) of catalog rows among the rows used."""
        catalog_rows = np.asarray(catalog_rows, np.intp)
        if not len(self.rows):
            z = np.zeros(len(catalog_rows))
            return z, z, np.zeros(len(catalog_rows), bool)
        sorted_rows = self.rows[self._order]
        k = np.clip(np.searchsorted(sorted_rows, catalog_rows), 0, len(sorted_rows) - 1)
        found = sorted_rows[k] == catalog_rows
        pos = self._order[k]
        return self.x[pos], self.y[pos], found


def fit_residuals(store, run_id: str) -> list[dict]:
    """The residual of every recorded matched pair of one run, per image.

    Returns
    -------
    list of dict
        Per image (in image order): ``image``, ``index``, ``status``, ``rmse_mas`` (recorded),
        ``rms_mas`` (of the residuals recomputed here; NaN without pairs), ``note`` (why pairs are
        missing, if any) and ``table``: x, y (pixels), partner (-1: reference, else the image
        index), partner_row, d_east, d_north (mas, partner minus source), dx, dy (pixels).
    """
    return _residuals(store, run_id)[0]


def _residuals(store, run_id: str) -> tuple[list[dict], dict]:
    run, rows = run_record(store, run_id)
    images = [_Image(store, r) for r in rows]
    ref_ra = ref_dec = None
    ref_note = ""
    if run.get("ref_kind") in ("file", "table") and run.get("ref_data") is not None:
        ref = npz_load(run["ref_data"])
        ref_ra, ref_dec = np.asarray(ref["ra"], float), np.asarray(ref["dec"], float)
    elif run.get("ref_kind") == "store":
        try:
            again = requery_reference(store, run)
        except NoAlignerError as exc:  # the rest of the plot needs no aligner
            ref_note = f"reference pairs not shown: {exc}"
        else:
            if again is not None and again.checksum() == run.get("ref_sha256"):
                ref_ra, ref_dec = np.asarray(again.ra, float), np.asarray(again.dec, float)
            else:
                ref_note = f"reference pairs not shown: {run['ref_source']} no longer gives the rows used"
    elif run.get("ref_kind") not in (None, "none"):
        ref_note = "reference pairs not shown: the reference rows were not recorded"

    out = []
    for k, im in enumerate(images):
        r = im.row
        m = im.matches
        inp = np.asarray(m.get("input", np.empty(0)), np.intp)
        partner = np.asarray(m.get("partner", np.empty(0)), np.intp)
        pimg = np.asarray(m.get("partner_image", np.full(len(inp), -1)), np.intp)
        notes = []
        cols = {n: np.empty(0) for n in ("x", "y", "d_east", "d_north", "dx", "dy")}
        cols["partner"] = np.empty(0, np.intp)
        cols["partner_row"] = np.empty(0, np.intp)
        if len(inp) and im.wcs is None:
            notes.append(im.wcs_note)
        elif len(inp):
            x, y, found = im.positions(inp)
            pra = np.full(len(inp), np.nan)
            pdec = np.full(len(inp), np.nan)
            is_ref = pimg < 0
            if is_ref.any():
                if ref_ra is not None:
                    ok = is_ref & (partner >= 0) & (partner < len(ref_ra))
                    pra[ok], pdec[ok] = ref_ra[partner[ok]], ref_dec[partner[ok]]
                elif ref_note:
                    notes.append(ref_note)
            for j in np.unique(pimg[~is_ref]):
                sel = pimg == j
                if not (0 <= j < len(images)):
                    continue
                if images[j].wcs is None:
                    notes.append(images[j].wcs_note)
                    continue
                px, py, pf = images[j].positions(partner[sel])
                ra_j, dec_j = _pix2sky(images[j].wcs, px, py)
                ra_j[~pf] = np.nan
                pra[sel], pdec[sel] = ra_j, dec_j
            keep = found & np.isfinite(pra)
            if (~keep).any() and not notes:
                notes.append(f"{int((~keep).sum())} pair(s) not resolvable from the record")
            x, y, pra, pdec = x[keep], y[keep], pra[keep], pdec[keep]
            ra, dec = _pix2sky(im.wcs, x, y)
            de, dn = _offsets_mas(ra, dec, pra, pdec)
            # Local Jacobian (mas per pixel, east/north) by central differences.
            h = 0.5
            rx0, dx0 = _pix2sky(im.wcs, x - h, y)
            rx1, dx1 = _pix2sky(im.wcs, x + h, y)
            ry0, dy0 = _pix2sky(im.wcs, x, y - h)
            ry1, dy1 = _pix2sky(im.wcs, x, y + h)
            ex0, nx0 = _offsets_mas(ra, dec, rx0, dx0)
            ex1, nx1 = _offsets_mas(ra, dec, rx1, dx1)
            ey0, ny0 = _offsets_mas(ra, dec, ry0, dy0)
            ey1, ny1 = _offsets_mas(ra, dec, ry1, dy1)
            jex, jnx, jey, jny = (ex1 - ex0) / (2 * h), (nx1 - nx0) / (2 * h), (ey1 - ey0) / (2 * h), (ny1 - ny0) / (2 * h)
            det = jex * jny - jey * jnx
            with np.errstate(divide="ignore", invalid="ignore"):
                cols.update(x=x, y=y, d_east=de, d_north=dn, dx=(jny * de - jey * dn) / det,
                            dy=(-jnx * de + jex * dn) / det)
            cols["partner"], cols["partner_row"] = pimg[keep], partner[keep]
            cols["pixel_scale_mas"] = np.sqrt(np.abs(det))
        elif r["status"] not in ("REFERENCE",):
            notes.append("no matched pairs recorded")
        t = Table({n: cols.get(n, np.empty(0)) for n in ("x", "y", "partner", "partner_row", "d_east", "d_north",
                                                         "dx", "dy")})
        for n in ("d_east", "d_north"):
            t[n].unit = "mas"
        for n in ("x", "y", "dx", "dy"):
            t[n].unit = "pix"
        scale = float(np.nanmedian(cols["pixel_scale_mas"])) if len(cols.get("pixel_scale_mas", [])) else float("nan")
        rms = float(np.sqrt(np.mean(t["d_east"] ** 2 + t["d_north"] ** 2))) if len(t) else float("nan")
        out.append({"image": r["name"], "index": k, "status": r["status"],
                    "rmse_mas": float("nan") if r["rmse"] is None else r["rmse"] * 1000.0, "rms_mas": rms,
                    "pixel_scale_mas": scale, "note": "; ".join(notes), "table": t, "wcs": im.wcs})
    return out, run


def plot_run(store, run_id: str, path, *, dpi: int = 90) -> list[dict]:
    """Plot one run: per image, the residual vectors of the matched pairs on the image (arrows
    magnified, reference pairs and image-image pairs in two colours) and histograms of the
    residuals (east and north, mas).

    Parameters
    ----------
    store : astrodb.Store
    run_id : str
        The run's id or a unique prefix.
    path : str or path-like
        Output image file (the format from its extension: .png, .pdf, .svg).

    Returns
    -------
    list of dict
        Per image: image, status, pairs, rms_mas (recomputed), rmse_mas (recorded), note.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    res, run = _residuals(store, run_id)
    n = max(1, len(res))
    fig = Figure(figsize=(11.0, 4.0 * n + 0.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 2, squeeze=False, gridspec_kw={"width_ratios": [1.15, 1.0]})
    fig.suptitle(f"{run['step']} run {run['run_id']} ({run['status']}), "
                 f"{run['started_at']:%Y-%m-%d %H:%M:%S} UTC; reference: {run.get('ref_source') or 'none'}",
                 fontsize=10)
    summary = []
    for k, r in enumerate(res):
        ax, hx = axes[k]
        t = r["table"]
        (x0, x1), (y0, y1) = _extent(r["wcs"], t["x"], t["y"])
        ax.add_patch(_rect(x0, y0, x1 - x0, y1 - y0))
        ax.set_xlim(x0 - 0.03 * (x1 - x0), x1 + 0.03 * (x1 - x0))
        ax.set_ylim(y0 - 0.03 * (y1 - y0), y1 + 0.03 * (y1 - y0))
        ax.set_aspect("equal")
        ax.set_xlabel("x (pixel)")
        ax.set_ylabel("y (pixel)")
        title = f"{r['image']}: {r['status'][:60]}, {len(t)} pairs"
        if len(t):
            dpix = np.hypot(t["dx"], t["dy"])
            typical = float(np.nanpercentile(dpix, 90)) or 1e-6
            mag = 0.05 * max(x1 - x0, y1 - y0) / typical
            for sel, colour, label in ((t["partner"] < 0, "C0", "to the reference"),
                                       (t["partner"] >= 0, "C1", "to other images")):
                if np.any(sel):
                    q = ax.quiver(t["x"][sel], t["y"][sel], t["dx"][sel] * mag, t["dy"][sel] * mag, angles="xy",
                                  scale_units="xy", scale=1.0, color=colour, width=0.003, label=label)
            key_mas = _nice(r["rms_mas"] if np.isfinite(r["rms_mas"]) and r["rms_mas"] > 0 else 1.0)
            if np.isfinite(r["pixel_scale_mas"]) and r["pixel_scale_mas"] > 0:
                ax.quiverkey(q, 0.86, -0.14, key_mas / r["pixel_scale_mas"] * mag, f"{key_mas:g} mas",
                             labelpos="E", coordinates="axes", fontproperties={"size": 8})
            ax.legend(loc="lower left", fontsize=7)
            title += f" (arrows x{mag:.3g})"
            lim = float(np.nanpercentile(np.abs(np.concatenate([t["d_east"], t["d_north"]])), 99.5)) * 1.1 or 1.0
            bins = np.linspace(-lim, lim, 31)
            hx.hist(np.clip(t["d_east"], -lim, lim), bins=bins, histtype="step", label="east", color="C2")
            hx.hist(np.clip(t["d_north"], -lim, lim), bins=bins, histtype="step", label="north", color="C3")
            hx.legend(fontsize=8)
            hx.set_xlabel("residual, partner - source (mas)")
            hx.set_ylabel("pairs")
            shown = "of the pairs shown " if r["note"] else ""
            hx.set_title(f"rms {shown}{r['rms_mas']:.3g} mas (recorded rmse {r['rmse_mas']:.3g} mas)", fontsize=9)
        else:
            hx.text(0.5, 0.5, r["note"] or "no matched pairs", ha="center", va="center", transform=hx.transAxes,
                    fontsize=9, wrap=True)
            hx.set_axis_off()
        if r["note"] and len(t):
            ax.text(0.01, 0.99, r["note"], transform=ax.transAxes, va="top", fontsize=7, wrap=True)
        ax.set_title(title, fontsize=9)
        summary.append({"image": r["image"], "status": r["status"], "pairs": len(t), "rms_mas": r["rms_mas"],
                        "rmse_mas": r["rmse_mas"], "note": r["note"]})
    if not res:
        axes[0][0].text(0.5, 0.5, "no images recorded", ha="center", va="center")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (4.0 * n + 0.6)))
    fig.savefig(path, dpi=dpi)
    return summary


def _rect(x, y, w, h):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor="0.6", linewidth=0.8)


def _nice(value: float) -> float:
    """1, 2 or 5 times a power of ten, near ``value``."""
    p = 10.0 ** np.floor(np.log10(value))
    return float(min((1, 2, 5, 10), key=lambda m: abs(np.log(m * p / value))) * p)
