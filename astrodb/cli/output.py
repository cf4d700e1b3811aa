"""Writing query results in the formats the CLI offers."""
from __future__ import annotations

import io
import json
import math
import sys

import numpy as np
from astropy.table import Table

FORMATS = ("ecsv", "csv", "votable", "json", "text")


def table_to_json(table: Table) -> str:
    """Serialize a result table as JSON: metadata, columns with units, rows (null for missing)."""
    cols = [{"name": n, "unit": None if table[n].unit is None else str(table[n].unit)} for n in table.colnames]
    data = []
    for n in table.colnames:
        c = table[n]
        vals = np.asarray(c.filled(np.nan) if hasattr(c, "filled") and c.dtype.kind == "f" else c).tolist()
        data.append([None if isinstance(v, float) and not math.isfinite(v) else v for v in vals])
    meta = {k: v for k, v in table.meta.items() if isinstance(v, (str, int, float, type(None)))}
    return json.dumps({"meta": meta, "columns": cols, "rows": [list(r) for r in zip(*data)]}, indent=1)


def write_table(table: Table, fmt: str, path: str | None) -> None:
    """Write ``table`` as ``fmt`` to ``path`` (stdout when None or '-')."""
    if fmt == "json":
        text = table_to_json(table)
    elif fmt == "text":
        text = "\n".join(table.pformat(max_lines=-1, max_width=-1))
    else:
        buf = io.BytesIO() if fmt == "votable" else io.StringIO()
        table.write(buf, format={"ecsv": "ascii.ecsv", "csv": "ascii.csv", "votable": "votable"}[fmt])
        text = buf.getvalue()
        if isinstance(text, bytes):
            text = text.decode()
    if path in (None, "-"):
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        with open(path, "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
