"""Result serializers: VOTable (TABLEDATA, for SCS and the API), the GSSS CSV, JSON, ECSV/CSV.

The VOTable, GSSS CSV and JSON writers format straight from the columns (a few microseconds a
row); ECSV and plain CSV go through astropy. Missing values: empty VOTable cells and CSV
fields, JSON null. Floats are written with Python's shortest round-trip repr (full precision).
"""
from __future__ import annotations

import io
import json
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from .rows import Rows

# name -> (VOTable datatype, UCD1+, VOUnit).
VOTABLE_FIELDS: dict[str, tuple[str, str, str | None]] = {
    "source_id": ("char", "meta.id;meta.main", None),
    "ra": ("double", "pos.eq.ra;meta.main", "deg"),
    "dec": ("double", "pos.eq.dec;meta.main", "deg"),
    "distance": ("double", "pos.angDistance", "deg"),
    "ra_error": ("double", "stat.error;pos.eq.ra", "mas"),
    "dec_error": ("double", "stat.error;pos.eq.dec", "mas"),
    "pmra": ("double", "pos.pm;pos.eq.ra", "mas/yr"),
    "pmra_error": ("double", "stat.error;pos.pm;pos.eq.ra", "mas/yr"),
    "pmdec": ("double", "pos.pm;pos.eq.dec", "mas/yr"),
    "pmdec_error": ("double", "stat.error;pos.pm;pos.eq.dec", "mas/yr"),
    "parallax": ("double", "pos.parallax.trig", "mas"),
    "parallax_error": ("double", "stat.error;pos.parallax.trig", "mas"),
    "radial_velocity": ("double", "spect.dopplerVeloc.opt", "km/s"),
    "radial_velocity_error": ("double", "stat.error;spect.dopplerVeloc.opt", "km/s"),
    "ref_epoch": ("double", "meta.ref;time.epoch", "yr"),
    "mag": ("double", "phot.mag", "mag"),
    "weight": ("double", "stat.weight", None),
    "ra_epoch_error": ("double", "stat.error;pos.eq.ra", "mas"),
    "dec_epoch_error": ("double", "stat.error;pos.eq.dec", "mas"),
    "ra_ref": ("double", "pos.eq.ra", "deg"),
    "dec_ref": ("double", "pos.eq.dec", "deg"),
    "propagated": ("boolean", "meta.code", None),
}

# SCS 1.03 requires the UCD1 words ID_MAIN (a char column), POS_EQ_RA_MAIN and POS_EQ_DEC_MAIN
# (doubles). VOTable 1.2 and later require UCD1+, so SCS answers are VOTable 1.1 (which
# allows UCD1; astropy's strict parse and pyvo accept it, TOPCAT reads any version); the other tables are
# VOTable 1.3 with the UCD1+ equivalents.
SCS_UCD1 = {"source_id": "ID_MAIN", "ra": "POS_EQ_RA_MAIN", "dec": "POS_EQ_DEC_MAIN"}

VOTABLE_MEDIA_TYPE = "text/xml;content=x-votable"
_XML = '<?xml version="1.0" encoding="UTF-8"?>\n'
_VOT_HEAD = {"1.1": _XML + '<VOTABLE version="1.1" xmlns="http://www.ivoa.net/xml/VOTable/v1.1">\n',
             "1.3": _XML + '<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'}


def _strings(values) -> list[str]:
    """Column values as text: shortest round-trip floats, '' for missing (NaN), T/F for booleans."""
    data = np.asarray(values)
    kind = data.dtype.kind
    values = data.tolist()
    if kind == "f":
        return ["" if v != v else repr(v) for v in values]
    if kind == "b":
        return ["T" if v else "F" for v in values]
    return [str(v) for v in values]


def votable(rows: Rows, *, description: str, epoch: float | None, truncated: bool,
            infos: dict[str, str] | None = None, scs: bool = False) -> bytes:
    """A VOTable document with one RESOURCE holding one TABLE (TABLEDATA).

    Parameters
    ----------
    rows : Rows
        The columns and their metadata.
    description : str
        The RESOURCE's description.
    epoch : float or None
        Julian year of the positions (the COOSYS epoch), None when each is at its catalog's.
    truncated : bool
        Whether the row limit cut the result: ``QUERY_STATUS`` (before the table) is then
        OVERFLOW, else OK (DALI).
    infos : dict, optional
        More ``INFO`` name/value pairs of the RESOURCE.
    scs : bool
        A Simple Cone Search 1.03 answer: VOTable 1.1 with the UCD1 words SCS requires for the
        id and position; otherwise VOTable 1.3 with UCD1+.

    Returns
    -------
    bytes
        The UTF-8 document.
    """
    ep = "" if epoch is None else f' epoch="J{epoch:.6g}"'
    status = ('<INFO name="QUERY_STATUS" value="OVERFLOW">row limit reached: the nearest rows are returned, '
              'the result is truncated</INFO>\n' if truncated else '<INFO name="QUERY_STATUS" value="OK"/>\n')
    out = [_VOT_HEAD["1.1" if scs else "1.3"], '<RESOURCE type="results">\n',
           f"<DESCRIPTION>{escape(description)}</DESCRIPTION>\n", status]
    for k, v in (infos or {}).items():
        out.append(f"<INFO name={quoteattr(k)} value={quoteattr(str(v))}/>\n")
    out.append(f'<COOSYS ID="icrs" system="ICRS"{ep}/>\n<TABLE name="results">\n')
    cols = []
    for name in rows.names:
        datatype, ucd, unit = VOTABLE_FIELDS.get(name, ("double", "", None))
        if scs:
            ucd = SCS_UCD1.get(name, ucd)
        attrs = f' name="{name}" datatype="{datatype}"'
        if datatype == "char":
            attrs += ' arraysize="*"'
        if ucd:
            attrs += f' ucd="{ucd}"'
        if unit:
            attrs += f' unit="{unit}"'
        if name in ("ra", "dec"):
            attrs += ' ref="icrs"'
        desc = rows.description(name)
        out.append(f"<FIELD{attrs}><DESCRIPTION>{escape(desc)}</DESCRIPTION></FIELD>\n" if desc
                   else f"<FIELD{attrs}/>\n")
        cols.append([f"<TD>{s}</TD>" for s in _strings(rows.data[name])])
    out.append("<DATA><TABLEDATA>\n")
    if cols:
        out.extend(f"<TR>{''.join(row)}</TR>\n" for row in zip(*cols))
    out.append("</TABLEDATA></DATA>\n</TABLE>\n</RESOURCE>\n</VOTABLE>\n")
    return "".join(out).encode()


def votable_error(message: str) -> bytes:
    """The SCS error document (VOTable 1.1, as the answers): ``INFO name="Error"`` under VOTABLE
    (preferred by SCS 1.03, with its erratum 3), and a DALI ``QUERY_STATUS=ERROR`` in the RESOURCE."""
    m = quoteattr(message)
    return (f'{_VOT_HEAD["1.1"]}<INFO ID="Error" name="Error" value={m}/>\n'
            f'<RESOURCE type="results">\n<INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n'
            f"</RESOURCE>\n</VOTABLE>\n").encode()


def gsss_csv(columns: list[tuple[str, list[str]]]) -> bytes:
    """The GSSS CSV body: a first line saying how many sources follow (a '#' comment, which
    clients that drop the first line and clients that skip comments both accept), the header,
    then the rows, CRLF line ends."""
    n = len(columns[0][1]) if columns else 0
    lines = [f"#Number of sources: {n}", ",".join(name for name, _ in columns)]
    lines.extend(",".join(row) for row in zip(*(vals for _, vals in columns)))
    return ("\r\n".join(lines) + "\r\n").encode()


def gsss_error(message: str) -> bytes:
    """A GSSS error body. stcal does not look at the status: the first line (dropped or skipped
    by clients) carries the message, and the one-column table named ``error`` that follows makes
    a client looking for ``ra``/``pmra`` fail loudly instead of finding an empty catalog."""
    text = message.replace("\r", " ").replace("\n", " ")
    quoted = '"' + text.replace('"', '""') + '"'
    return f"#ERROR: {text}\r\nerror\r\n{quoted}\r\n".encode()


def json_result(rows: Rows, meta: dict) -> bytes:
    """``{"meta": ..., "columns": [{name, unit, description}], "rows": [[...], ...]}``; null for missing."""
    cols, data = [], []
    for name in rows.names:
        cols.append({"name": name, "unit": rows.unit(name), "description": rows.description(name) or None})
        values = rows.data[name]
        lst = values.tolist()
        if values.dtype.kind == "f":
            lst = [None if v != v else v for v in lst]
        data.append(lst)
    doc = {"meta": meta, "columns": cols, "rows": [list(r) for r in zip(*data)] if data else []}
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def astropy_text(rows: Rows, fmt: str, meta: dict) -> bytes:
    """ECSV (units, descriptions and ``meta`` kept) or plain CSV, through astropy."""
    t = rows.to_table({k: v for k, v in meta.items() if v is not None})
    buf = io.StringIO()
    t.write(buf, format="ascii.ecsv" if fmt == "ecsv" else "ascii.csv")
    return buf.getvalue().encode()
