"""The record's bytes (astrodb.provenance.arrays, .wcs_bytes): exact arrays, the same gwcs bytes in
every process, asdf's own validation on write, and records written before this code still read.

data/before_*: bytes written by the recorder before the record's format moved to astrodb (asdf
6.0.0, gwcs 1.0.3): a JWST-style input gwcs (``make_scene(3, 300, "gwcs", seed=5)``, image 0),
the same scene's image 1 corrected by a relative run (a ``v2v3corr`` step), a FITS WCS
(``make_scene(2, 50, "fits", seed=5)``, image 0) and a catalog's rows.
"""
from __future__ import annotations

import io
import pickle
import re
import subprocess
import sys
import threading
import zipfile
from importlib import metadata
from pathlib import Path

import asdf
import asdf.schema
import numpy as np
import pytest

from tests.support.aligner_synth import make_correctors, make_scene
from astrodb.provenance import arrays
from astrodb.provenance.wcs_bytes import canonical_history, deserialize_wcs, serialize_wcs, wcs_kind

DATA = Path(__file__).parent / "data"
GRID = (np.array([10.0, 500.0, 1024.0, 1800.0, 2040.0]), np.array([20.0, 900.0, 1024.0, 1500.0, 2000.0]))


@pytest.fixture(scope="module")
def wcss():
    """An input gwcs, and a gwcs corrected by a relative run."""
    from aligner import relative_align

    scene = make_scene(3, 300, "gwcs", seed=3)
    correctors = make_correctors(scene)
    before = correctors[0].wcs
    relative_align(correctors)
    corrected = next(c.wcs for c in correctors if "v2v3corr" in c.wcs.available_frames)
    return before, corrected


def test_npz_record_is_exact_and_deflates_only_what_shrinks():
    rng = np.random.default_rng(3)
    given = {"row": np.arange(20_000), "x": rng.uniform(0, 2048, 20_000), "weight": np.ones(20_000),
             "flag": rng.random(50) < 0.5, "empty": np.zeros(0), "grid": rng.normal(size=(300, 40))}
    data = arrays.npz_bytes(**given)
    back = arrays.npz_load(data)
    assert set(back) == set(given)
    for k, a in given.items():
        assert back[k].dtype == a.dtype and back[k].shape == a.shape
        np.testing.assert_array_equal(back[k], a)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        kinds = {i.filename[:-4]: i.compress_type for i in zf.infolist()}
    # Random doubles barely deflate: stored; indices and constant weights shrink many times.
    assert kinds["x"] == kinds["grid"] == zipfile.ZIP_STORED
    assert kinds["row"] == kinds["weight"] == zipfile.ZIP_DEFLATED
    assert len(data) < given["x"].nbytes + given["grid"].nbytes + given["row"].nbytes // 2
    assert arrays.npz_load(None) == {}


def test_gwcs_are_validated_by_asdf_as_they_are_written_and_read_back_without(wcss, monkeypatch):
    seen: dict[str, int] = {}
    real = asdf.schema.get_validator

    def counting(*args, **kwargs):
        seen["validators"] = seen.get("validators", 0) + 1
        return real(*args, **kwargs)

    monkeypatch.setattr(asdf.schema, "get_validator", counting)
    written = [serialize_wcs(w) for w in wcss]
    assert seen.pop("validators") >= len(wcss)
    for w, data in zip(wcss, written):
        back = deserialize_wcs("gwcs", data)
        np.testing.assert_allclose(back(*GRID), w(*GRID), rtol=0, atol=1e-12)
    assert "validators" not in seen  # read as written: no second validation
    deserialize_wcs("gwcs", written[0], validate=True)
    assert seen.pop("validators") >= 1


def test_writing_a_record_leaves_asdf_as_it_is(wcss):
    """asdf's own functions and classes, not replacements, after records were written."""
    import asdf.schema as schema

    validate = schema.validate
    serialize_wcs(wcss[1])
    assert schema.validate is validate and not hasattr(validate, "__wrapped__")
    assert validate.__module__ == "asdf.schema" and asdf.AsdfFile.__module__.startswith("asdf.")


def test_the_same_gwcs_gives_the_same_bytes_in_a_fresh_process(wcss):
    """asdf lists the extensions a write used in a set's order (object ids): sorted by URI here,
    or a WCS had another sha256 in another process (the audit's lineage keys on it)."""
    code = ("import pickle, sys; from astrodb.provenance.wcs_bytes import serialize_wcs; "
            "sys.stdout.buffer.write(serialize_wcs(pickle.loads(sys.stdin.buffer.read())))")
    for w in wcss:
        out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(w), capture_output=True, check=True)
        assert out.stdout == serialize_wcs(w)
    text = serialize_wcs(wcss[1]).decode(errors="replace")
    uris = [line.split("extension_uri:")[1].strip() for line in text.splitlines() if "extension_uri:" in line]
    assert len(uris) >= 3 and uris == sorted(uris)


def test_canonical_history_moves_whole_entries_and_nothing_else(wcss):
    data = serialize_wcs(wcss[1])
    head, rest = data.split(b"history:\n  extensions:\n", 1)
    entries = re.split(rb"(?m)^(?=  - )", rest.split(b"\nwcs:", 1)[0] + b"\n")
    entries = [e for e in entries if e]
    assert len(entries) >= 3
    shuffled = head + b"history:\n  extensions:\n" + b"".join(reversed(entries)) + b"wcs:" + rest.split(b"\nwcs:", 1)[1]
    assert len(shuffled) == len(data) and shuffled != data
    assert canonical_history(shuffled) == data
    # Bytes without such a list, or with one entry, are left as they are.
    for other in (b"#ASDF 1.0.0\n%YAML 1.1\n--- !core/asdf-1.1.0\nwcs: 1\n...\n",
                  b"#ASDF 1.0.0\nhistory:\n  extensions:\n  - !core/extension_metadata-1.0.0\n    a: 1\nwcs: 1\n...\n"):
        assert canonical_history(other) == other


def test_writing_and_reading_from_many_threads_gives_the_same_bytes(wcss):
    expected = [serialize_wcs(w) for w in wcss]
    got: dict[int, list[bytes]] = {}

    def work(k: int) -> None:
        got[k] = [serialize_wcs(w) for w in wcss]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v == expected for v in got.values())


def _software(data: bytes) -> dict[str, str]:
    """The package versions an ASDF document names (writer, extensions, manifests)."""
    found = dict(re.findall(rb"\{(?:author: [^}]*?, )?(?:homepage: [^}]*?, )?name: ([\w.-]+), version: ([^},]+)\}",
                            data.split(b"\n...\n", 1)[0]))
    return {k.decode(): v.decode() for k, v in found.items()}


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@pytest.mark.parametrize("name", ["before_gwcs_input.asdf", "before_gwcs_corrected.asdf"])
def test_gwcs_recorded_before_read_back_and_write_the_same_bytes(name):
    data = (DATA / name).read_bytes()
    w = deserialize_wcs("gwcs", data)
    assert wcs_kind(w) == "gwcs" and ("v2v3corr" in w.available_frames) == ("corrected" in name)
    if name == "before_gwcs_input.asdf":  # the scene's WCS itself, recomputed
        truth = make_correctors(make_scene(3, 300, "gwcs", seed=5))[0].wcs
        np.testing.assert_allclose(w(*GRID), truth(*GRID), rtol=0, atol=1e-12)
    deserialize_wcs("gwcs", data, validate=True)  # written without asdf's validation then: valid all the same
    software = _software(data)
    assert software.get("asdf") and software.get("gwcs")
    if all(_installed(pkg) == ver for pkg, ver in software.items()):
        # The same software as then: the same document, byte for byte.
        assert serialize_wcs(w) == data
    else:
        assert deserialize_wcs("gwcs", serialize_wcs(w)).available_frames == w.available_frames


def test_fits_and_arrays_recorded_before_read_back():
    text = (DATA / "before_fits_input.txt").read_bytes()
    w = deserialize_wcs("fits", text)
    truth = make_correctors(make_scene(2, 50, "fits", seed=5))[0].wcs
    assert w.pixel_shape == truth.pixel_shape
    np.testing.assert_allclose(w.all_pix2world(*GRID, 0), truth.all_pix2world(*GRID, 0), rtol=0, atol=1e-10)
    assert serialize_wcs(w) == text
    cat = arrays.npz_load((DATA / "before_catalog.npz").read_bytes())
    assert sorted(cat) == ["row", "weight", "x", "y"]
    np.testing.assert_array_equal(cat["row"], np.arange(200))
    np.testing.assert_array_equal(cat["weight"], np.ones(200))
    assert cat["x"].dtype == np.float64 and cat["x"].shape == (200,)
