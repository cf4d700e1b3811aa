"""W3C PROV export and residual plots of recorded runs, on both backends."""
from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.table import Table

import aligner
from tests.support.aligner_synth import make_correctors, make_scene
from astrodb import provenance
from astrodb.cli.main import main
from astrodb.errors import QueryError

prov_model = pytest.importorskip("prov.model")
pytest.importorskip("matplotlib")

OBS = 2024.5
REF_COLUMNS = ["source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "parallax", "radial_velocity",
               "ref_epoch", "mag"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scene():
    return make_scene(2, 500, "gwcs", seed=11, epoch=OBS, epoch_gap=8.0)


@pytest.fixture(scope="module")
def runs(db_factory, scene, tmp_path_factory):
    """A relative run, then absolute against gaia_dr3 in the store (from a file), then absolute
    against a Table, all on the same correctors."""
    tmp = tmp_path_factory.mktemp("prov")
    store = db_factory.store()
    Table({c: scene.refcat[c] for c in REF_COLUMNS}).write(tmp / "dr3_part.ecsv")
    store.ingest_catalog(tmp / "dr3_part.ecsv", "gaia_dr3")
    corr = make_correctors(scene)
    aligner.relative_align(corr, store=store)
    aligner.absolute_align(corr, "GAIADR3", epoch=OBS, observer=np.zeros(3), store=store)
    aligner.absolute_align(make_correctors(scene), scene.refcat, store=store)
    rel, ab_store, ab_table = provenance.list_runs(store)["run_id"]
    yield SimpleNamespace(store=store, url=store.url, rel=rel, ab_store=ab_store, ab_table=ab_table,
                          ref_file=tmp / "dr3_part.ecsv")
    store.close()


def _ids(doc, cls) -> set[str]:
    return {str(r.identifier) for r in doc.get_records(cls)}


def _relations(doc, cls) -> list[tuple]:
    out = []
    for r in doc.get_records(cls):
        out.append(tuple(str(v) if v is not None else None for _, v in r.formal_attributes))
    return out


def test_prov_json_round_trip_with_the_expected_entities(runs):
    s = runs.store
    text = provenance.export_prov(s, runs.ab_store[:8], "prov-json")
    doc = prov_model.ProvDocument.deserialize(content=text, format="json")
    assert doc == prov_model.ProvDocument.deserialize(content=provenance.export_prov(s, runs.ab_store), format="json")
    rec = provenance.show_run(s, runs.ab_store)
    sha_file = hashlib.sha256(runs.ref_file.read_bytes()).hexdigest()
    entities = _ids(doc, prov_model.ProvEntity)
    assert f"sha256:{sha_file}" in entities                         # the ingested file
    assert "catalog:gaia_dr3" in entities                            # the store catalog
    assert f"refrows:{rec['ref_sha256']}" in entities               # the rows used
    for im in rec["images"]:
        assert f"sha256:{im['catalog_sha256']}" in entities         # the image catalog
        assert f"wcs:{im['input_wcs_sha256']}" in entities and f"wcs:{im['output_wcs_sha256']}" in entities
    activities = _ids(doc, prov_model.ProvActivity)
    rid = runs.ab_store
    assert activities == {f"run:{rid}", f"fit:{rid}.0", f"fit:{rid}.1"}
    run_act = next(r for r in doc.get_records(prov_model.ProvActivity) if str(r.identifier) == f"run:{rid}")
    assert run_act.get_startTime() == rec["started_at"] and run_act.get_endTime() == rec["finished_at"]
    agents = list(doc.get_records(prov_model.ProvAgent))
    types = {str(t) for a in agents for t in a.get_asserted_types()}
    pg = s.backend == "postgresql"  # the role the database recorded: an agent there
    assert types == {"prov:Person", "prov:SoftwareAgent"} | ({"astrodb:DatabaseRole"} if pg else set())
    recorded = {str(k): v for k, v in run_act.attributes}
    assert recorded["astrodb:chain_digest"] == rec["chain"]["digest"]
    assert recorded["astrodb:chain_seq"] == rec["chain"]["seq"]
    assert ("astrodb:server_time" in recorded) == ("astrodb:db_role" in recorded) == pg
    sw = next(a for a in agents if "prov:SoftwareAgent" in {str(t) for t in a.get_asserted_types()})
    assert {str(k): v for k, v in sw.attributes}["astrodb:tweakwcs"] == rec["software"]["tweakwcs"]

    generated = _relations(doc, prov_model.ProvGeneration)
    assert {(g[0], g[1]) for g in generated} == {(f"wcs:{im['output_wcs_sha256']}", f"fit:{rid}.{im['image_index']}")
                                                 for im in rec["images"]}
    used = {(u[0], u[1]) for u in _relations(doc, prov_model.ProvUsage)}
    for im in rec["images"]:
        fit = f"fit:{rid}.{im['image_index']}"
        assert {(fit, f"sha256:{im['catalog_sha256']}"), (fit, f"wcs:{im['input_wcs_sha256']}"),
                (fit, f"refrows:{rec['ref_sha256']}")} <= used
    derived = {(d[0], d[1]) for d in _relations(doc, prov_model.ProvDerivation)}
    assert (f"refrows:{rec['ref_sha256']}", f"sha256:{sha_file}") in derived
    for im in rec["images"]:
        assert (f"wcs:{im['output_wcs_sha256']}", f"wcs:{im['input_wcs_sha256']}") in derived
    assoc = {(a[0], a[1]) for a in _relations(doc, prov_model.ProvAssociation)}
    assert {(f"run:{rid}", str(sw.identifier)), (f"fit:{rid}.0", str(sw.identifier))} <= assoc
    assert len(_relations(doc, prov_model.ProvStart)) == 2 and len(_relations(doc, prov_model.ProvDelegation)) == 1


def test_prov_links_runs_through_the_wcs_and_partner_catalogs(runs):
    s = runs.store
    rel = provenance.show_run(s, runs.rel)
    ab = provenance.show_run(s, runs.ab_store)
    doc = prov_model.ProvDocument.deserialize(content=provenance.export_prov(s, runs.rel), format="json")
    used = {(u[0], u[1]) for u in _relations(doc, prov_model.ProvUsage)}
    entities = _ids(doc, prov_model.ProvEntity)
    assert not any(e.startswith("refrows:") for e in entities)  # relative: no reference catalog
    for im, other in ((rel["images"][0], rel["images"][1]), (rel["images"][1], rel["images"][0])):
        # a relative fit used its partner image's catalog too
        assert (f"fit:{runs.rel}.{im['image_index']}", f"sha256:{other['catalog_sha256']}") in used
    # the WCS the relative run produced is the entity the absolute run used
    for r_im, a_im in zip(rel["images"], ab["images"]):
        after = r_im["output_wcs_sha256"] or r_im["input_wcs_sha256"]
        assert a_im["input_wcs_sha256"] == after
        if r_im["status"] == "SUCCESS":
            assert f"wcs:{after}" in entities
    table = prov_model.ProvDocument.deserialize(content=provenance.export_prov(s, runs.ab_table), format="json")
    ref = [r for r in table.get_records(prov_model.ProvEntity) if str(r.identifier).startswith("refrows:")]
    assert len(ref) == 1 and {str(k): v for k, v in ref[0].attributes}["astrodb:kind"] == "table"


def test_prov_n(runs):
    text = provenance.export_prov(runs.store, runs.ab_store, "prov-n")
    assert text.startswith("document") and text.rstrip().endswith("endDocument")
    assert f"activity(run:{runs.ab_store}," in text and "wasGeneratedBy(wcs:" in text
    assert "agent(agent:software." in text and "prov:SoftwareAgent" in text and "actedOnBehalfOf(" in text
    with pytest.raises(QueryError, match="prov-json, prov-n"):
        provenance.export_prov(runs.store, runs.ab_store, "turtle")


def test_plots_of_relative_and_absolute_runs(runs, tmp_path):
    s = runs.store
    for rid in (runs.rel, runs.ab_store, runs.ab_table):
        path = tmp_path / f"{rid}.png"
        summary = provenance.plot_run(s, rid, path)
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000, rid
        rec = provenance.show_run(s, rid)
        for im, row in zip(summary, rec["images"]):
            # every recorded pair is resolved, and its residuals are the fit's
            assert im["pairs"] == row["nmatches"] > 50 and im["note"] == ""
            assert im["rms_mas"] == pytest.approx(row["rmse"] * 1000, rel=0.02), (rid, im)


def test_residuals_of_an_fits_wcs_run(db_factory, tmp_path):
    fits_scene = make_scene(2, 500, "fits", seed=12, sip=True)
    store = db_factory.store()
    aligner.relative_align(make_correctors(fits_scene), store=store)
    rid = provenance.list_runs(store)["run_id"][0]
    res = provenance.fit_residuals(store, rid)
    assert [r["status"] for r in res].count("REFERENCE") == 1
    for r in res:
        t = r["table"]
        assert len(t) > 50 and np.all(t["partner"] >= 0) and r["rms_mas"] == pytest.approx(r["rmse_mas"], rel=0.02)
        # pixel vectors agree with the sky ones through the pixel scale (50 mas)
        assert np.median(np.hypot(t["dx"], t["dy"]) * 50.0 / np.hypot(t["d_east"], t["d_north"])) == pytest.approx(1, rel=0.05)
    summary = provenance.plot_run(store, rid[:8], tmp_path / "fits.png")
    assert (tmp_path / "fits.png").read_bytes().startswith(PNG) and len(summary) == 2
    store.close()


def test_plot_when_the_store_reference_has_changed(db_factory, scene, tmp_path):
    """A store reference that no longer gives the rows used: image pairs only, and a note."""
    store = db_factory.store()
    store.ingest_catalog(Table({c: scene.refcat[c] for c in REF_COLUMNS}), "gaia_dr3")
    aligner.absolute_align(make_correctors(scene), "GAIADR3", epoch=OBS, observer=np.zeros(3), store=store)
    rid = provenance.list_runs(store)["run_id"][0]
    before = provenance.fit_residuals(store, rid)
    assert all(np.any(r["table"]["partner"] < 0) and r["note"] == "" for r in before)
    store.drop_catalog("gaia_dr3")
    after = provenance.fit_residuals(store, rid)
    for b, a in zip(before, after):
        assert np.all(a["table"]["partner"] >= 0) and "no longer gives the rows used" in a["note"]
        assert len(a["table"]) == np.count_nonzero(b["table"]["partner"] >= 0) > 0
    summary = provenance.plot_run(store, rid, tmp_path / "changed.png")
    assert all("no longer" in s["note"] for s in summary) and (tmp_path / "changed.png").stat().st_size > 10_000
    store.close()


def test_plot_of_a_failed_run(db_factory, scene, tmp_path):
    store = db_factory.store()
    with pytest.raises(aligner.ParameterError):
        aligner.relative_align(make_correctors(scene), separation=0.5, store=store)
    rid = provenance.list_runs(store)["run_id"][0]
    summary = provenance.plot_run(store, rid, tmp_path / "failed.png")
    assert [s["pairs"] for s in summary] == [0, 0] and all("no matched pairs" in s["note"] for s in summary)
    assert (tmp_path / "failed.png").read_bytes().startswith(PNG)
    doc = prov_model.ProvDocument.deserialize(content=provenance.export_prov(store, rid), format="json")
    assert not list(doc.get_records(prov_model.ProvGeneration))  # nothing was produced
    store.close()


def test_cli_export_and_plot(runs, capsys, tmp_path):
    out_json = tmp_path / "run.json"
    assert main(["--store", runs.url, "audit", "export", runs.ab_store[:8], "-o", str(out_json)]) == 0
    doc = prov_model.ProvDocument.deserialize(content=out_json.read_text(), format="json")
    assert f"run:{runs.ab_store}" in _ids(doc, prov_model.ProvActivity)
    assert json.loads(out_json.read_text())["prefix"]["wcs"] == "urn:astrodb:wcs-sha256:"
    capsys.readouterr()
    assert main(["--store", runs.url, "audit", "export", runs.rel, "--format", "prov-n"]) == 0
    assert capsys.readouterr().out.startswith("document")
    code = main(["--store", runs.url, "audit", "plot", runs.rel[:8], "-o", str(tmp_path / "rel.png")])
    out = capsys.readouterr().out
    assert code == 0 and "pairs, rms" in out and f"wrote {tmp_path / 'rel.png'}" in out
    assert (tmp_path / "rel.png").read_bytes().startswith(PNG)
    code = main(["--store", runs.url, "audit", "plot", runs.rel, "-o", str(tmp_path / "no" / "dir.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("astrodb: error: cannot write the plot") and err.count("\n") == 1
