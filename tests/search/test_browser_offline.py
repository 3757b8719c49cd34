"""The page and the API docs in a real browser with the network off, on a phone and on a desktop.

Every request to a host other than 127.0.0.1 is aborted (as on a machine without internet), so
/docs and /redoc must render from assets installed with vitrina.  Screenshots land in artifacts/.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from test_browser import ARTIFACTS, CHROMIUM_ARGS, chromium, demo_index, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture
def browser(chromium):  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Offline:
    """A browser context whose only reachable host is 127.0.0.1; it records what was blocked and what failed."""

    def __init__(self, browser, base: str, viewport: dict[str, int]):
        self.base, self.blocked, self.failed, self.errors = base, [], [], []
        self.context = browser.new_context(viewport=viewport)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.url}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))

    def _route(self, route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def open_page(self):
        self.page.goto(self.base + "/")
        self.page.wait_for_selector("body[data-ready='true']")
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def offline(browser, server):  # noqa: F811
    base = server.wait_ready()
    opened: list[Offline] = []

    def make(viewport: dict[str, int]) -> Offline:
        opened.append(Offline(browser, base, viewport))
        return opened[-1]

    yield make
    for context in opened:
        context.close()


def test_api_docs_render_without_network(offline):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    tab = offline(DESKTOP)
    page = tab.page
    page.goto(tab.base + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("vitrina")
    expect(page.locator(".swagger-ui .opblock-summary-path[data-path='/search']").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "docs-swagger-offline.png"))

    page.goto(tab.base + "/redoc")
    expect(page.locator("h1").first).to_contain_text("vitrina")
    expect(page.get_by_text("Search by text (refine syntax), images, vectors and weighted terms").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "docs-redoc-offline.png"))
    assert not [url for url in tab.blocked if url.endswith((".js", ".css"))], tab.blocked
    assert not tab.failed, tab.failed


def _search_words(page, words: str) -> None:
    from playwright.sync_api import expect

    page.fill("#q", words)
    page.press("#q", "Enter")
    expect(page.locator("#results .card").first).to_be_visible()


def test_phone_shows_results_first_and_filters_behind_a_button(offline):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    tab = offline(PHONE)
    page = tab.open_page()
    toggle = page.get_by_role("button", name="Filters")
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#facets-panel")).to_be_hidden()
    expect(page.locator("#category")).to_be_hidden()

    _search_words(page, "red")
    first = page.locator("#results .card").first.bounding_box()
    assert first is not None and first["y"] < PHONE["height"] * 0.8, f"the first result starts at {first}"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "no sideways scrolling"
    page.screenshot(path=str(ARTIFACTS / "web-phone-390x844.png"))
    page.screenshot(path=str(ARTIFACTS / "web-phone-390x844-full.png"), full_page=True)

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#facets-panel")).to_be_visible()
    expect(page.locator("#facets .facet-group").first).to_be_visible()
    page.locator("#facets .facet[data-field='category']").first.click()
    expect(page.locator("#filters-toggle")).to_have_text("Filters (1)")
    page.screenshot(path=str(ARTIFACTS / "web-phone-390x844-filters.png"), full_page=True)
    assert not tab.failed, tab.failed  # the favicon and every asset load
    assert not tab.errors, tab.errors


def test_desktop_shows_facets_beside_results(offline):
    from playwright.sync_api import expect

    tab = offline(DESKTOP)
    page = tab.open_page()
    expect(page.locator("#filters-toggle")).to_be_hidden()
    _search_words(page, "blue")
    expect(page.locator("#facets .facet-group").first).to_be_visible()
    facets, results = page.locator("#facets-panel").bounding_box(), page.locator("#results").bounding_box()
    assert facets and results and facets["x"] + facets["width"] <= results["x"], "facets sit left of the results"
    assert results["y"] < DESKTOP["height"]
    icon = page.evaluate("document.querySelector(\"link[rel='icon']\").href")
    assert page.request.get(icon).status == 200
    page.screenshot(path=str(ARTIFACTS / "web-desktop-1280x800.png"))
    assert not tab.failed, tab.failed
    assert not tab.errors, tab.errors


def test_status_line_after_a_refused_photo(offline, tmp_path):
    from playwright.sync_api import expect

    page = offline(DESKTOP).open_page()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    page.set_input_files("#photo", str(notes))
    expect(page.get_by_role("alert")).to_contain_text("Photo refused")
    expect(page.locator("#status")).to_contain_text("refused")

    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + bytes(12 * 1024 * 1024))  # over the 10 MB limit: refused before sending
    page.set_input_files("#photo", str(big))
    expect(page.get_by_role("alert")).to_contain_text("photos can be at most")
    expect(page.locator("#status")).not_to_contain_text("search was refused")
    expect(page.locator("#status")).to_contain_text("Photo not used")

    page.get_by_role("button", name="Search", exact=True).click()  # nothing to search with
    expect(page.locator("#status")).to_have_text("Drop a photo or type what you are looking for.")
    _search_words(page, "green")
    expect(page.locator("#status")).to_contain_text("Results 1–")
    expect(page.get_by_role("alert")).to_have_text("")
