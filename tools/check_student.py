"""Check the student edition: every exercise is there, no solution is.

    python tools/check_student.py [_build/html] [_build/student/html]

Compares the reader edition (built by ``jupyter-book build .``) with the
student edition (built by ``python tools/build_student.py``):

1. the same exercises, by id, on the same pages (sphinx-exercise's
   ``div.exercise``), and at least one;
2. no solution in the student edition's pages: no ``div.solution``, and none of
   the solutions' own text.  For each solution of the reader edition the text
   of its paragraphs, list items and code lines is split into chunks; a chunk
   of 30 characters or more that appears nowhere in the reader edition outside
   the solutions is *distinctive*.  Every solution must have one (otherwise
   this check could not see it leak), and no distinctive chunk may appear in
   any file of the student edition: the HTML pages (as text), the search
   index and every other text file;
3. nothing to download that holds the chapters: no ``.ipynb`` or page source
   (``_sources/``) in the student edition.

Exits 1, listing what it found, when a check fails.
"""
import pathlib
import re
import sys
from collections import Counter

from bs4 import BeautifulSoup

ROOT = pathlib.Path(__file__).resolve().parent.parent
MIN_CHUNK = 30
TEXT_SUFFIXES = {".html", ".js", ".txt", ".json", ".md", ".ipynb", ".py", ".css", ".xml"}


def normal(text):
    return re.sub(r"\s+", " ", text).strip()


def pages(site):
    """{relative path: BeautifulSoup} of every HTML page under ``site``."""
    return {str(p.relative_to(site)): BeautifulSoup(p.read_text(encoding="utf-8"), "html.parser")
            for p in sorted(site.rglob("*.html"))}


def article(soup):
    """The page's main content (the theme's article), or the whole page."""
    return soup.find("article") or soup


def exercises(site_pages):
    return Counter((page, div.get("id")) for page, soup in site_pages.items()
                   for div in article(soup).find_all("div", class_="exercise"))


def chunks(solution):
    """Text pieces of one solution div: paragraphs, list items and code lines (its title left out)."""
    out = []
    for title in solution.find_all(class_="admonition-title"):
        title.decompose()
    for element in solution.find_all(["p", "li", "pre", "td"]):
        text = element.get_text("\n" if element.name == "pre" else " ")
        pieces = text.splitlines() if element.name == "pre" else re.split(r"(?<=[.;:!?])\s+", text)
        out += [normal(piece) for piece in pieces]
    return [c for c in out if len(c) >= MIN_CHUNK]


def main(reader_dir, student_dir):
    reader_dir, student_dir = pathlib.Path(reader_dir), pathlib.Path(student_dir)
    for site in (reader_dir, student_dir):
        if not (site / "index.html").is_file():
            sys.exit(f"no built book in {site} (build it first, see README.md)")
    failures = []
    reader, student = pages(reader_dir), pages(student_dir)

    # 1. the exercises
    ex_reader, ex_student = exercises(reader), exercises(student)
    if not ex_reader:
        failures.append(f"no exercises found in {reader_dir}: the check would be empty")
    for key in sorted((ex_reader - ex_student).elements()):
        failures.append(f"exercise {key[1]} of {key[0]} is missing from the student edition")
    for key in sorted((ex_student - ex_reader).elements()):
        failures.append(f"exercise {key[1]} of {key[0]} is only in the student edition")

    # 2. the solutions: collect their distinctive text from the reader edition
    solutions, outside = [], []
    for page, soup in reader.items():
        body = article(soup)
        found = body.find_all("div", class_="solution")
        for div in found:
            div.extract()                       # what remains is the text outside the solutions
            solutions.append((page, div.get("id"), chunks(div)))
        outside.append(normal(body.get_text(" ")))
    outside_text = "\n".join(outside)
    distinctive = []
    for page, sid, texts in solutions:
        own = [t for t in texts if t not in outside_text]
        if not own:
            failures.append(f"solution {sid} of {page} has no text of its own to look for")
        distinctive += [(page, sid, t) for t in own]

    # ... and look for it in every text file of the student edition
    student_texts = {}
    for path in sorted(p for p in student_dir.rglob("*") if p.is_file()):
        rel = str(path.relative_to(student_dir))
        if path.suffix == ".ipynb" or rel.startswith("_sources/"):
            failures.append(f"student edition ships {rel}: a chapter with its solutions")
        if path.suffix not in TEXT_SUFFIXES:
            continue
        if path.suffix == ".html":
            soup = student[rel]
            if soup.find("div", class_="solution"):
                failures.append(f"{rel} contains a solution div")
            student_texts[rel] = normal(soup.get_text(" "))
        else:
            student_texts[rel] = normal(path.read_text(encoding="utf-8", errors="replace"))
    leaks = Counter()
    everything = "\n".join(student_texts.values())       # one search per piece, then find the file
    for page, sid, text in distinctive:
        if text in everything:
            rel = next(rel for rel, content in student_texts.items() if text in content)
            leaks[(page, sid, rel)] += 1
    for (page, sid, rel), n in sorted(leaks.items()):
        failures.append(f"text of solution {sid} ({page}) appears in the student edition's {rel}")

    n_ex = sum(ex_reader.values())
    print(f"student edition: {len(student)} pages; {sum(ex_student.values())} of {n_ex} exercises kept; "
          f"{len(solutions)} solutions in the reader edition, {len(distinctive)} distinctive text pieces "
          f"looked for in {len(student_texts)} files, {sum(leaks.values())} found")
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    args = sys.argv[1:] or [ROOT / "_build" / "html", ROOT / "_build" / "student" / "html"]
    if len(args) != 2:
        sys.exit(__doc__)
    sys.exit(main(*args))
