"""The upload page in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from helpers import make_image, with_thresholds
from playwright.sync_api import Browser, Page, expect, sync_playwright
from web_process import running_web_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Flags that keep Chromium off the network it cannot reach here, and fit a root container.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is needed for the page tests: apt-get install chromium (make test does it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


#: what the page says for each verdict of the model
SAYS = {"ai": "Likely AI-generated", "real": "Likely a real photo", "unsure": "The model cannot tell: treat as unknown"}
#: the colour of each verdict (style.css: --ai, --real, --unsure)
COLOURS = {"ai": "rgb(180, 35, 24)", "real": "rgb(6, 118, 71)", "unsure": "rgb(181, 71, 8)"}


@pytest.fixture(scope="module")
def unsure_server(exported_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The web app serving the tiny model with a band from P(ai) 0 to 1: every image is unsure."""
    folder = tmp_path_factory.mktemp("unsure")
    model = with_thresholds(exported_model, folder / "banded.onnx", threshold=1.0, real_threshold=0.0)
    with running_web_server(model, folder / "server.log") as url:
        yield url


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "holiday.jpg"
    make_image("real", 11, (640, 480)).save(path, quality=90)
    return path


def _check_result(page: Page, filename: str) -> str:
    """The result's verdict, once its words, colour, P(AI) and preview are checked."""
    result = page.locator(f'li.result[data-filename="{filename}"]')
    expect(result).to_be_visible(timeout=30_000)
    verdict = result.get_attribute("data-verdict")
    assert verdict in SAYS and verdict in result.get_attribute("class").split()
    label = result.locator(".label")
    expect(label).to_have_text(SAYS[verdict])
    expect(label).to_have_css("color", COLOURS[verdict])
    # the number is P(AI) with its meaning, the same whatever the verdict; never a "% confident"
    expect(result.locator(".p-ai")).to_contain_text(re.compile(r"P\(AI\) \d+ %: the model's calibrated probability"))
    expect(result).not_to_contain_text("confident")
    preview = result.locator("img.preview")
    expect(preview).to_have_attribute("alt", f"Preview of {filename}")
    assert preview.evaluate("img => img.complete && img.naturalWidth > 0")
    assert 0 <= float(result.locator(".bar").get_attribute("aria-valuenow")) <= 100
    return verdict


def _check_heatmap(page: Page, filename: str) -> None:
    """The heatmap is drawn, and lies exactly over the preview."""
    result = page.locator(f'li.result[data-filename="{filename}"]')
    heatmap = result.locator("img.heatmap")
    expect(heatmap).to_be_visible(timeout=30_000)
    assert heatmap.evaluate("img => img.complete && img.naturalWidth > 0")
    assert heatmap.bounding_box() == result.locator("img.preview").bounding_box()


def test_upload_shows_preview_verdict_and_p_ai(browser: Browser, web_server: str, photo: Path) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    missing = []
    page.on("response", lambda response: missing.append(response.url) if response.status >= 400 else None)
    page.goto(web_server)
    expect(page.get_by_role("heading", name="Real photo or AI-generated?")).to_be_visible()
    page.set_input_files("#files", str(photo))
    expect(page.locator("#selection img")).to_have_count(1)  # instant local preview, before upload
    page.get_by_role("button", name="Check images").click()
    _check_result(page, photo.name)
    assert page.url.rstrip("/") == web_server  # answered in place, by fetch
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload-page.png"), full_page=True)
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    page.close()
    assert missing == []
    for path in (icon, "/favicon.ico"):  # the page's icon, and the one browsers ask for unprompted
        response = httpx.get(urljoin(web_server, path))
        assert response.status_code == 200 and response.headers["content-type"].startswith("image/")


def test_several_files_and_a_rejected_one_without_javascript(
    browser: Browser, web_server: str, photo: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "report.jpg"
    fake.write_text("this is not an image")
    png = tmp_path / "render.png"
    buffer = io.BytesIO()
    make_image("ai", 4, (300, 300)).save(buffer, format="PNG")
    png.write_bytes(buffer.getvalue())

    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})  # a phone
    page = context.new_page()
    page.goto(web_server)
    page.set_input_files("#files", [str(photo), str(png), str(fake)])
    page.get_by_label("Show heatmap").check()
    page.get_by_role("button", name="Check images").click()
    for name in (photo.name, png.name):
        _check_result(page, name)
        _check_heatmap(page, name)
    expect(page.get_by_label("Show heatmap")).to_be_checked()  # the choice stays for the next post
    refused = page.locator('li.result[data-filename="report.jpg"] .error')
    expect(refused).to_contain_text("not an image")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload-page-phone-nojs.png"), full_page=True)
    context.close()


def test_evidence_in_the_file_is_listed_under_the_verdict(browser: Browser, web_server: str, tmp_path: Path) -> None:
    """A PNG carrying AUTOMATIC1111's generation settings: the evidence decides, and the page says why."""
    from provenance_files import a1111_png

    stamped = tmp_path / "render.png"
    stamped.write_bytes(a1111_png())
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(web_server)
    page.set_input_files("#files", str(stamped))
    page.get_by_role("button", name="Check images").click()
    result = page.locator('li.result[data-filename="render.png"]')
    expect(result.locator(".label")).to_have_text("AI-generated", timeout=30_000)
    expect(result).to_contain_text("Decided by the file's own evidence")
    expect(result.locator(".model-alone")).to_contain_text(re.compile(r"The model alone says: .+ \(P\(AI\) \d+ %\)"))
    evidence = result.get_by_role("list", name="Provenance evidence")
    expect(evidence).to_contain_text("AUTOMATIC1111")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload-page-evidence.png"), full_page=True)
    page.close()


def test_heatmap_toggle_overlays_the_preview(browser: Browser, web_server: str, photo: Path) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(web_server)
    toggle = page.get_by_label("Show heatmap")
    page.set_input_files("#files", str(photo))
    page.get_by_role("button", name="Check images").click()
    _check_result(page, photo.name)
    expect(page.locator("img.heatmap")).to_have_count(0)  # not asked for: not computed
    toggle.check()  # results without heatmaps: the same files are asked again, with them
    _check_heatmap(page, photo.name)
    expect(page.locator("#heatmap-legend")).to_contain_text("red where the model saw signs of AI generation")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload-page-heatmap.png"), full_page=True)
    toggle.uncheck()  # hidden at once, without asking the server again
    expect(page.locator("img.heatmap")).to_be_hidden()
    toggle.check()
    _check_heatmap(page, photo.name)
    page.close()


def test_unsure_has_its_own_words_and_colour(browser: Browser, unsure_server: str, photo: Path) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(unsure_server)
    page.set_input_files("#files", str(photo))
    page.get_by_role("button", name="Check images").click()
    assert _check_result(page, photo.name) == "unsure"
    result = page.locator(f'li.result[data-filename="{photo.name}"]')
    expect(result).to_have_css("border-left-color", COLOURS["unsure"])
    expect(result.locator(".scale")).to_contain_text("in between it cannot tell")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload-page-unsure.png"), full_page=True)
    page.close()


def test_a_file_that_is_not_an_image_says_so_in_the_preview(
    browser: Browser, web_server: str, photo: Path, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("meeting notes, not a picture")
    fake = tmp_path / "report.jpg"
    fake.write_text("this is not an image either")
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(web_server)
    page.set_input_files("#files", [str(photo), str(notes), str(fake)])
    selection = page.locator("#selection")
    expect(selection.locator("img")).to_have_count(1)  # the photo; no broken-image icon for the others
    assert selection.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    expect(selection.locator(".not-image")).to_have_count(2)
    expect(selection.locator(".not-image").first).to_have_text(
        "notes.txt: not an image (text/plain); it will be refused."
    )
    expect(selection.locator(".not-image").last).to_contain_text("report.jpg: this file cannot be read as an image")
    page.close()
