"""optuna-dashboard in a real browser: headless Chromium (Debian's package), driven by Selenium."""

import os
import shutil

import pytest
from click.testing import CliRunner

from batchlr.cli import main

pytestmark = pytest.mark.process

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"):
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
        allow_module_level=True,
    )


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # This machine has no network: keep Chromium from reaching out, and headless as root.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_dashboard_renders_the_study_its_trials_and_a_plot(
    sqlite_url, dashboard, browser, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    args = [
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "browsed",
        "--folds",
        "2",
        "--epochs",
        "2",
        "--device",
        "cpu",
    ]
    assert CliRunner().invoke(main, [*args, "--n-trials", "3"]).exit_code == 0
    base = dashboard(sqlite_url)
    wait = WebDriverWait(browser, 60)

    def body() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    browser.get(f"{base}/dashboard/")
    wait.until(lambda _: "browsed" in body())
    browser.find_element(By.PARTIAL_LINK_TEXT, "browsed").click()
    wait.until(
        lambda _: (
            "History" in body()
            and browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot svg.main-svg")
        )
    )
    screenshot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.read_bytes()[:4] == b"\x89PNG"
    assert "accuracy" in body() and "dataset" in body()

    browser.get(browser.current_url.rstrip("/") + "/trials")
    wait.until(lambda _: "fold_scores" in body())
    assert "Trial 2" in body() and "Intermediate Values" in body() and "images_per_second" in body()


def test_dashboard_shows_the_report_figures_attached_to_the_study(
    sqlite_url, dashboard, browser, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    args = [
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "attached",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--n-trials",
        "3",
    ]
    assert CliRunner().invoke(main, args).exit_code == 0
    reported = CliRunner().invoke(
        main, ["report", "attached", "--storage", sqlite_url, "--output", str(tmp_path / "report")]
    )
    assert (
        reported.exit_code == 0
        and "attached the report to study attached's artifacts" in reported.output
    )
    base = dashboard(sqlite_url)
    wait = WebDriverWait(browser, 60)
    browser.get(f"{base}/dashboard/")
    wait.until(lambda _: "attached" in browser.find_element(By.TAG_NAME, "body").text)
    browser.find_element(By.PARTIAL_LINK_TEXT, "attached").click()

    def rendered_artifact_images(_) -> list:
        images = browser.find_elements(By.CSS_SELECTOR, "img[src*='/artifacts/']")
        return [
            image
            for image in images
            if browser.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 100", image
            )
        ]

    images = wait.until(rendered_artifact_images)
    assert "Study Artifacts" in browser.find_element(By.TAG_NAME, "body").text
    browser.execute_script("arguments[0].scrollIntoView()", images[0])
    screenshot = tmp_path / "artifacts.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.read_bytes()[:4] == b"\x89PNG"
