"""``astrodb shard``: list, map, move (and back), recover, and add's refusals, on the sharded store."""
from __future__ import annotations

import re

from astrodb.cli.main import main


def _run(sharded, capsys, *args) -> tuple[int, str, str]:
    url = sharded.coordinator.engine.url.render_as_string(hide_password=False)
    code = main(["--store", url, "shard", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_map_move_recover(sharded, capsys):
    code, out, _ = _run(sharded, capsys, "list")
    assert code == 0 and re.search(r"^a\s+127\.0\.0\.1:\d+/astrodb_shard\s+up, revision \d+, 0 load", out, re.M)
    code, out, _ = _run(sharded, capsys, "map", "sky")
    assert code == 0 and "48 ranges" in out
    total = sum(int(v) for v in re.findall(r"(?:a|b) (\d+)", out.splitlines()[-1]))
    assert total == sharded.coordinator.catalog("sky").row_count
    first = out.splitlines()[2].split()
    lo, owner = int(first[0]), first[2]
    other = "b" if owner == "a" else "a"
    code, out, _ = _run(sharded, capsys, "move", "sky", str(lo), other)
    assert code == 0 and f"moved from shard {owner!r} to {other!r}" in out
    code, out, _ = _run(sharded, capsys, "move", "sky", str(lo), owner)
    assert code == 0
    code, out, _ = _run(sharded, capsys, "recover")
    assert code == 0 and out.startswith("0 committed, 0 rolled back, 0 shard(s) unreachable")


def test_add_and_move_refuse_bad_input_by_name(sharded, capsys):
    code, _, err = _run(sharded, capsys, "add", "Bad-Name", "postgresql://postgres@127.0.0.1/x")
    assert code == 2 and "shard name 'Bad-Name'" in err
    code, _, err = _run(sharded, capsys, "add", "a", sharded.shard_urls["b"])
    assert code == 2 and "already has a shard 'a'" in err
    code, _, err = _run(sharded, capsys, "move", "sky", "12345", "a")
    assert code == 2 and "no range starting at 12345" in err
    code, _, err = _run(sharded, capsys, "move", "sky", "0", "zz")
    assert code == 2 and "no shard 'zz'" in err


def test_init_migrates_every_shard(sharded, capsys):
    from alembic import command

    from astrodb.store import migrate
    from astrodb.store.engine import create_store_engine

    shard_a = create_store_engine(sharded.shard_urls["a"].replace("postgresql://", "postgresql+psycopg://"))
    try:
        cfg = migrate._config()
        with shard_a.begin() as conn:   # shard a left at the revision before sharding
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0014")
        assert migrate.current_revision(shard_a) == "0014"
        url = sharded.coordinator.engine.url.render_as_string(hide_password=False)
        assert main(["--store", url, "init"]) == 0
        assert migrate.current_revision(shard_a) == migrate.head_revision()
    finally:
        shard_a.dispose()
    capsys.readouterr()
    code, out, _ = _run(sharded, capsys, "list")
    assert code == 0 and out.count(f"up, revision {migrate.head_revision()},") == 2
