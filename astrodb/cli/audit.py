"""``astrodb audit``: the alignment provenance recorded in the store.

list (runs), fits (one row per image fit), show RUN_ID, history IMAGE, stale, verify RUN_ID,
verify --chain [--head 'SEQ DIGEST'], head, export RUN_ID, plot RUN_ID. Run ids may be unique
prefixes. See docs/provenance.md.
"""
from __future__ import annotations

import sys

import numpy as np

from ..errors import QueryError

TABLE_FORMATS = ("text", "json", "ecsv")


def add_parser(sub) -> None:
    """Add the ``audit`` command to the ``astrodb`` subcommands ``sub``."""
    audit = sub.add_parser("audit", help="alignment provenance: runs, fits, history, export, plots",
                           description="Read the append-only provenance the aligner records in the store: "
                           "runs and fits with their filters, one run, one image's WCS history, runs "
                           "whose reference catalog changed since, W3C PROV export, residual plots, "
                           "re-running a run to verify it. RUN_ID may be a unique prefix.")
    a = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    def filters(p, fit_status: bool = False):
        p.add_argument("--image", metavar="NAME", help="runs that fitted this image (meta['name'])")
        p.add_argument("--since", metavar="DATE", help="started at or after (ISO date or time; UTC unless given)")
        p.add_argument("--until", metavar="DATE", help="started before")
        p.add_argument("--catalog", metavar="NAME", help="reference: a store catalog (gaia_dr3 or GAIADR3) "
                       "or a reference file path as recorded")
        p.add_argument("--file", metavar="PATH_OR_SHA256",
                       help="used this file (reference, ingested into the reference catalog, or an image "
                       "catalog): a path, a file name, a sha256 or an 8+ digit prefix")
        p.add_argument("--status", metavar="S", help=("fit status: success, reference or failed" if fit_status
                                                      else "run status: success, partial or failed"))
        p.add_argument("--step", choices=("relative", "absolute"))

    def output(p, formats=TABLE_FORMATS):
        p.add_argument("--format", choices=formats, default="text")
        p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    lst = a.add_parser("list", help="recorded runs", description="Recorded alignment runs, oldest first.")
    filters(lst)
    output(lst)

    fits = a.add_parser("fits", help="recorded fits, one row per image",
                        description="One row per image fit of the matching runs, e.g. the images aligned "
                        "against a release: `astrodb audit fits --catalog gaia_dr3 --status success`.")
    fits.add_argument("--run", metavar="RUN_ID")
    filters(fits, fit_status=True)
    output(fits)

    show = a.add_parser("show", help="one run and its images", description="One run's record (parameters, "
                        "software, reference, and per image the fit), without the binary columns.")
    show.add_argument("run_id", metavar="RUN_ID")
    output(show, ("text", "json"))

    hist = a.add_parser("history", help="every fit of one image, WCS lineage",
                        description="Every run that fitted image NAME, oldest first, with the fit and which "
                        "earlier run left the WCS each run started from.")
    hist.add_argument("image", metavar="NAME")
    output(hist)

    stale = a.add_parser("stale", help="runs whose reference catalog changed since",
                         description="Runs whose store reference catalog has other files now than then "
                         "(dropped, files removed or ingested since), or whose reference file changed on disk.")
    stale.add_argument("--requery", action="store_true",
                       help="query each changed store reference again and say whether the rows used changed")
    output(stale)

    ver = a.add_parser("verify", help="re-run a recorded run and compare; or check the records' hash chain",
                       description="Re-run RUN_ID from its record and compare statuses and corrected WCSs. "
                       "Exit status 0 when it reproduces, 1 when it does not. With --chain instead: recompute "
                       "every link of the hash chain over the records and say, one line per problem, which run "
                       "was altered, deleted or not chained (exit status 1), else 'ok: N runs, head SEQ DIGEST'.")
    ver.add_argument("run_id", metavar="RUN_ID", nargs="?")
    ver.add_argument("--chain", action="store_true", help="check the hash chain over every record instead")
    ver.add_argument("--head", metavar="'SEQ DIGEST'",
                     help="with --chain: a head `astrodb audit head` printed earlier (or its digest) that the "
                     "chain must still hold")

    a.add_parser("head", help="the newest link of the records' hash chain",
                 description="Print the sequence number and digest of the newest link of the hash chain over "
                 "the records ('SEQ DIGEST'). Keep it where the store's writers cannot change it; "
                 "`astrodb audit verify --chain --head 'SEQ DIGEST'` later tells whether the chain still holds it.")

    exp = a.add_parser("export", help="W3C PROV of one run",
                       description="One run as W3C PROV: entities for the catalogs, files and WCSs, an "
                       "activity per fit, agents for the software and the user.")
    exp.add_argument("run_id", metavar="RUN_ID")
    exp.add_argument("--format", choices=("prov-json", "prov-n"), default="prov-json")
    exp.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    plot = a.add_parser("plot", help="residual plots of one run",
                        description="Per image: residual vectors of the matched pairs on the image and "
                        "histograms of the residuals.")
    plot.add_argument("run_id", metavar="RUN_ID")
    plot.add_argument("-o", "--output", metavar="FILE.png", required=True)


def _write(text: str, path: str | None) -> None:
    text = text if text.endswith("\n") else text + "\n"
    if path in (None, "-"):
        sys.stdout.write(text)
    else:
        try:
            with open(path, "w") as f:
                f.write(text)
        except OSError as exc:
            raise QueryError(f"cannot write {path}: {exc.strerror or exc}") from None


def _table_out(table, fmt: str, path: str | None, empty: str) -> None:
    from ..provenance.audit import dumps

    if fmt == "json":
        cols = table.colnames
        rows = []
        for row in table:
            rec = {}
            for c in cols:
                v = row[c]
                rec[c] = None if v is np.ma.masked else v
            rows.append(rec)
        _write(dumps({"meta": {k: v for k, v in table.meta.items() if isinstance(v, (str, int, float))},
                      "rows": rows}), path)
    elif fmt == "ecsv":
        import io

        buf = io.StringIO()
        table.write(buf, format="ascii.ecsv")
        _write(buf.getvalue(), path)
    elif len(table) == 0:
        _write(empty, path)
    else:
        _write("\n".join(table.pformat(max_lines=-1, max_width=-1)), path)


_LIST_TEXT = ("run_id", "step", "started_at", "user", "status", "n_images", "n_aligned", "ref_source", "db_role",
              "server_time", "message")
_FITS_TEXT = ("run_id", "step", "started_at", "image", "status", "shift_x", "shift_y", "rotation", "rmse_mas",
              "nmatches", "nref", "ref_source")
_HISTORY_TEXT = ("started_at", "run_id", "step", "status", "shift_x", "shift_y", "rotation", "rmse_mas", "nmatches",
                 "ref_source", "input_from_run")


def _brief(table, columns):
    """The text format's columns, short run ids and numbers."""
    t = table[[c for c in columns if c in table.colnames]]
    for c in ("run_id", "input_from_run"):
        if c in t.colnames:
            t[c] = [v[:8] for v in t[c]]
    for c, f in (("shift_x", ".4f"), ("shift_y", ".4f"), ("rotation", ".5f"), ("rmse_mas", ".2f")):
        if c in t.colnames:
            t[c].info.format = f
    if "message" in t.colnames:
        t["message"] = [m[:60] for m in t["message"]]
    if "status" in t.colnames:
        t["status"] = [s[:50] for s in t["status"]]
    return t


def _show_text(rec: dict) -> str:
    from ..provenance.audit import _iso, clock_note

    r = rec
    lines = [f"run {r['run_id']}: {r['step']} alignment, {r['status']}"
             + (f" ({r['message']})" if r.get("message") else ""),
             f"  started   {_iso(r['started_at'])}  finished {_iso(r['finished_at'])}",
             f"  user      {r.get('user_name')} on {r.get('host')}",
             "  recorded  " + (f"by database role {r['db_role']} (session {r.get('db_session_role')}) at server "
                                f"time {_iso(r.get('server_time'))}" if r.get("db_role") or r.get("server_time")
                                else "with no database role or server time (SQLite, or before migration 0009)"),
             f"  images    {r['n_images']} ({r['n_aligned']} aligned)"]
    note = clock_note(r)
    if note:
        lines.insert(4, f"  NOTE      {note}")
    link = r.get("chain")
    lines.append(f"  chain     link {link['seq']}, digest {link['digest']}" if link
                 else "  chain     not chained (see astrodb audit verify --chain)")
    if r.get("ref_kind") not in (None, "none"):
        lines.append(f"  reference {r['ref_source']} ({r['ref_kind']}): {r.get('ref_rows')} rows, "
                     f"sha256 {r.get('ref_sha256')}")
        q = r.get("ref_query") or {}
        if r["ref_kind"] == "store":
            lines.append(f"            cone ({q.get('ra'):.6f}, {q.get('dec'):.6f}) r={q.get('radius_deg'):.5f} deg, "
                         f"epoch {q.get('epoch')}, observer {q.get('observer_au')}")
        for path, sha in r.get("ref_files") or []:
            lines.append(f"            file {path}  sha256 {sha}")
    sw = r.get("software") or {}
    lines.append("  software  " + ", ".join(f"{k} {v}" for k, v in sw.items() if k != "platform"))
    params = r.get("parameters") or {}
    lines.append("  parameters " + ", ".join(f"{k}={v}" for k, v in params.items()))
    for im in r["images"]:
        lines.append(f"  [{im['image_index']}] {im['name']}: {im['status']}")
        if im.get("message") and not im["status"].startswith("FAILED"):
            lines.append(f"      {im['message']}")
        lines.append(f"      catalog {im['catalog_source']} sha256 {im['catalog_sha256']} "
                     f"({im['rows_used']} of {im['catalog_rows']} rows used), epoch {im.get('epoch')}")
        if im.get("rmse") is not None:
            sh = im.get("shift") or [float("nan")] * 2
            lines.append(f"      {im['fitgeometry']}: shift ({sh[0]:.4f}, {sh[1]:.4f}) arcsec, rotation "
                         f"{im['rotation']:.5f} deg, scale {im['scale']:.8f}, rmse {im['rmse'] * 1000:.2f} mas, "
                         f"{im['nmatches']} matches ({im['nref']} to the reference, {im['nclipped']} clipped)")
        lines.append(f"      WCS ({im['wcs_kind']}) in {im['input_wcs_sha256'][:16]}"
                     + (f"  out {im['output_wcs_sha256'][:16]}" if im["output_wcs_sha256"] else "  (unchanged)"))
    return "\n".join(lines)


def run(store, args) -> int:
    """Run ``astrodb audit ...``; returns the exit status (errors are raised as AstrodbError)."""
    from .. import provenance as prov

    cmd = args.audit_command
    if cmd in ("list", "fits"):
        kw = dict(image=args.image, since=args.since, until=args.until, catalog=args.catalog, status=args.status,
                  step=args.step, file=args.file)
        if cmd == "list":
            t = prov.list_runs(store, **kw)
            _table_out(t if args.format != "text" else _brief(t, _LIST_TEXT), args.format, args.output,
                       "no recorded runs match")
        else:
            t = prov.list_fits(store, run=args.run, **kw)
            _table_out(t if args.format != "text" else _brief(t, _FITS_TEXT), args.format, args.output,
                       "no recorded fits match")
    elif cmd == "show":
        rec = prov.show_run(store, args.run_id)
        from ..provenance.audit import dumps
        _write(dumps(rec) if args.format == "json" else _show_text(rec), args.output)
    elif cmd == "history":
        t = prov.image_history(store, args.image)
        _table_out(t if args.format != "text" else _brief(t, _HISTORY_TEXT), args.format, args.output, "")
    elif cmd == "stale":
        t = prov.stale_runs(store, requery=args.requery)
        if args.format == "text":
            t = _brief(t, ("run_id", "step", "started_at", "status", "reference", "changes")
                       + (("rows_changed",) if args.requery else ()))
        _table_out(t, args.format, args.output, "no run's reference has changed since")
    elif cmd == "head":
        seq, digest = prov.chain_head(store)
        print(f"{seq} {digest}")
    elif cmd == "verify" and args.chain:
        if args.run_id is not None:
            raise QueryError("audit verify: give RUN_ID (re-run it) or --chain (check the records), not both")
        report = prov.verify_chain(store, head=args.head)
        print(str(report))
        return 0 if report.ok else 1
    elif cmd == "verify":
        if args.run_id is None or args.head is not None:
            raise QueryError("audit verify: RUN_ID is needed (or --chain; --head goes with --chain)")
        report = prov.verify_run(store, args.run_id)  # NoAlignerError (one line) without an aligner
        print(str(report))
        return 0 if report.ok else 1
    elif cmd == "export":
        _need("prov", "export")
        _write(prov.export_prov(store, args.run_id, args.format), args.output)
    elif cmd == "plot":
        _need("matplotlib", "plot")
        try:
            summary = prov.plot_run(store, args.run_id, args.output)
        except (OSError, ValueError) as exc:
            if isinstance(exc, QueryError):
                raise
            raise QueryError(f"cannot write the plot {args.output}: {exc}") from None
        for s in summary:
            rms = "" if s["pairs"] == 0 else f", rms {s['rms_mas']:.3g} mas (recorded {s['rmse_mas']:.3g})"
            note = f"; {s['note']}" if s["note"] else ""
            print(f"{s['image']}: {s['status'][:60]}, {s['pairs']} pairs{rms}{note}")
        print(f"wrote {args.output}")
    return 0


def _need(module: str, action: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise QueryError(f"audit {action} needs the {module!r} package (pip install {module})")


__all__ = ["add_parser", "run"]
