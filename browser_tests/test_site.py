"""The built book in a real browser (headless Chromium), as a reader opens it.

Every page loads with no console error, no failed request and no request to
another host; every formula is typeset by MathJax, with no error; the search
page finds each chapter; every internal link and fragment resolves; and each
chapter is photographed at a laptop and a phone width (under
``_build/browser/screenshots``, for a person to look at).  What was checked is
written to ``_build/browser/summary.json``.
"""
import json
import pathlib
import re
from urllib.parse import unquote, urlparse

from bs4 import BeautifulSoup

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "_build" / "browser"
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "_sphinx_design_static"}
SUMMARY = {}


def html_pages(site):
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if not SKIP_DIRS & set(p.relative_to(site).parts[:-1]))


def chapters(site):
    return [p for p in html_pages(site) if p.startswith(("notebooks/", "book/")) and "/api/" not in p]


def record(key, value):
    SUMMARY[key] = value
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "summary.json").write_text(json.dumps(SUMMARY, indent=2, sort_keys=True))


MATH_STATE = """() => {
    const math = [...document.querySelectorAll('.math')];
    return {math: math.length,
            untypeset: math.filter(m => !m.querySelector('mjx-container')).length,
            containers: document.querySelectorAll('mjx-container').length,
            errors: document.querySelectorAll('mjx-merror, merror').length};
}"""


def test_every_page_loads_offline_and_typesets_its_math(site_dir, open_page):
    problems, formulas, pages = [], 0, html_pages(site_dir)
    for path in pages:
        page, log = open_page(path)
        state = page.evaluate(MATH_STATE)
        page.close()
        formulas += state["math"]
        problems += [f"{path}: {p}" for p in log.problems()]
        if state["untypeset"]:
            problems.append(f"{path}: {state['untypeset']} of {state['math']} formulas not typeset")
        if state["errors"]:
            problems.append(f"{path}: {state['errors']} MathJax errors")
    record("pages", len(pages))
    record("formulas", formulas)
    assert len(pages) > 100 and formulas > 1000, (len(pages), formulas)
    assert not problems, "\n".join(problems)


def _title_term(soup):
    """The longest word of a page's h1: a term the search must find the page by."""
    words = re.findall(r"[A-Za-z][A-Za-z-]{5,}", soup.find("h1").get_text(" "))
    return max(words, key=len)


def test_search_finds_every_chapter(site_dir, open_page):
    missing, searched = [], 0
    for path in chapters(site_dir):
        soup = BeautifulSoup((site_dir / path).read_text(encoding="utf-8"), "html.parser")
        if soup.find("h1") is None:
            continue
        term = _title_term(soup)
        page, log = open_page(f"search.html?q={term}")
        page.wait_for_function("() => { const s = document.querySelector('#search-results .search-summary');"
                               " return s && s.textContent.trim().length > 0; }", timeout=60_000)
        hrefs = page.eval_on_selector_all("#search-results ul.search li a",
                                          "links => links.map(a => a.getAttribute('href'))")
        page.close()
        searched += 1
        if not any(urlparse(h).path.lstrip("./").endswith(path) for h in hrefs):
            missing.append(f"searching {term!r} does not list {path} (found {len(hrefs)}: {hrefs[:5]})")
        missing += [f"search for {term!r}: {p}" for p in log.problems()]
    record("searches", searched)
    assert searched >= 20, searched
    assert not missing, "\n".join(missing)


def test_internal_links_resolve(site_dir):
    ids, broken, checked = {}, [], 0

    def anchors(rel):
        if rel not in ids:
            soup = BeautifulSoup((site_dir / rel).read_text(encoding="utf-8"), "html.parser")
            ids[rel] = {t.get("id") for t in soup.find_all(id=True)} | {t.get("name") for t in soup.find_all(attrs={"name": True})}
        return ids[rel]

    for rel in html_pages(site_dir):
        soup = BeautifulSoup((site_dir / rel).read_text(encoding="utf-8"), "html.parser")
        refs = [(t.name, t.get("href")) for t in soup.find_all(["a", "link"], href=True)]
        refs += [(t.name, t.get("src")) for t in soup.find_all(["img", "script"], src=True)]
        for tag, ref in refs:
            url = urlparse(ref)
            if url.scheme or url.netloc or ref.startswith(("mailto:", "javascript:")):
                continue
            checked += 1
            target = rel if not url.path else str(pathlib.PurePosixPath(rel).parent / unquote(url.path))
            target_path = (site_dir / target).resolve()
            if target_path.is_dir():
                target_path = target_path / "index.html"
            if not target_path.is_file():
                broken.append(f"{rel}: <{tag}> {ref} -> no file {target}")
                continue
            if url.fragment and target_path.suffix == ".html":
                if unquote(url.fragment) not in anchors(str(target_path.relative_to(site_dir))):
                    broken.append(f"{rel}: <{tag}> {ref} -> no id {url.fragment!r} in {target}")
    record("internal_links", checked)
    assert checked > 1000, checked
    assert not broken, "\n".join(broken[:50]) + f"\n({len(broken)} in all)"


def test_screenshots_of_every_chapter(site_dir, open_page):
    shots = OUT / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    taken = 0
    for path in chapters(site_dir):
        for name, (width, height) in {"laptop": (1366, 900), "phone": (390, 844)}.items():
            page, _ = open_page(path, width, height)
            target = shots / f"{path.replace('/', '_')[:-5]}-{name}.png"
            page.screenshot(path=str(target))
            page.close()
            assert target.stat().st_size > 5_000, f"{target} is nearly empty"
            taken += 1
    record("screenshots", taken)


EXPLORERS = """() => [...document.querySelectorAll('.cnnlib-explorer')].map(root => ({
    id: root.id, ready: root.dataset.ready === '1',
    controls: [...root.querySelectorAll('[data-control]')].map(c => ({
        name: c.dataset.control, tag: c.tagName.toLowerCase(), value: c.value,
        count: c.tagName === 'SELECT' ? c.options.length : parseInt(c.max, 10) + 1}))}))"""

PICTURE = """id => { const root = document.getElementById(id), img = root.querySelector('img');
    return {frame: root.dataset.frame, src: img.getAttribute('src') || '',
            shown: img.style.display !== 'none',
            decoded: img.complete && img.naturalWidth > 0,
            summary: root.querySelector('.cnnlib-explorer-summary').innerHTML}; }"""


def _set(page, explorer_id, control, index):
    target = page.locator(f"#{explorer_id} [data-control='{control['name']}']")
    if control["tag"] == "select":
        target.select_option(str(index))
    else:
        target.fill(str(index))   # sets the range's value and fires "input"


def test_every_static_explorer_responds(site_dir, open_page):
    """Each static explorer starts, and moving each of its controls through its values changes
    its picture: every picture shown decodes, and the summary follows."""
    pages = [p for p in chapters(site_dir)
             if 'class="cnnlib-explorer"' in (site_dir / p).read_text(encoding="utf-8")]
    problems, explorers, settings = [], 0, 0
    for path in pages:
        page, log = open_page(path)
        for explorer in page.evaluate(EXPLORERS):
            explorers += 1
            where = f"{path} {explorer['id']}"
            if not explorer["ready"]:
                problems.append(f"{where}: its script did not start")
                continue
            for control in explorer["controls"]:
                seen = set()
                for index in list(range(control["count"])) + [int(control["value"])]:
                    _set(page, explorer["id"], control, index)
                    state = page.evaluate(PICTURE, explorer["id"])
                    settings += 1
                    seen.add(state["src"])
                    if state["shown"] and not state["decoded"]:
                        problems.append(f"{where}: {control['name']} = option {index}: the "
                                        "picture does not decode")
                    if state["shown"] != bool(state["src"]) or not state["summary"]:
                        problems.append(f"{where}: {control['name']} = option {index}: "
                                        f"picture shown {state['shown']}, summary "
                                        f"{state['summary'][:40]!r}")
                if len(seen) < 2:
                    problems.append(f"{where}: moving {control['name']} through its "
                                    f"{control['count']} values never changes the picture")
        problems += [f"{path}: {p}" for p in log.problems()]
        page.close()
    record("explorer_pages", len(pages))
    record("explorers", explorers)
    record("explorer_settings_checked", settings)
    assert explorers >= 6, (explorers, pages)
    assert not problems, "\n".join(problems)


WEIGHT = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const res = performance.getEntriesByType('resource');
    return {html: nav.encodedBodySize, resources: res.length,
            total: nav.encodedBodySize + res.reduce((s, r) => s + r.encodedBodySize, 0)};
}"""


def test_page_weight(site_dir, open_page):
    """What a reader downloads to open each chapter (HTML and what it loads, uncompressed)."""
    weights = {}
    for path in chapters(site_dir):
        page, _ = open_page(path)
        page.wait_for_load_state("networkidle")
        weights[path] = page.evaluate(WEIGHT)
        page.close()
    largest = max(weights, key=lambda p: weights[p]["total"])
    record("largest_chapter", {"page": largest, **weights[largest]})
    record("chapter_weight_bytes", {p: w["total"] for p, w in sorted(weights.items())})
    # a sanity bound, not a budget: a page this heavy means something is embedded twice
    assert weights[largest]["total"] < 20_000_000, weights[largest]
