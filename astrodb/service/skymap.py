"""A catalog's sky coverage as a PNG, drawn from its stored HEALPix density map (never its rows).

All-sky catalogs are drawn on a Mollweide projection of the density (rows per square degree,
logarithmic), a catalog that covers little of the sky (a region load, a field) on a zoomed
RA/Dec frame around its pixels. The pixels are painted as a raster: each cell of a regular
grid takes the density of the HEALPix pixel it falls in (astropy-healpix), so the cost depends
on the image size, not on the catalog.
"""
from __future__ import annotations

import io

import numpy as np
from astropy import units as u
from astropy_healpix import HEALPix

#: Finest density order drawn: 12 * 4**6 = 49,152 pixels of 0.84 deg^2 for the whole sky.
ALL_SKY_ORDER = 6
#: Below this fraction of the sky, the map zooms on the catalog's pixels.
ZOOM_BELOW = 0.05


def sky_png(density, *, title: str, width_in: float = 7.0, dpi: int = 80) -> bytes:
    """The PNG of a catalog's coverage.

    Parameters
    ----------
    density : astropy.table.Table
        :meth:`astrodb.Store.density` at its own order (``pixel``, ``count``, ``meta['healpix_order']``).
    title : str
        Shown above the map.
    width_in, dpi : float, int
        Figure width (inches) and resolution.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    order = int(density.meta["healpix_order"])
    pixels = np.asarray(density["pixel"], np.int64)
    counts = np.asarray(density["count"], float)
    hp = HEALPix(nside=2 ** order, order="nested")
    fraction = len(pixels) / hp.npix
    zoom = 0 < fraction < ZOOM_BELOW
    # All sky: coarse enough for ~10 rows a pixel (a sparse catalog is noise at fine orders), and
    # no finer than the raster shows.
    want = int(np.clip(np.floor(np.log(max(counts.sum(), 1.0) / 120.0) / np.log(4.0)), 2, ALL_SKY_ORDER))
    if not zoom and order > want:
        shift = 2 * (order - want)
        pixels, first = np.unique(pixels >> shift, return_index=True)
        counts = np.add.reduceat(counts, first) if len(counts) else counts
        order, hp = want, HEALPix(nside=2 ** want, order="nested")
    per_deg2 = counts / hp.pixel_area.to_value(u.deg ** 2)
    grid = np.full(hp.npix, np.nan)
    grid[pixels] = per_deg2

    fig = Figure(figsize=(width_in, width_in * (0.62 if not zoom else 0.8)))
    FigureCanvasAgg(fig)
    norm = LogNorm(vmin=max(np.nanmin(per_deg2), 1e-3), vmax=max(np.nanmax(per_deg2), 1e-2)) if len(pixels) else None
    if zoom:
        ax = fig.add_subplot(1, 1, 1)
        lon, lat = hp.healpix_to_lonlat(pixels)
        ra, dec = lon.to_value(u.deg), lat.to_value(u.deg)
        # Centre RA on the pixels' mean direction, so a region across RA 0 stays in one piece.
        ra0 = np.degrees(np.arctan2(np.mean(np.sin(np.radians(ra))), np.mean(np.cos(np.radians(ra))))) % 360
        wrapped = (ra - ra0 + 180.0) % 360.0 - 180.0
        pad = 2.0 * np.degrees(hp.pixel_resolution.to_value(u.rad))
        x0, x1 = wrapped.min() - pad, wrapped.max() + pad
        y0, y1 = max(dec.min() - pad, -90.0), min(dec.max() + pad, 90.0)
        xs, ys = np.linspace(x0, x1, 400), np.linspace(y0, y1, 300)
        gx, gy = np.meshgrid(xs, ys)
        values = grid[hp.lonlat_to_healpix(((gx + ra0) % 360) * u.deg, gy * u.deg)]
        mesh = ax.pcolormesh(xs, ys, values, norm=norm, cmap="viridis", shading="auto")
        ax.set_xlim(x1, x0)  # RA grows to the east (left)
        ax.set_xlabel(f"RA − {ra0:.2f}° (deg, east to the left)")
        ax.set_ylabel("Dec (deg)")
        ax.set_aspect(1.0 / max(np.cos(np.radians(np.clip((y0 + y1) / 2, -85, 85))), 0.05))
    else:
        ax = fig.add_subplot(1, 1, 1, projection="mollweide")
        lon = np.linspace(-np.pi, np.pi, 721)
        lat = np.linspace(-np.pi / 2, np.pi / 2, 361)
        glon, glat = np.meshgrid(lon, lat)
        # RA grows to the left on the sky: the plot's longitude is -RA.
        values = grid[hp.lonlat_to_healpix((-glon % (2 * np.pi)) * u.rad, glat * u.rad)]
        mesh = ax.pcolormesh(lon, lat, values, norm=norm, cmap="viridis", shading="auto", rasterized=True)
        ax.set_xticklabels([])
        ax.tick_params(labelsize=7)
        ax.set_xlabel("RA 0° at the centre, growing to the left (east); grid every 30°", fontsize=8)
        ax.grid(True, alpha=0.3)
    if len(pixels):
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        bar = fig.colorbar(mesh, ax=ax, orientation="horizontal", fraction=0.05, pad=0.12, label="rows per deg²")
        bar.ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        bar.ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        bar.ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.text(0.5, 0.5, "no rows", transform=ax.transAxes, ha="center", va="center")
    ax.set_title(title, fontsize=10)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
