"""The Jupyter Book: execute every chapter notebook with papermill on one profile (parameters/book.yaml)
into runs/book/<profile>/, put the exact command that reproduces each chapter in its "Rerun this chapter"
box, and build HTML from those executed copies (jupyter-book never executes anything itself). With
`--no-execute` the book is rebuilt from the notebooks executed last time."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import yaml

from openmed_repro.infra import config, runs
from openmed_repro.errors import OpenMedError

BOOK_SOURCES = config.PROJECT_ROOT / "book"
NOTEBOOKS = config.PROJECT_ROOT / "notebooks"
KERNEL = "openmed-repro"
RERUN_BOX = re.compile(r"```\{admonition\} Rerun this chapter\n.*?```", re.DOTALL)


def plan(profile: str, out_dir: Path, overrides: dict | None = None
         ) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(supporting runs, chapters) as (notebook, parameters) for a profile, `{out}` in a value standing for
    `out_dir` and a `{chapter: ..., suffix: ...}` mapping for a default run directory (run_reference); each
    override applies to every notebook that has a parameter of that name."""
    book = config.read_parameters("book.yaml")
    if profile not in book["profiles"]:
        raise OpenMedError(f"parameter PROFILE: unknown book profile {profile!r}; known: {', '.join(book['profiles'])}")
    settings = book["profiles"][profile]
    supporting = [(entry["notebook"], _placed(entry["parameters"], out_dir)) for entry in settings.get("supporting", [])]
    chapters = [(name, _placed(settings.get(name, {}), out_dir)) for name in book["chapters"]
                if name not in settings.get("skip", [])]
    return [(name, _overridden(name, values, overrides or {})) for name, values in supporting], \
           [(name, _overridden(name, values, overrides or {})) for name, values in chapters]


def _placed(values, out_dir: Path):
    if isinstance(values, dict) and "chapter" in values:
        return run_reference(values)
    if isinstance(values, dict):
        return {key: _placed(value, out_dir) for key, value in values.items()}
    if isinstance(values, list):
        return [_placed(value, out_dir) for value in values]
    return values.replace("{out}", str(out_dir)) if isinstance(values, str) else values


def run_reference(reference: dict) -> str:
    """`{chapter: CHAPTER, suffix: SUFFIX, KEY: VALUE, ...}`: the default run directory of the chapter's
    parameters (what `openmed-repro run-dir CHAPTER KEY=VALUE ...` prints) with the suffix appended."""
    parameters = dict(reference)
    chapter, suffix = parameters.pop("chapter"), parameters.pop("suffix", "")
    return f"{runs.run_directory(chapter, parameters)}{suffix}"


def _overridden(notebook: str, values: dict, overrides: dict) -> dict:
    declared = papermill.inspect_notebook(str(NOTEBOOKS / f"{notebook}.ipynb"))
    return {**values, **{key: value for key, value in overrides.items() if key in declared}}


def rerun_command(notebook: str, parameters: dict) -> str:
    """The papermill command a reader pastes to rerun this chapter with these parameters."""
    words = ["papermill", f"notebooks/{notebook}.ipynb", f"runs/{notebook}.ipynb", "-k", KERNEL]
    for key, value in parameters.items():
        if isinstance(value, (list, dict)):
            words += ["-y", f"{key}: {yaml.safe_dump(value, default_flow_style=True, width=float('inf')).strip()}"]
        else:
            words += ["-p", key, str(value)]
    return shlex.join(words)


def execute(profile: str, out_dir: Path, overrides: dict | None = None) -> list[Path]:
    """Run the supporting notebooks, then every chapter; returns the executed chapter notebooks."""
    supporting, chapters = plan(profile, out_dir, overrides)
    for index, (name, parameters) in enumerate(supporting):
        _run(name, parameters, out_dir / "supporting" / f"{index}-{name}.ipynb")
    executed = []
    for name, parameters in chapters:
        target = out_dir / "chapters" / f"{name}.ipynb"
        _run(name, parameters, target)
        _write_rerun_box(target, rerun_command(name, parameters))
        executed.append(target)
    return executed


def _run(name: str, parameters: dict, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"executing {name}: {rerun_command(name, parameters)}", flush=True)
    try:
        papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(target), parameters=parameters,
                                   kernel_name=KERNEL, cwd=str(config.PROJECT_ROOT), progress_bar=False)
    except papermill.PapermillExecutionError as error:
        raise OpenMedError(f"chapter {name} failed; the executed copy with the error is {target}:\n"
                           f"{error.ename}: {error.evalue}") from error


def _write_rerun_box(path: Path, command: str) -> None:
    notebook = nbformat.read(path, as_version=4)
    title = notebook.cells[0]
    box = f"```{{admonition}} Rerun this chapter\n{command}\n```"
    title.source = RERUN_BOX.sub(lambda _: box, title.source) if RERUN_BOX.search(title.source) \
        else f"{title.source}\n\n{box}"
    nbformat.write(notebook, path)


def build(profile: str, out_dir: Path) -> Path:
    """HTML from the executed chapters (book/ sources copied beside them); returns the index page."""
    chapters = out_dir / "chapters"
    missing = [name for name, _ in plan(profile, out_dir)[1] if not (chapters / f"{name}.ipynb").is_file()]
    if missing:
        raise OpenMedError(f"{chapters}: no executed {', '.join(missing)}; run `make book PROFILE={profile}` "
                           "without NO_EXECUTE first")
    source = out_dir / "source"
    if source.exists():
        shutil.rmtree(source)
    shutil.copytree(BOOK_SOURCES, source)
    names = [name for name, _ in plan(profile, out_dir)[1]]
    for name in names:
        shutil.copy2(chapters / f"{name}.ipynb", source / f"{name}.ipynb")
    (source / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "intro",
                                                     "chapters": [{"file": name} for name in names]}, sort_keys=False))
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(source), "--path-output", str(out_dir),
               "--warningiserror", "--keep-going"]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise OpenMedError(f"jupyter-book build failed ({' '.join(command)}):\n{(finished.stdout + finished.stderr)[-4000:]}")
    return out_dir / "_build" / "html" / "index.html"


def check_in_browser(html_dir: Path, screenshots: Path, chromium: str | None = None) -> dict[str, dict]:
    """Serve the built HTML on 127.0.0.1 and open every chapter in headless Chromium: each page must have
    its title, every image loaded with a non-zero size, and the results page its table. Screenshots of the
    index and results pages go to `screenshots`. Returns what was seen per page; raises on any failure."""
    import functools
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    browser_path = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser_path:
        raise OpenMedError("no chromium on PATH (Debian: apt-get install chromium)")
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    pages = ["intro", *[path.stem for path in sorted(html_dir.glob("*.html"))
                        if path.stem in config.read_parameters("book.yaml")["chapters"]]]
    seen, failures = {}, []
    screenshots.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            for name in pages:
                response = page.goto(f"{base}/{name}.html", wait_until="load")
                page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=30_000)
                facts = page.evaluate("""() => ({
                    title: (document.querySelector('main h1, article h1, h1') || {}).textContent || '',
                    images: Array.from(document.images).filter(i => i.closest('.cell_output, .output'))
                                 .map(i => [i.naturalWidth, i.naturalHeight]),
                    tables: document.querySelectorAll('main table, article table').length,
                    text: (document.body || document.documentElement).innerText.length})""")
                facts["status"] = response.status if response else None
                seen[name] = facts
                if facts["status"] != 200 or not facts["title"].strip():
                    failures.append(f"{name}: status {facts['status']}, title {facts['title']!r}")
                broken = [size for size in facts["images"] if not (size[0] > 0 and size[1] > 0)]
                if broken:
                    failures.append(f"{name}: {len(broken)} of {len(facts['images'])} figures did not load")
                if name in ("intro", "results"):   # intro is the book's front page (index.html redirects to it)
                    page.screenshot(path=str(screenshots / f"{'index' if name == 'intro' else name}.png"), full_page=True)
            browser.close()
    finally:
        server.shutdown()
    book = config.read_parameters("book.yaml")
    for name in set(book["chapters"]) - set(book.get("without_figures", [])):
        if name in seen and not seen[name]["images"]:
            failures.append(f"{name}: no figure on the page")
    if "results" in seen and not seen["results"]["tables"]:
        failures.append("results: no table on the page")
    if failures:
        raise OpenMedError("book check in Chromium failed:\n" + "\n".join(failures))
    return seen
