"""elprop serve in a real headless browser (Debian's chromium + chromedriver through Selenium): predict from SMILES,
open a molecule and check that the 3D view drew something. Screenshots go to the test's temporary folder."""
import shutil
import threading

import pytest

from elprop.serve.app import create_app, threedmol_path

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not (CHROMEDRIVER and CHROMIUM),
                                reason="no chromium/chromedriver: `make test` installs them (apt-get)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import numpy as np
    import pandas as pd
    from werkzeug.serving import make_server
    root = tmp_path_factory.mktemp("runs")
    (root / "design-b").mkdir()
    rng = np.random.default_rng(0)
    pd.DataFrame({"smiles": ["CCO", "CCN", "CCC", "C=O"] * 3, "round": np.repeat([1, 2, 3], 4),
                  "gap_pred": rng.normal(6, 1, 12), "gap_std": np.full(12, 0.2), "gap_label": rng.normal(6, 1, 12),
                  "hit": [True, False] * 6}).to_csv(root / "design-b" / "proposals.csv", index=False)
    srv = make_server("127.0.0.1", 0, create_app([root]), threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
              "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield d
    d.quit()


def test_predict_then_molecule_3d_view(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    wait = WebDriverWait(browser, 120)
    browser.get(server + "/predict")
    box = browser.find_element(By.ID, "smiles")
    box.clear()
    box.send_keys("c1ccccc1O\nCC=CC=O\nnot-a-molecule")
    browser.find_element(By.ID, "go").click()
    table = wait.until(EC.presence_of_element_located((By.ID, "results")))
    assert "invalid SMILES" in table.text and "±" in table.text
    assert len(table.find_elements(By.TAG_NAME, "svg")) == 2
    browser.save_screenshot(str(tmp_path / "predict.png"))
    table.find_element(By.LINK_TEXT, "c1ccccc1O").click()
    wait.until(EC.presence_of_element_located((By.ID, "properties")))
    assert threedmol_path() is not None, "3Dmol.js is missing: `make setup` installs it with npm"
    wait.until(lambda d: d.execute_script("return window.elpropViewerReady === true"))
    drawn = browser.execute_script("""
        const c = document.querySelector('#viewer canvas');
        if (!c || c.width === 0) return -1;
        const g = document.createElement('canvas'); g.width = c.width; g.height = c.height;
        const x = g.getContext('2d'); x.drawImage(c, 0, 0);
        const px = x.getImageData(0, 0, g.width, g.height).data;
        let n = 0; for (let i = 0; i < px.length; i += 4) if (px[i] < 250 || px[i + 1] < 250 || px[i + 2] < 250) n++;
        return n;""")
    browser.save_screenshot(str(tmp_path / "molecule.png"))
    print(f"screenshots: {tmp_path}")
    assert drawn > 500, f"the 3D view drew {drawn} non-white pixels"


def test_design_run_page_draws_its_plot(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(server + "/runs")
    browser.find_element(By.PARTIAL_LINK_TEXT, "design-b").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#plot-parity .main-svg"))
    points = browser.find_elements(By.CSS_SELECTOR, "#plot-parity .point")
    browser.save_screenshot(str(tmp_path / "design.png"))
    assert len(points) >= 12  # one marker per verified proposal
