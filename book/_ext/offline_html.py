"""The built HTML reads offline, with a clean browser console.

MathJax from the book's own _static
-----------------------------------

Sphinx loads MathJax from a CDN by default (``mathjax_path``), so a reader
who opens the built book without a network sees raw TeX.  This extension
vendors a pinned MathJax at build time: the ``mathjax`` package of the npm
registry, version :data:`VERSION`, checked against the registry's SHA-512
integrity, unpacked once into a cache (``$CNNLIB_CACHE/mathjax-<version>``,
default ``~/.cache/cnnlib``) and copied into ``_build/html/_static/mathjax``.
Only what the book's pages can load is copied from its browser build
(``es5/``, :data:`KEEP`): the combined ``tex-mml-chtml.js`` (the component
Sphinx's CDN default loads), its CHTML fonts, the TeX extensions it loads on
demand, and the menu and accessibility modules (with the speech-rule engine)
a reader can switch on from its context menu: about 7 MB of the package's 24.

The first build downloads the 5 MB package from registry.npmjs.org; every
later build, and every reader of the HTML, needs no network.

Two console errors of the theme stack
-------------------------------------
The browser tests (browser_tests/) fail a page on any console error; two come
from the extensions Jupyter Book loads, not from the book, and are fixed here:

* sphinx-thebe and sphinx-togglebutton register their inline configuration
  scripts twice (once with filename None, once with ''), so every page
  declared ``const THEBE_JS_URL`` twice: "Identifier 'THEBE_JS_URL' has
  already been declared".  Repeated scripts are dropped from every page.
* On a reader's first visit (empty localStorage) sphinx-book-theme sets the
  colour mode to "" and pydata-sphinx-theme reports "Got invalid theme mode: .
  Resetting to auto." (pydata-sphinx-theme 0.15, see its issue #1635); a small
  inline script sets the empty mode to "auto" first, which is what the theme
  falls back to anyway.
"""

import base64
import hashlib
import io
import os
import pathlib
import shutil
import tarfile
import urllib.request

from sphinx.util import logging

VERSION = "3.2.2"
TARBALL = f"https://registry.npmjs.org/mathjax/-/mathjax-{VERSION}.tgz"
INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
SCRIPT = "tex-mml-chtml.js"   # the component Sphinx's CDN default loads
KEEP = (SCRIPT, "input/tex/extensions/", "output/chtml/fonts/", "adaptors/", "a11y/", "ui/", "sre/")

logger = logging.getLogger(__name__)


def cache_dir():
    root = os.environ.get("CNNLIB_CACHE") or pathlib.Path.home() / ".cache" / "cnnlib"
    return pathlib.Path(root) / f"mathjax-{VERSION}"


def _verified(data):
    algorithm, expected = INTEGRITY.split("-", 1)
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if got != expected:
        raise RuntimeError(f"{TARBALL}: {algorithm} is {got}, expected {expected}; not using it")
    return data


def fetch():
    """The folder holding ``mathjax/`` (MathJax's es5 build), downloading it the first time."""
    root = cache_dir()
    if (root / "mathjax" / SCRIPT).is_file():
        return root
    logger.info(f"offline_mathjax: downloading MathJax {VERSION} from {TARBALL}")
    with urllib.request.urlopen(TARBALL, timeout=120) as response:
        data = _verified(response.read())
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = []
        for member in archive.getmembers():
            rel = member.name[len("package/es5/"):] if member.name.startswith("package/es5/") else None
            if rel and member.isfile() and rel.startswith(KEEP):
                member.name = "mathjax/" + rel
                members.append(member)
        archive.extractall(staging, members=members, filter="data")
    if not (staging / "mathjax" / SCRIPT).is_file():
        raise RuntimeError(f"{TARBALL} has no es5/{SCRIPT}")
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)                       # all or nothing: no half-written cache
    return root


def _configure(app, config):
    config.mathjax_path = f"mathjax/{SCRIPT}"  # relative: resolved against _static
    config.html_static_path = [*config.html_static_path, str(fetch())]


def _drop_repeated_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        # an inline script is registered once with filename None and once with
        # '' (Sphinx's registry and builder), so compare without that difference
        key = (getattr(script, "filename", None) or "", getattr(script, "priority", None),
               tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


EMPTY_MODE_TO_AUTO = ('if (!document.documentElement.dataset.mode) '
                      '{ document.documentElement.dataset.mode = "auto"; }')


def setup(app):
    app.connect("config-inited", _configure, priority=900)
    app.add_js_file(None, body=EMPTY_MODE_TO_AUTO, priority=100)
    app.connect("html-page-context", _drop_repeated_scripts, priority=1000)  # after those that add scripts
    return {"version": VERSION, "parallel_read_safe": True, "parallel_write_safe": True}
