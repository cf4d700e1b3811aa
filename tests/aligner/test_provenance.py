"""aligner.provenance: WCS serialization (the records themselves: tests/astrodb/provenance)."""
from __future__ import annotations

import threading

import numpy as np

from aligner.provenance import asdf_schema_cache, deserialize_wcs, serialize_wcs
from aligner_synth import make_correctors, make_scene


def test_gwcs_serialized_in_a_schema_cache_batch_are_byte_identical_and_round_trip():
    scene = make_scene(3, 50, "gwcs", seed=3)
    wcss = [c.wcs for c in make_correctors(scene)]
    plain = [serialize_wcs(w) for w in wcss]
    with asdf_schema_cache():
        cached = [serialize_wcs(w) for w in wcss]
        with asdf_schema_cache():  # nested: the same batch
            cached.append(serialize_wcs(wcss[0]))
    assert cached[:3] == plain and cached[3] == plain[0]
    # Still plain asdf after the batch (and the bytes read back as the same WCS).
    assert serialize_wcs(wcss[1]) == plain[1]
    back = deserialize_wcs("gwcs", cached[2])
    x, y = np.array([10.0, 500.0, 1800.0]), np.array([20.0, 900.0, 1500.0])
    np.testing.assert_allclose(back(x, y), wcss[2](x, y), rtol=0, atol=1e-12)


def test_schema_cache_is_per_thread():
    """Another thread writing ASDF during a batch uses asdf's own resolver (one is not shared)."""
    scene = make_scene(2, 50, "gwcs", seed=4)
    wcss = [c.wcs for c in make_correctors(scene)]
    plain = [serialize_wcs(w) for w in wcss]
    import asdf.schema

    seen = {}

    def other():
        seen["resolver"] = asdf.schema._make_jsonschema_refresolver()
        seen["bytes"] = serialize_wcs(wcss[1])

    with asdf_schema_cache():
        mine = serialize_wcs(wcss[0])
        batch_resolver = asdf.schema._make_jsonschema_refresolver()
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert asdf.schema._make_jsonschema_refresolver() is batch_resolver
    assert seen["resolver"] is not batch_resolver
    assert mine == plain[0] and seen["bytes"] == plain[1]
    assert asdf.schema._make_jsonschema_refresolver() is not batch_resolver
