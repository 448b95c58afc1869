"""Fixtures of the browser tests: the built book served on 127.0.0.1, and Chromium.

    python -m pytest browser_tests [--site _build/html]

The site is served by Python's http.server from a thread, on a free port of
127.0.0.1.  Chromium is Debian's (``apt-get install chromium``; Playwright's
own browser download is not used), found as ``$CHROMIUM`` or ``chromium`` on
the PATH; without it, or without Playwright, the tests are skipped with that
reason.  Every request to another host is aborted and recorded, and fails the
page that made it: the book must read offline.
"""
import functools
import http.server
import os
import pathlib
import shutil
import sys
import threading
from urllib.parse import urlparse

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--site", default=str(ROOT / "_build" / "html"),
                     help="the built book to test (default _build/html)")


@pytest.fixture(scope="session")
def site_dir(request):
    site = pathlib.Path(request.config.getoption("--site")).resolve()
    if not (site / "index.html").is_file():
        pytest.fail(f"no built book in {site}: run jupyter-book build . first")
    return site


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a page closed while its images still load breaks the pipe: not an error of the book
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="session")
def base_url(site_dir):
    handler = functools.partial(_Quiet, directory=str(site_dir))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _chromium():
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no Chromium: apt-get install chromium (or set $CHROMIUM)")
    return path


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright is installed by requirements-test.txt")
    executable = _chromium()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


class PageLog:
    """What one page did wrong: console errors, page errors, failed and foreign requests."""

    def __init__(self):
        self.errors, self.failed, self.foreign = [], [], []

    def problems(self):
        return ([f"console error: {e}" for e in self.errors]
                + [f"failed request: {r}" for r in self.failed]
                + [f"request to another host (blocked): {r}" for r in self.foreign])


@pytest.fixture(scope="session")
def open_page(browser, base_url):
    """open_page(path, width, height) -> (page, PageLog): loaded, MathJax done; the caller closes it."""
    host = urlparse(base_url).netloc
    context = browser.new_context(service_workers="block")

    def _open(path, width=1280, height=900):
        log = PageLog()
        page = context.new_page()
        page.set_viewport_size({"width": width, "height": height})

        def route(route):
            if urlparse(route.request.url).netloc in (host, ""):
                route.continue_()
            else:
                log.foreign.append(route.request.url)
                route.abort()
        page.route("**/*", route)
        page.on("console", lambda m: m.type == "error" and log.errors.append(m.text))
        page.on("pageerror", lambda e: log.errors.append(str(e)))
        page.on("requestfailed", lambda r: urlparse(r.url).netloc == host
                and log.failed.append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and log.failed.append(f"{r.url} (HTTP {r.status})"))
        page.goto(f"{base_url}/{path}", wait_until="load")
        # MathJax typesets after load; wait for it where the page has it
        page.wait_for_function("() => !window.MathJax || (MathJax.startup && MathJax.startup.promise"
                               " && (MathJax.startup.promise.then(() => window.__typeset = true),"
                               " window.__typeset === true))", timeout=60_000)
        return page, log

    yield _open
    context.close()
