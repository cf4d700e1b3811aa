"""Result serializers: VOTable (TABLEDATA, for SCS and the API), the GSSS CSV, JSON, ECSV/CSV.

Every writer renders its rows with :func:`astrodb.service.cells.lines` (floats in shortest
round-trip form, full precision; large results in C++, chunk by chunk against the request's
deadline); ECSV takes its YAML header from astropy, written for the table without its rows.
Missing values: empty VOTable cells and CSV fields, JSON null.
"""
from __future__ import annotations

import io
import json
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from . import cells
from ..query.columns import SourceColumns

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


def votable(rows: SourceColumns, *, description: str, epoch: float | None, truncated: bool,
            infos: dict[str, str] | None = None, scs: bool = False, deadline: float | None = None) -> bytes:
    """A VOTable document with one RESOURCE holding one TABLE (TABLEDATA).

    Parameters
    ----------
    rows : SourceColumns
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
    deadline : float, optional
        ``time.monotonic()`` value past which rendering stops (:class:`cells.DeadlineExceeded`).

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
    out.append("<DATA><TABLEDATA>\n")
    body = cells.lines([rows.data[name] for name in rows.names], cells.VOTABLE, deadline=deadline)
    tail = "</TABLEDATA></DATA>\n</TABLE>\n</RESOURCE>\n</VOTABLE>\n"
    return b"".join(("".join(out).encode(), body, tail.encode()))


def votable_error(message: str) -> bytes:
    """The SCS error document (VOTable 1.1, as the answers): ``INFO name="Error"`` under VOTABLE
    (preferred by SCS 1.03, with its erratum 3), and a DALI ``QUERY_STATUS=ERROR`` in the RESOURCE."""
    m = quoteattr(message)
    return (f'{_VOT_HEAD["1.1"]}<INFO ID="Error" name="Error" value={m}/>\n'
            f'<RESOURCE type="results">\n<INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n'
            f"</RESOURCE>\n</VOTABLE>\n").encode()


def gsss_csv(columns: list[tuple[str, np.ndarray]], *, deadline: float | None = None) -> bytes:
    """The GSSS CSV body: a first line saying how many sources follow (a '#' comment, which
    clients that drop the first line and clients that skip comments both accept), the header,
    then the rows, CRLF line ends.

    Parameters
    ----------
    columns : list of (str, numpy.ndarray)
        Each output column's name and values.
    deadline : float, optional
        ``time.monotonic()`` value past which rendering stops (:class:`cells.DeadlineExceeded`).
    """
    n = len(columns[0][1]) if columns else 0
    head = f"#Number of sources: {n}\r\n" + ",".join(name for name, _ in columns) + "\r\n"
    return head.encode() + cells.lines([values for _, values in columns], cells.GSSS, deadline=deadline)


def gsss_error(message: str) -> bytes:
    """A GSSS error body. stcal does not look at the status: the first line (dropped or skipped
    by clients) carries the message, and the one-column table named ``error`` that follows makes
    a client looking for ``ra``/``pmra`` fail loudly instead of finding an empty catalog."""
    text = message.replace("\r", " ").replace("\n", " ")
    quoted = '"' + text.replace('"', '""') + '"'
    return f"#ERROR: {text}\r\nerror\r\n{quoted}\r\n".encode()


def json_result(rows: SourceColumns, meta: dict, *, deadline: float | None = None) -> bytes:
    """``{"meta": ..., "columns": [{name, unit, description}], "rows": [[...], ...]}``; null for missing.

    ``deadline``: ``time.monotonic()`` value past which rendering stops (:class:`cells.DeadlineExceeded`).
    """
    cols = [{"name": name, "unit": rows.unit(name), "description": rows.description(name) or None}
            for name in rows.names]
    head = json.dumps({"meta": meta, "columns": cols}, separators=(",", ":"), allow_nan=False)
    body = cells.lines([rows.data[name] for name in rows.names], cells.JSON, deadline=deadline)
    # Each rendered row ends with a comma: the last one's goes.
    return b"".join((head[:-1].encode(), b',"rows":[', body[:-1], b"]}"))


def text_table(rows: SourceColumns, fmt: str, meta: dict, *, deadline: float | None = None) -> bytes:
    """ECSV (units, descriptions and ``meta`` kept; comma-delimited) or plain CSV.

    The ECSV header is astropy's, written for the table without its rows (it does not depend on
    them); the rows are rendered as CSV lines, as astropy would write them with ``delimiter=','``.

    Parameters
    ----------
    rows : SourceColumns
        The columns.
    fmt : {"ecsv", "csv"}
        The format.
    meta : dict
        The ECSV header's ``meta`` (None values are left out).
    deadline : float, optional
        ``time.monotonic()`` value past which rendering stops (:class:`cells.DeadlineExceeded`).
    """
    if fmt == "ecsv":
        empty = rows.head(0).to_table({k: v for k, v in meta.items() if v is not None})
        buf = io.StringIO()
        empty.write(buf, format="ascii.ecsv", delimiter=",")
        head = buf.getvalue()
    else:
        head = ",".join(cells.CSV.escape(name) for name in rows.names) + "\n"
    return head.encode() + cells.lines([rows.data[name] for name in rows.names], cells.CSV, deadline=deadline)
