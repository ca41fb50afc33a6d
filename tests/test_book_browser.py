"""The built book in a real browser: headless Chromium (Debian's package) driven by Playwright.

Runs after `make book` (CI: `make test-book`). Skipped, with the reason, when the book has not been built
or Chromium is not installed. Serves _build/html with `http.server` on 127.0.0.1 and blocks every other
host, so a page that needs a CDN fails here.
"""

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

import refseg_core

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / "_build" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (HTML / "index.html").exists(), reason="book not built: run `make book` first"),
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium not installed (the Makefile's `browser` target installs it)"
    ),
]


def _pages() -> list[Path]:
    skip = {"search.html", "genindex.html"}
    return sorted(
        p
        for p in HTML.rglob("*.html")
        if p.name not in skip and "_static" not in p.parts and "_sources" not in p.parts
    )


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


def _open(browser, url):
    """Open ``url``; returns (page, console errors, failed requests, blocked external requests)."""
    page = browser.new_page()
    errors, failed, external = [], [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "requestfailed", lambda r: failed.append(r.url) if urlparse(r.url).hostname == "127.0.0.1" else None
    )

    def route(r):
        if urlparse(r.request.url).hostname in ("127.0.0.1", None) or r.request.url.startswith("data:"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(url, wait_until="load")
    page.wait_for_timeout(300)
    return page, errors, failed, external


def test_every_page_loads_with_images_and_no_errors(server, browser):
    pages = _pages()
    assert len(pages) >= 3
    for path in pages:
        rel = path.relative_to(HTML).as_posix()
        page, errors, failed, external = _open(browser, urljoin(server, rel))
        try:
            assert not errors, f"{rel}: console errors {errors}"
            assert not failed, f"{rel}: failed local requests {failed}"
            assert not external, f"{rel}: needs the network for {external}"
            broken = page.evaluate(
                "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
            )
            assert not broken, f"{rel}: images that did not load: {broken}"
        finally:
            page.close()


def test_notebook_pages_have_figures_and_rendered_math(server, browser):
    for path in sorted((HTML / "notebooks").glob("*.html")):
        rel = path.relative_to(HTML).as_posix()
        page, *_ = _open(browser, urljoin(server, rel))
        try:
            n_img = page.evaluate("document.querySelectorAll('.cell_output img').length")
            draws = "plt.show()" in (ROOT / "notebooks" / f"{path.stem}.py").read_text()
            assert n_img >= 1 or not draws, f"{rel}: the notebook draws figures but the page shows none"
            if page.evaluate("document.body.innerText.includes('$$')"):
                pytest.fail(f"{rel}: unrendered $$ math")
        finally:
            page.close()


def test_internal_links_resolve():
    bad = []
    for path in _pages():
        for href in re.findall(r'href="([^"#?]+)[^"]*"', path.read_text(encoding="utf-8")):
            if urlparse(href).scheme or href.startswith(("mailto:", "//")):
                continue
            target = (path.parent / href).resolve()
            if not target.exists():
                bad.append(f"{path.relative_to(HTML)} -> {href}")
    assert not bad, "broken internal links:\n" + "\n".join(bad[:20])


def test_colab_links_point_at_the_committed_notebooks():
    pages = sorted((HTML / "notebooks").glob("*.html"))
    assert pages
    for path in pages:
        links = re.findall(
            r'href="(https://colab\.research\.google\.com/[^"]+)"', path.read_text(encoding="utf-8")
        )
        assert links, f"{path.name}: no Colab launch button"
        repo = urlparse(refseg_core.REPO_URL).path.strip("/")
        expected = f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{path.stem}.ipynb"
        assert expected in links, f"{path.name}: Colab link {links} != {expected}"
        assert (ROOT / "notebooks" / f"{path.stem}.ipynb").exists()


def test_search_finds_position_prior_and_screenshots(server, browser):
    page, errors, _, external = _open(browser, urljoin(server, "search.html?q=position+prior"))
    try:
        page.wait_for_selector("#search-results li, ul.search li", timeout=15000)
        hits = page.evaluate(
            "Array.from(document.querySelectorAll('ul.search li a')).map(a => a.textContent)"
        )
        assert hits, "search for 'position prior' found nothing"
        assert not external
    finally:
        page.close()
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name in ("index.html", "notebooks/02_metrics.html"):
        page, *_ = _open(browser, urljoin(server, name))
        page.screenshot(path=str(SHOTS / (Path(name).stem + ".png")), full_page=False)
        page.close()
        assert (SHOTS / (Path(name).stem + ".png")).stat().st_size > 10_000


def test_markdown_tables_in_outputs_are_rendered():
    """Tables printed with IPython.display.Markdown must become HTML tables, not pipes and dashes."""
    for path in sorted((HTML / "notebooks").glob("*.html")):
        text = path.read_text(encoding="utf-8")
        assert "|—|" not in text and "|–|" not in text, f"{path.name}: a Markdown table was printed as text"
