"""A recorded WCS as bytes: FITS header text, or an ASDF document for a gwcs.

A gwcs is written by asdf's public API (``asdf.AsdfFile(...).write_to``), so asdf validates it
against its schemas as it writes it, and read back without a second validation. The one change
to asdf's output: the list of extensions the document's ``history`` names is put in the order
of their URIs. asdf lists them in the iteration order of a set of objects hashed by their ids,
which differs between processes, and the audit's WCS lineage and the PROV export key on the
bytes' sha256, so the same WCS must give the same bytes in every process. Reordering whole
lines of the YAML keeps every byte offset after it (the binary blocks' index) valid.
"""
from __future__ import annotations

import io
import re

__all__ = ["wcs_kind", "serialize_wcs", "deserialize_wcs", "canonical_history"]

_HISTORY = b"\nhistory:\n  extensions:\n"
_ITEM = b"  - "
_ITEM_BODY = b"    "
_END_OF_TREE = b"\n...\n"
_FIELD = re.compile(rb"^    (extension_uri|extension_class): *(.*)$", re.M)


def wcs_kind(wcs) -> str:
    """``'gwcs'`` for a gwcs.WCS, ``'fits'`` for an astropy WCS.

    Parameters
    ----------
    wcs : gwcs.WCS or astropy.wcs.WCS

    Returns
    -------
    str
    """
    # On the class: a gwcs' forward_transform is a property that composes its whole pipeline.
    return "gwcs" if hasattr(type(wcs), "forward_transform") else "fits"


def serialize_wcs(wcs) -> bytes:
    """A WCS as the record's bytes.

    Parameters
    ----------
    wcs : gwcs.WCS or astropy.wcs.WCS

    Returns
    -------
    bytes
        A gwcs: an ASDF document whose tree is ``{"wcs": wcs}`` (validated by asdf as written;
        extensions in the history by URI, see :func:`canonical_history`). A FITS WCS: its header
        text (``to_header(relax=True)``: SIP included), lines separated by ``\\n``, with the image
        size as ``IMAGEW``/``IMAGEH`` when the WCS has one.
    """
    if wcs_kind(wcs) == "gwcs":
        import asdf

        buf = io.BytesIO()
        asdf.AsdfFile({"wcs": wcs}).write_to(buf)
        return canonical_history(buf.getvalue())
    hdr = wcs.to_header(relax=True)
    if wcs.pixel_shape is not None:
        hdr["IMAGEW"], hdr["IMAGEH"] = wcs.pixel_shape
    return hdr.tostring(sep="\n").encode()


def canonical_history(data: bytes) -> bytes:
    """ASDF bytes with the entries of ``history: extensions:`` sorted by extension URI, then class.

    Parameters
    ----------
    data : bytes
        An ASDF document as asdf writes it (block-style YAML tree, then any binary blocks).

    Returns
    -------
    bytes
        The same document, the same length, with the entries' lines in that order; ``data``
        itself when it has no such list or fewer than two entries.
    """
    start = data.find(_HISTORY)
    end_of_tree = data.find(_END_OF_TREE)
    if start < 0 or 0 <= end_of_tree < start:
        return data
    first = pos = start + len(_HISTORY)
    items = []
    while data.startswith(_ITEM, pos):
        end = data.find(b"\n", pos) + 1
        while end and data.startswith(_ITEM_BODY, end):  # the entry's own lines (and wrapped values)
            end = data.find(b"\n", end) + 1
        if not end:
            return data  # a list running to the end of the bytes: not asdf's layout
        items.append(data[pos:end])
        pos = end
    if len(items) < 2:
        return data
    items.sort(key=_entry_key)
    return data[:first] + b"".join(items) + data[pos:]


def _entry_key(item: bytes) -> tuple[bytes, bytes, bytes]:
    fields = dict(_FIELD.findall(item))
    return fields.get(b"extension_uri", b""), fields.get(b"extension_class", b""), item


def deserialize_wcs(kind: str, data: bytes, *, validate: bool = False):
    """Inverse of :func:`serialize_wcs`.

    Parameters
    ----------
    kind : {'gwcs', 'fits'}
        The record's ``wcs_kind``.
    data : bytes
        The record's ``input_wcs`` or ``output_wcs``.
    validate : bool
        For a gwcs: validate the ASDF tree against its schemas as it is read (asdf validated it
        when it was written; records written before validate-on-write were not).

    Returns
    -------
    gwcs.WCS or astropy.wcs.WCS

    Raises
    ------
    ValueError
        ``data`` is a correction of another recorded WCS, which
        :func:`astrodb.provenance.corrections.resolve_wcs` reads.
    """
    if bytes(data[:1]) == b"{":
        raise ValueError("these recorded WCS bytes are a correction of another recorded WCS: read them with "
                         "astrodb.provenance.resolve_wcs(store, kind, data)")
    if kind == "gwcs":
        import asdf

        with asdf.config_context() as config:
            config.validate_on_read = validate
            with asdf.open(io.BytesIO(data), lazy_load=False, memmap=False) as af:
                return af["wcs"]
    from astropy.io import fits
    from astropy.wcs import WCS

    hdr = fits.Header.fromstring(data.decode(), sep="\n")
    w = WCS(hdr)
    if "IMAGEW" in hdr:
        w.pixel_shape = (hdr["IMAGEW"], hdr["IMAGEH"])
    return w
