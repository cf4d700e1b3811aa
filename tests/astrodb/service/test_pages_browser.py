"""The web pages of ``astrodb serve`` in a real browser: Debian's chromium, headless, driven by
its chromedriver through selenium, against a live server on each backend.

The store holds the Hipparcos catalog (real, all sky), a small field catalog, and runs the
aligner recorded: relative and absolute runs, one image aligned twice (its WCS history has a
link), and an image whose name is hostile HTML. Each page is checked for what a user sees:
tables filled, images loaded, the cone search returning Barnard's star, filters narrowing the
runs, paging, nothing loaded from outside the service, no console error, no script run from a
record. Screenshots go to ``$ASTRODB_SCREENSHOTS`` (default: the test's temporary folder).
"""
from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from astropy.table import Table

import aligner
from astrodb.datasets import HIPPARCOS_EPOCH, hipparcos
from tests.support.aligner_synth import make_correctors, make_scene
from tests.support.live_server import live_server

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (test extra) not installed")
from selenium.common.exceptions import NoAlertPresentException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HOSTILE = '<script>window.hacked=1</script><img src=x onerror="window.hacked=2">"\'&'
BARNARD = (269.4520769, 4.6933649, 87937)
REF = ["source_id", "ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "parallax", "radial_velocity",
       "ref_epoch", "mag"]

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                                reason="Debian's chromium and chromium-driver are not installed (./run tests "
                                "installs them as root)")


@pytest.fixture(scope="module")
def site(db_factory, tmp_path_factory):
    """(base URL, store, run ids) of a served store with catalogs and recorded runs."""
    store = db_factory.store()
    store.ingest_catalog(hipparcos(), "web_hip", epoch=HIPPARCOS_EPOCH, description="Hipparcos new reduction")
    scene = make_scene(3, 400, "fits", seed=21, epoch=2024.5, center=(150.2, 2.1))
    store.ingest_catalog(Table({c: scene.refcat[c] for c in REF}), "web_field", description="a field's reference stars")
    corr = make_correctors(scene)
    corr[2].meta["name"] = HOSTILE
    aligner.relative_align(corr, store=store)
    aligner.absolute_align(corr, "web_field", epoch=2024.5, store=store)
    aligner.absolute_align(corr, "web_field", epoch=2024.5, store=store)   # again: a WCS history link
    for k in range(4):  # more runs, for the filters and the pager
        more = make_correctors(make_scene(2, 300, "fits", seed=40 + k, epoch=2024.5, center=(150.2, 2.1)))
        aligner.relative_align(more, store=store)
    with live_server(store.url) as (base, _):
        yield base, store
    store.close()


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("ASTRODB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(driver, url: str) -> None:
    driver.get_log("browser")  # start each page with an empty console
    driver.get(url)


def _page_ok(driver, base: str) -> None:
    """No console error, nothing loaded from elsewhere, no script run."""
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    origin = urllib.parse.urlsplit(base).netloc
    urls = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(urllib.parse.urlsplit(u).netloc == origin for u in urls), urls
    assert driver.execute_script("return window.hacked === undefined")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018


def _click_and_load(driver, element) -> None:
    """Click a link or button that loads a new page, and wait for that page."""
    # Mark the old page, not wait for staleness: Chrome may report a stale element as a CDP error (selenium#15401).
    driver.execute_script("document.documentElement.dataset.leaving = 'yes'")
    element.click()
    WebDriverWait(driver, 60, ignored_exceptions=(WebDriverException,)).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && document.documentElement.dataset.leaving === undefined"))


def _images_loaded(driver, css: str) -> int:
    imgs = driver.find_elements(By.CSS_SELECTOR, css)
    assert imgs
    for img in imgs:
        driver.execute_script("arguments[0].scrollIntoView()", img)
    for img in imgs:  # plots are drawn on their first request: give them time
        WebDriverWait(driver, 60).until(lambda d, img=img: d.execute_script("return arguments[0].complete", img))
        ok = driver.execute_script("return arguments[0].naturalWidth > 0", img)
        assert ok, img.get_attribute("src")
    return len(imgs)


def _shot(driver, shots: Path, name: str, backend: str) -> None:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(height + 40, 800), 6000))
    driver.save_screenshot(str(shots / f"{name}-{backend}.png"))
    driver.set_window_size(1400, 1000)


def test_catalogs_page_lists_the_catalogs_with_their_sky_maps(site, browser, shots, backend):
    base, store = site
    _open(browser, base + "/")
    rows = {r.find_elements(By.TAG_NAME, "td")[0].text: r for r in
            browser.find_elements(By.CSS_SELECTOR, "#catalogs tbody tr")}
    assert {"web_hip", "web_field"} <= set(rows)
    cells = [td.text for td in rows["web_hip"].find_elements(By.TAG_NAME, "td")]
    assert cells[1] == "user" and cells[2] == f"J{HIPPARCOS_EPOCH:g}" and cells[3] == f"{len(hipparcos()):,}"
    assert _images_loaded(browser, "img.skymap") >= 2
    _page_ok(browser, base)
    _shot(browser, shots, "catalogs", backend)


def test_cone_search_form_finds_barnards_star_at_another_epoch(site, browser, shots, backend):
    base, store = site
    _open(browser, base + "/")
    Select(browser.find_element(By.ID, "catalog")).select_by_value("web_hip")
    for field, value in (("ra", BARNARD[0]), ("dec", BARNARD[1]), ("radius", 0.2), ("epoch", "2030")):
        el = browser.find_element(By.ID, field)
        el.clear()
        el.send_keys(str(value))
    _click_and_load(browser, browser.find_element(By.ID, "search"))
    header = [th.text.split("\n")[0] for th in browser.find_elements(By.CSS_SELECTOR, "#rows thead th")]
    assert header[:4] == ["source_id", "ra", "dec", "distance"]
    units = browser.find_element(By.CSS_SELECTOR, "#rows thead").text
    assert "[deg]" in units and "[mas / yr]" in units
    rows = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")
    want = store.cone(BARNARD[0], BARNARD[1], 0.2, catalog="web_hip", epoch=2030.0)
    assert len(rows) == len(want) >= 1
    assert int(browser.find_element(By.ID, "nrows").text) == len(want)
    first = [td.text for td in rows[0].find_elements(By.TAG_NAME, "td")]
    assert int(first[0]) == want["source_id"][0]
    assert abs(float(first[1]) - want["ra"][0]) < 1e-8   # Barnard's star where it is in 2030
    assert BARNARD[2] in set(int(r.find_element(By.TAG_NAME, "td").text) for r in rows)
    _page_ok(browser, base)
    _shot(browser, shots, "cone", backend)
    links = {a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a.download")}
    assert set(links) == {"votable", "ecsv", "csv", "json"}
    with urllib.request.urlopen(links["votable"], timeout=30) as resp:
        body = resp.read()
    assert b"<VOTABLE" in body and str(BARNARD[2]).encode() in body
    with urllib.request.urlopen(links["ecsv"], timeout=30) as resp:
        assert len(Table.read(resp.read().decode(), format="ascii.ecsv")) == len(want)


def test_a_bad_search_says_what_is_wrong(site, browser, backend):
    base, _ = site
    _open(browser, base + "/pages/cone?catalog=web_hip&ra=10&dec=95&radius=0.1")
    assert "dec" in browser.find_element(By.ID, "error").text
    _open(browser, base + "/pages/cone?catalog=nosuch&ra=10&dec=5&radius=0.1")
    assert "no catalog 'nosuch'" in browser.find_element(By.ID, "error").text


def test_runs_page_filters_and_pages(site, browser, shots, backend):
    base, store = site
    _open(browser, base + "/pages/runs")
    all_rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    assert len(all_rows) >= 7
    _page_ok(browser, base)
    _shot(browser, shots, "runs", backend)
    Select(browser.find_element(By.ID, "f-step")).select_by_value("absolute")
    _click_and_load(browser, browser.find_element(By.ID, "apply"))
    absolute = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    assert 2 <= len(absolute) < len(all_rows)
    assert {r.find_elements(By.TAG_NAME, "td")[1].text for r in absolute} == {"absolute"}
    browser.find_element(By.ID, "f-image").send_keys(HOSTILE)
    _click_and_load(browser, browser.find_element(By.ID, "apply"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 2
    _page_ok(browser, base)
    # Newest first, three a page: the pages hold every run once.
    _open(browser, base + "/pages/runs?n=3")
    seen = []
    while True:
        seen += [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#runs a.run")]
        nxt = browser.find_elements(By.ID, "next")
        if not nxt:
            break
        _click_and_load(browser, nxt[0])
    assert len(seen) == len(set(seen)) == len(all_rows)


def test_run_page_shows_fits_plots_and_history(site, browser, shots, backend):
    base, store = site
    _open(browser, base + "/pages/runs?step=absolute")
    _click_and_load(browser, browser.find_elements(By.CSS_SELECTOR, "#runs a.run")[0])   # the newest absolute run
    images = browser.find_elements(By.CSS_SELECTOR, "#images tbody tr")
    assert len(images) == 3
    names = [r.find_elements(By.TAG_NAME, "td")[1].text for r in images]
    assert HOSTILE in names   # shown as text, not run
    assert all(r.find_elements(By.TAG_NAME, "td")[3].text == "SUCCESS" for r in images)
    assert "&lt;script&gt;" in browser.page_source and "<script>window.hacked" not in browser.page_source
    assert _images_loaded(browser, "#residuals") == 1
    params = browser.find_element(By.ID, "parameters").text
    assert "searchrad" in params and "fitgeometry" in params
    assert "web_field" in browser.find_element(By.ID, "reference").text
    _page_ok(browser, base)
    _shot(browser, shots, "run", backend)
    prov = browser.find_element(By.ID, "prov").get_attribute("href")
    with urllib.request.urlopen(prov, timeout=30) as resp:
        assert b"wasGeneratedBy" in resp.read()
    # The hostile image's WCS history: three runs, the last started from what the one before left.
    [link] = [r.find_element(By.CSS_SELECTOR, "a.history") for r in images
              if r.find_elements(By.TAG_NAME, "td")[1].text == HOSTILE]
    _open(browser, link.get_attribute("href"))
    steps = browser.find_elements(By.CSS_SELECTOR, "#timeline > li")
    assert len(steps) == 3
    assert "from run" in steps[2].text and "from run" in steps[1].text
    assert browser.find_element(By.TAG_NAME, "h1").text == f"WCS history of {HOSTILE}"
    _page_ok(browser, base)
    _shot(browser, shots, "history", backend)


def test_api_docs_work_offline(site, browser, shots, backend):
    base, _ = site
    _open(browser, base + "/docs")
    browser.implicitly_wait(10)
    ops = browser.find_elements(By.CSS_SELECTOR, ".opblock")
    browser.implicitly_wait(0)
    assert len(ops) >= 10
    _page_ok(browser, base)
    _shot(browser, shots, "docs", backend)


def test_unknown_run_and_image_are_404_pages(site, backend):
    base, _ = site
    for path in ("/pages/runs/00000000-0000-4000-8000-000000000000", "/pages/image?name=no-such-image"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + path, timeout=30)
        assert err.value.code == 404 and b"<html" in err.value.read()
