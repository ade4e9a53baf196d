"""The explorer in a real browser: Debian's headless Chromium driven by selenium.

Starts ``streamlit run app/explorer.py`` on a free port, waits for the default view, saves a
screenshot (to ``$MOEFM_SCREENSHOT_DIR/app_screenshot.png`` when that variable is set, else
to the test's tmp_path) and checks the page: title, rendered figures, no exception box.
Skipped only when chromium / chromedriver are not installed (``make browser-deps``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[1]
TITLE = "MoE-FM trajectory explorer"
PANELS = 5

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (make browser-deps)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


@pytest.fixture
def app_url(tmp_path):
    port = free_port()
    env = dict(os.environ, MOEFM_APP_FAST="0")  # the real default view (it trains nothing)
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "streamlit", "run", "app/explorer.py",
            "--server.headless", "true",
            "--server.port", str(port),
            "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def driver(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1600,3000",  # tall enough for every panel in one screenshot
    ):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def test_app_renders_in_chromium(app_url, driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(app_url)

    def loaded_images(drv):
        imgs = drv.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img')
        return [i for i in imgs if drv.execute_script("return arguments[0].naturalWidth", i) > 0]

    wait = WebDriverWait(driver, 45, poll_frequency=0.5)
    wait.until(lambda d: TITLE in d.find_element(By.TAG_NAME, "h1").text)
    wait.until(lambda d: len(loaded_images(d)) >= PANELS)
    time.sleep(0.5)  # let the last images paint before the screenshot

    out_dir = Path(os.environ.get("MOEFM_SCREENSHOT_DIR") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = out_dir / "app_screenshot.png"
    assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    assert TITLE in driver.find_element(By.TAG_NAME, "h1").text
    assert len(loaded_images(driver)) == PANELS
    assert driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]') == []
    page = driver.find_element(By.TAG_NAME, "body").text
    assert "shipped checkpoint" in page and "Training failed" not in page
