"""astrodb finds the aligner only through entry points: it imports none, reads the records
without one, and says in one line what needs one when none is installed."""
from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path

import pytest

import aligner
from tests.support.aligner_synth import make_correctors, make_scene
from astrodb.cli.main import main
from astrodb.provenance import plugins

ROOT = Path(__file__).resolve().parents[3]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def test_astrodb_imports_no_aligner():
    found = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "astrodb").rglob("*.py")) if "aligner" in _imports(p)]
    assert found == []


def test_the_aligner_is_registered_for_astrodb():
    assert plugins.load(plugins.VERIFIERS, "x").__name__ == "aligner.verify"
    assert plugins.load(plugins.DEMOS, "x").__module__ == "aligner.demo"


@pytest.fixture
def no_aligner(monkeypatch):
    """An installation without an aligner: no entry point in astrodb's groups."""
    real = metadata.entry_points

    def entry_points(**kwargs):
        if kwargs.get("group") in (plugins.VERIFIERS, plugins.DEMOS):
            return metadata.EntryPoints(())
        return real(**kwargs)

    monkeypatch.setattr(metadata, "entry_points", entry_points)


@pytest.fixture
def recorded(db_factory):
    """A store with a relative run and an absolute run against a store catalog (gwcs)."""
    from astropy.table import Table

    scene = make_scene(3, 300, "gwcs", seed=21, epoch=2024.5, epoch_gap=8.0)
    store = db_factory.store()
    cols = ["source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "parallax", "radial_velocity",
            "ref_epoch", "mag"]
    store.ingest_catalog(Table({c: scene.refcat[c] for c in cols}), "gaia_dr3")
    corr = make_correctors(scene)
    aligner.relative_align(corr, store=store)
    aligner.absolute_align(corr, "GAIADR3", epoch=2024.5, store=store)
    yield store
    store.close()


def test_without_an_aligner_records_read_and_what_needs_one_says_so_in_one_line(recorded, no_aligner, capsys,
                                                                              tmp_path):
    from astrodb import provenance

    store = recorded
    runs = provenance.list_runs(store)
    assert len(runs) == 2
    rel, ab = runs["run_id"]
    provenance.show_run(store, ab)
    provenance.export_prov(store, ab)
    with pytest.raises(plugins.NoAlignerError, match="needs an aligner, and none is installed"):
        provenance.verify_run(store, rel)
    with pytest.raises(plugins.NoAlignerError, match="querying a run's reference again"):
        provenance.audit.requery_reference(store, provenance.audit.run_record(store, ab)[0])
    # The plot draws the image pairs and says why the reference pairs are not shown.
    summary = provenance.plot_run(store, ab, tmp_path / "fit.png")
    assert (tmp_path / "fit.png").stat().st_size > 0
    assert all("none is installed" in s["note"] for s in summary)
    url = store.engine.url.render_as_string(hide_password=False)
    for args in (["audit", "verify", rel[:8]], ["demo"]):
        code = main(["--store", url, *args])
        out, err = capsys.readouterr()
        assert code == 2 and err.count("\n") == 1 and "none is installed" in err, (args, err)
        assert "store:" not in out  # the demo stops before it has done anything


def test_an_aligner_that_cannot_be_loaded_is_named(monkeypatch):
    broken = metadata.EntryPoint(name="broken", value="no_such_aligner_module", group=plugins.VERIFIERS)
    monkeypatch.setattr(metadata, "entry_points",
                        lambda **kw: metadata.EntryPoints((broken,)) if kw.get("group") == plugins.VERIFIERS else ())
    with pytest.raises(plugins.NoAlignerError, match="'no_such_aligner_module', which cannot be loaded: No module"):
        plugins.load(plugins.VERIFIERS, "re-running a recorded alignment")
