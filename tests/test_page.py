"""The upload page in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import make_image
from playwright.sync_api import Browser, Page, expect, sync_playwright

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


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "holiday.jpg"
    make_image("real", 11, (640, 480)).save(path, quality=90)
    return path


def _check_result(page: Page, filename: str) -> None:
    result = page.locator(f'li.result[data-filename="{filename}"]')
    expect(result).to_be_visible(timeout=30_000)
    expect(result.locator(".label")).to_have_text(
        ["AI-generated"] if "ai" in result.get_attribute("class").split() else ["Real photo"]
    )
    expect(result.locator(".confidence")).to_contain_text("% confident")
    preview = result.locator("img.preview")
    expect(preview).to_have_attribute("alt", f"Preview of {filename}")
    assert preview.evaluate("img => img.complete && img.naturalWidth > 0")
    assert 0 < float(result.locator(".bar").get_attribute("aria-valuenow")) <= 100


def test_upload_shows_preview_label_and_confidence(browser: Browser, web_server: str, photo: Path) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(web_server)
    expect(page.get_by_role("heading", name="Real photo or AI-generated?")).to_be_visible()
    page.set_input_files("#files", str(photo))
    expect(page.locator("#selection img")).to_have_count(1)  # instant local preview, before upload
    page.get_by_role("button", name="Check images").click()
    _check_result(page, photo.name)
    assert page.url.rstrip("/") == web_server  # answered in place, by fetch
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload-page.png"), full_page=True)
    page.close()


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
    page.get_by_role("button", name="Check images").click()
    _check_result(page, photo.name)
    _check_result(page, png.name)
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
    evidence = result.get_by_role("list", name="Provenance evidence")
    expect(evidence).to_contain_text("AUTOMATIC1111")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload-page-evidence.png"), full_page=True)
    page.close()
