"""The built book in a real browser: headless Chromium (Debian's package) driven by Playwright.

Runs after `make book` (CI: `make test-book`). Skipped, with the reason, when the book has not been built
or Chromium is not installed. Serves _build/html with `http.server` on 127.0.0.1 and blocks every other
host, so a page that needs a CDN fails here.

Every page is opened once, at ``WIDTH`` px, and measured (:func:`measured`); each test then checks one
promise of the book on every page and fails with the list of pages that break it:

* it loads without console errors, failed requests, network needs or broken images;
* every figure has a caption and a number ("Fig. N"), numbered in reading order;
* no output shows a warning, a traceback or anything written to stderr;
* no code block is wider than its column, and the page is not wider than the window;
* no page is taller than ``MAX_PAGE_HEIGHT_PX``;
* every internal link resolves, its ``#anchor`` included;
* every verdict ("above the baseline", "helps", "meets the target") is a sentence of
  :mod:`refseg_core.verdicts`, whose numbers agree with its words (:func:`refseg_core.verdicts.unbacked_claims`).
"""

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

import refseg_core
from refseg_core import verdicts

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / "_build" / "screenshots"
WIDTH = 1280  # px: the window every page is measured in
MAX_PAGE_HEIGHT_PX = 20_000  # a page taller than this at WIDTH px is a wall, not a chapter
MIN_CAPTION_CHARS = 20  # a caption says what to look at: more than a few words

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (HTML / "index.html").exists(), reason="book not built: run `make book` first"),
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium not installed (the Makefile's `browser` target installs it)"
    ),
]


def _redirect(p: Path) -> bool:
    """Jupyter Book's index.html is a stub that redirects to the preface."""
    return 'http-equiv="Refresh"' in p.read_text(encoding="utf-8")[:2000]


def _pages() -> list[Path]:
    skip = {"search.html", "genindex.html"}
    return sorted(
        p
        for p in HTML.rglob("*.html")
        if p.name not in skip and "_static" not in p.parts and "_sources" not in p.parts and not _redirect(p)
    )


def _rel(path: Path) -> str:
    return path.relative_to(HTML).as_posix()


@pytest.fixture(scope="module")
def server():
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no line per request in the test's output
            pass

    handler = functools.partial(Quiet, directory=str(HTML))
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
    """Open ``url`` at WIDTH px; returns (page, console errors, failed requests, blocked external requests)."""
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
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
    # MathJax typesets after load and changes the page's height: wait for it where it runs.
    page.evaluate("() => (window.MathJax && MathJax.startup && MathJax.startup.promise) || null")
    page.wait_for_timeout(300)
    return page, errors, failed, external


# What one page looks like, measured in the browser. The verdict text is the page's prose, captions and
# outputs without code (code cells' sources, prose code blocks, `show_source` listings).
MEASURE = """() => {
  const art = document.querySelector('article.bd-article') || document.body;
  // The page as it opens (collapsed parts closed), then with every collapsed part open (solutions,
  // hidden inputs): a reader who opens them reads them too.
  const height = document.documentElement.scrollHeight;
  const width = document.documentElement.scrollWidth;
  art.querySelectorAll('details').forEach(d => { d.open = true; });
  const figures = Array.from(art.querySelectorAll('img')).map(img => {
    const fig = img.closest('figure');
    const cap = fig ? fig.querySelector('figcaption') : null;
    const num = cap ? cap.querySelector('.caption-number') : null;
    const txt = cap ? cap.querySelector('.caption-text') : null;
    return {src: img.getAttribute('src').split('/').pop().slice(0, 16),
            number: num ? num.textContent.trim() : '',
            caption: txt ? txt.textContent.trim() : '',
            output: !!img.closest('.cell_output')};
  });
  const stderr = Array.from(art.querySelectorAll('.cell_output .output.stderr, .cell_output .output.error,'
                                                + ' .cell_output .output.traceback'))
    .map(e => e.innerText.trim().slice(0, 200));
  const warned = Array.from(art.querySelectorAll('.cell_output > *'))
    .filter(e => !e.matches('.output.stderr, .output.error, .output.traceback'))
    .map(e => e.innerText)
    .filter(t => /\\w*Warning\\b|^WARNING\\b|Traceback \\(most recent call last\\)/m.test(t))
    .map(t => t.trim().slice(0, 200));
  const overflowing = Array.from(art.querySelectorAll('pre'))
    .filter(p => p.scrollWidth > p.clientWidth + 1)
    .map(p => `${p.scrollWidth} > ${p.clientWidth} px: ${p.innerText.trim().slice(0, 80)}`);
  const hide = Array.from(art.querySelectorAll(
      '.cell_input, div[class*="highlight-"]:not(.highlight-myst-ansi), .output.text_html .highlight,'
      + ' script, style'));
  const before = hide.map(e => e.style.display);
  hide.forEach(e => { e.style.display = 'none'; });
  const text = art.innerText;
  hide.forEach((e, i) => { e.style.display = before[i]; });
  return {figures, stderr, warned, overflowing, text, height, width, window: window.innerWidth,
          math_unrendered: document.body.innerText.includes('$$'),
          broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
                       .map(i => i.src)};
}"""


@pytest.fixture(scope="module")
def measured(server, browser) -> dict:
    """``{page: measurements}`` for every page of the book, each opened once."""
    out = {}
    for path in _pages():
        rel = _rel(path)
        page, errors, failed, external = _open(browser, urljoin(server, rel))
        try:
            out[rel] = dict(page.evaluate(MEASURE), errors=errors, failed=failed, external=external)
        finally:
            page.close()
    assert len(out) >= 3
    return out


def _report(problems: dict) -> str:
    return "\n".join(f"{page}: {p}" for page, ps in sorted(problems.items()) for p in ps)


def test_every_page_loads_with_images_and_no_errors(measured):
    problems = {}
    for rel, m in measured.items():
        ps = [f"console errors {m['errors']}"] if m["errors"] else []
        ps += [f"failed local requests {m['failed']}"] if m["failed"] else []
        ps += [f"needs the network for {m['external']}"] if m["external"] else []
        ps += [f"images that did not load: {m['broken']}"] if m["broken"] else []
        if ps:
            problems[rel] = ps
    assert not problems, _report(problems)


def test_notebook_pages_have_figures_and_rendered_math(measured):
    problems = {}
    for rel, m in measured.items():
        if not rel.startswith("notebooks/"):
            continue
        draws = "plt.show()" in (ROOT / "notebooks" / f"{Path(rel).stem}.py").read_text()
        ps = ["the notebook draws figures but the page shows none"] if draws and not m["figures"] else []
        ps += ["unrendered $$ math"] if m["math_unrendered"] else []
        if ps:
            problems[rel] = ps
    assert not problems, _report(problems)


def test_every_figure_has_a_caption_and_a_number_in_reading_order(measured):
    problems = {}
    for rel, m in measured.items():
        ps, numbers = [], []
        for f in m["figures"]:
            if not re.fullmatch(r"Fig\. \d+", f["number"]):
                ps.append(f"figure {f['src']} has no number (a cell with mystnb figure metadata makes one)")
                continue
            numbers.append(int(f["number"].split()[1]))
            if len(f["caption"]) < MIN_CAPTION_CHARS:
                ps.append(f"{f['number']} has no caption that says what to look at: {f['caption']!r}")
        if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
            ps.append(f"figures numbered {numbers}, not in reading order")
        if ps:
            problems[rel] = ps
    assert not problems, _report(problems)


def test_no_output_shows_a_warning_or_a_traceback(measured):
    problems = {}
    for rel, m in measured.items():
        ps = [f"stderr/error output: {t!r}" for t in m["stderr"]]
        ps += [f"warning in an output: {t!r}" for t in m["warned"]]
        if ps:
            problems[rel] = ps
    assert not problems, _report(problems)


def test_no_code_block_overflows_its_column_and_no_page_is_wider_than_the_window(measured):
    problems = {}
    for rel, m in measured.items():
        ps = [f"code block wider than its column, {o}" for o in m["overflowing"]]
        if m["width"] > m["window"]:
            ps.append(f"the page is {m['width']} px wide in a {m['window']} px window")
        if ps:
            problems[rel] = ps
    assert not problems, _report(problems)


def test_no_page_is_taller_than_the_limit(measured):
    tall = {
        rel: [f"{m['height']:,} px tall at {WIDTH} px wide (limit {MAX_PAGE_HEIGHT_PX:,})"]
        for rel, m in measured.items()
        if m["height"] > MAX_PAGE_HEIGHT_PX
    }
    assert not tall, _report(tall)


def test_every_verdict_comes_from_refseg_core_verdicts(measured):
    problems = {rel: verdicts.unbacked_claims(m["text"]) for rel, m in measured.items()}
    problems = {rel: ps for rel, ps in problems.items() if ps}
    assert not problems, _report(problems)


def _ids(path: Path, cache: dict) -> set:
    if path not in cache:
        cache[path] = set(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8")))
    return cache[path]


def test_internal_links_resolve():
    bad, ids = [], {}
    for path in _pages():
        for href in re.findall(r'href="([^"]+)"', path.read_text(encoding="utf-8")):
            if urlparse(href).scheme or href.startswith(("mailto:", "//")):
                continue
            target, _, anchor = href.partition("#")
            target = target.split("?")[0]
            dest = (path.parent / unquote(target)).resolve() if target else path
            if not dest.exists():
                bad.append(f"{_rel(path)} -> {href}")
            elif anchor and dest.suffix == ".html" and unquote(anchor) not in _ids(dest, ids):
                bad.append(f"{_rel(path)} -> {href} (no element with id {anchor!r})")
    assert not bad, "broken internal links:\n" + "\n".join(bad[:40])


def test_colab_links_point_at_the_committed_notebooks():
    pages = sorted((HTML / "notebooks").glob("*.html"))
    assert pages
    repo = urlparse(refseg_core.REPO_URL).path.strip("/")
    for path in pages:
        links = re.findall(
            r'href="(https://colab\.research\.google\.com/[^"]+)"', path.read_text(encoding="utf-8")
        )
        assert links, f"{path.name}: no Colab launch button"
        expected = (
            f"https://colab.research.google.com/github/{repo}/blob/{refseg_core.REPO_REF}/"
            f"notebooks/{path.stem}.ipynb"
        )
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
    for name in ("book/intro.html", "notebooks/02_metrics.html"):
        page, *_ = _open(browser, urljoin(server, name))
        page.screenshot(path=str(SHOTS / (Path(name).stem + ".png")), full_page=False)
        page.close()
        assert (SHOTS / (Path(name).stem + ".png")).stat().st_size > 10_000


def test_markdown_tables_in_outputs_are_rendered():
    """Tables printed with IPython.display.Markdown must become HTML tables, not pipes and dashes."""
    for path in sorted((HTML / "notebooks").glob("*.html")):
        text = path.read_text(encoding="utf-8")
        assert "|—|" not in text and "|–|" not in text, f"{path.name}: a Markdown table was printed as text"
