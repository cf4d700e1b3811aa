"""The exact-query property tests of tests/astrodb/query/test_exact_queries.py (hypothesis's
brute force, fast movers at distant epochs, the poles, RA 0/360, polygons, WCS footprints,
observer parallax) run against the sharded store: its ``Store.cone``/``footprint`` send each
query to the shards owning the region's ranges and merge what they return."""
from __future__ import annotations

import pytest

from tests.astrodb.query.test_exact_queries import (  # noqa: F401 - collected here with this module's store
    sky, test_cone_equals_brute_force, test_concave_polygon_across_ra_zero, test_convex_polygons_equal_brute_force,
    test_fast_movers_are_found_at_distant_epochs, test_observer_parallax_cone_equals_brute_force,
    test_wcs_footprint_with_distortion_equals_pixel_brute_force)


@pytest.fixture(scope="module")
def store(sharded):
    """The coordinator: catalogs it creates are sharded over the two throwaway servers."""
    return sharded.coordinator


def test_the_queried_catalog_is_sharded(store, sky):  # noqa: F811 - the imported fixture
    name, t = sky
    with store.engine.connect() as conn:
        cid = conn.exec_driver_sql("SELECT id FROM astrodb.catalogs WHERE name = %s", (name,)).scalar()
        shards = conn.exec_driver_sql("SELECT count(DISTINCT shard_id) FROM astrodb.shard_ranges "
                                      "WHERE catalog_id = %s", (cid,)).scalar()
        local = conn.exec_driver_sql("SELECT count(*) FROM ONLY astrodb.sources WHERE catalog_id = %s",
                                     (cid,)).scalar()
    assert shards == 2 and local == 0
    assert len(store.cone(0.0, 0.0, 180.0, catalog=name)) == len(t)
