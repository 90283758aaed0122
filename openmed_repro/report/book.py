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
from collections.abc import Iterable
from pathlib import Path

import nbformat
import papermill
import yaml

from openmed_repro.infra import atomic_files, layout, paths, runs
from openmed_repro.errors import OpenMedError

BOOK_SOURCES = paths.PROJECT_ROOT / "book"
NOTEBOOKS = paths.PROJECT_ROOT / "notebooks"
KERNEL = "openmed-repro"
NOT_RECORDED = "not-recorded.json"   # the chapters shown without results, and what they lack
RERUN_BOX = re.compile(r"```\{admonition\} Rerun this chapter\n.*?```", re.DOTALL)


class RecordPath(str):
    """A parameter value that names something in the record (results/): the chapter needs it to exist."""


def plan(profile: str, out_dir: Path, overrides: dict | None = None
         ) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(supporting runs, chapters) as (notebook, parameters) for a profile, `{out}` in a value standing for
    `out_dir`, a `{chapter: ..., suffix: ...}` mapping for a default run directory (run_reference) and a
    `{record: ...}` or `{recorded: PATH}` mapping for a run or file of the record (a RecordPath); each override
    applies to every notebook that has a parameter of that name."""
    book = paths.read_parameters("book.yaml")
    if profile not in book["profiles"]:
        raise OpenMedError(f"parameter PROFILE: unknown book profile {profile!r}; known: {', '.join(book['profiles'])}")
    settings = book["profiles"][profile]
    supporting = [(entry["notebook"], _placed(entry["parameters"], out_dir)) for entry in settings.get("supporting", [])]
    chapters = [(name, _placed(settings.get(name, {}), out_dir)) for name in book["chapters"]
                if name not in settings.get("skip", [])]
    return [(name, _overridden(name, values, overrides or {})) for name, values in supporting], \
           [(name, _overridden(name, values, overrides or {})) for name, values in chapters]


def _placed(values, out_dir: Path):
    if isinstance(values, dict) and "layout" in values:
        return layout_reference(values)
    if isinstance(values, dict) and "chapter" in values:
        return run_reference(values)
    if isinstance(values, dict) and "record" in values:
        return RecordPath(record_reference(values))
    if isinstance(values, dict) and "recorded" in values:
        return RecordPath(f"{layout.LAYOUT.record.name}/{values['recorded']}")
    if isinstance(values, dict):
        return {key: _placed(value, out_dir) for key, value in values.items()}
    if isinstance(values, list):
        return [_placed(value, out_dir) for value in values]
    return values.replace("{out}", str(out_dir)) if isinstance(values, str) else values


def run_reference(reference: dict) -> str:
    """`{chapter: CHAPTER, tuned: true, KEY: VALUE, ...}`: the default run directory of the chapter's
    parameters (what `openmed-repro run-dir CHAPTER KEY=VALUE ...` prints), or its tuned twin."""
    parameters = dict(reference)
    chapter, tuned = parameters.pop("chapter"), parameters.pop("tuned", False)
    directory = layout.run_directory(chapter, parameters)
    return str(layout.LAYOUT.tuned(directory) if tuned else directory)


def layout_reference(reference: dict) -> str:
    """`{layout: runs}` or `{layout: record}` (with `file: PATH` inside it): a root of the layout, as the
    repository names it (runs, results)."""
    roots = {"runs": layout.LAYOUT.runs.as_posix(), "record": layout.LAYOUT.record.name}
    if reference["layout"] not in roots:
        raise OpenMedError(f"parameters/book.yaml: layout {reference['layout']!r}; valid: {', '.join(roots)}")
    return f"{roots[reference['layout']]}/{reference['file']}" if reference.get("file") else roots[reference["layout"]]


def record_reference(reference: dict) -> str:
    """`{record: CHAPTER, KEY: VALUE, ...}`: where the record keeps the run those parameters name
    (results/<chapter>/<name>, the name of its default run directory)."""
    parameters = dict(reference)
    chapter = parameters.pop("record")
    return f"{layout.LAYOUT.record.name}/{layout.run_directory(chapter, parameters).relative_to(layout.LAYOUT.runs)}"


def not_recorded(parameters: dict) -> tuple[dict, list[str]]:
    """The parameters with every record reference made a plain string, and the references the record lacks.
    A list of runs loses its missing ones (the chapter compares those that are there) and counts as missing
    when fewer than two are left."""
    missing = []

    def present(value) -> bool:
        path = paths.PROJECT_ROOT / value
        return path.is_file() or (path / runs.METRICS).is_file() or (path / layout.LAYOUT.search_summary).is_file()

    def plain(value):
        if isinstance(value, RecordPath):
            if not present(value):
                missing.append(str(value))
            return str(value)
        if isinstance(value, list) and any(isinstance(item, RecordPath) for item in value):
            kept = [str(item) for item in value if not isinstance(item, RecordPath) or present(item)]
            if len(kept) < 2:
                missing.append(f"two of {', '.join(map(str, value))}")
            return kept
        return value

    return {key: plain(value) for key, value in parameters.items()}, missing


def _overridden(notebook: str, values: dict, overrides: dict) -> dict:
    declared = papermill.inspect_notebook(str(NOTEBOOKS / f"{notebook}.ipynb"))
    return {**values, **{key: value for key, value in overrides.items() if key in declared}}


def rerun_command(notebook: str, parameters: dict) -> str:
    """The papermill command a reader pastes to rerun this chapter with these parameters; a run read from the
    record is rerun into its default directory under runs/ (never into the record)."""
    words = ["papermill", f"notebooks/{notebook}.ipynb", (layout.LAYOUT.runs / f"{notebook}.ipynb").as_posix(), "-k", KERNEL]
    for key, value in parameters.items():
        if key == "output_dir" and layout.LAYOUT.in_record(paths.PROJECT_ROOT / str(value)):
            continue
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
    executed, stubs = [], {}
    for name, parameters in chapters:
        target = out_dir / "chapters" / f"{name}.ipynb"
        parameters, missing = not_recorded(parameters)
        if missing:
            produced_by = paths.read_parameters("book.yaml")["profiles"][profile].get("not_recorded", {})
            _write_not_recorded_page(name, missing, produced_by.get(name), target)
            stubs[name] = missing
        else:
            _run(name, parameters, target)
        _write_rerun_box(target, rerun_command(name, parameters))
        executed.append(target)
    atomic_files.write_json(out_dir / "chapters" / NOT_RECORDED, stubs)
    return executed


def _write_not_recorded_page(name: str, missing: list[str], command: str | None, target: Path) -> None:
    """The chapter's title and introduction, then what the record lacks and the command that makes it."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    make = f"`{command}`, then `make record`" if command else "its rerun command below, then `make record`"
    note = nbformat.v4.new_markdown_cell(
        "```{admonition} Not in the record yet\n:class: warning\n"
        f"This chapter reads {', '.join(f'`{m}`' for m in missing)}, which the record (`results/`) does not hold "
        f"yet, so it shows no result. Make it with {make}, and rebuild the book with `make book`.\n```")
    stub = nbformat.v4.new_notebook(cells=[notebook.cells[0], note], metadata=notebook.metadata)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(stub, target)


def _run(name: str, parameters: dict, target: Path) -> None:
    print(f"executing {name}: {rerun_command(name, parameters)}", flush=True)
    execute_chapter(NOTEBOOKS / f"{name}.ipynb", target, parameters, cwd=paths.PROJECT_ROOT)


def execute_chapter(notebook: Path, target: Path, parameters: dict, kernel: str = KERNEL, cwd: Path | None = None,
                    log_output: bool = False) -> None:
    """Execute a chapter with papermill into `target`. A failed cell becomes one line, the chapter's own message
    last (a project error names what is wrong and how to fix it), with the executed notebook named for the full
    story, instead of papermill's traceback around it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(notebook), str(target), parameters=parameters, kernel_name=kernel,
                                   cwd=str(cwd) if cwd else None, progress_bar=False, log_output=log_output)
    except papermill.PapermillExecutionError as error:
        own = error.ename == OpenMedError.__name__
        raise OpenMedError(f"{Path(notebook).stem} failed (the executed notebook: {target}): "
                           + (error.evalue if own else f"{error.ename}: {error.evalue}")) from None


def _write_rerun_box(path: Path, command: str) -> None:
    notebook = nbformat.read(path, as_version=4)
    title = notebook.cells[0]
    box = f"```{{admonition}} Rerun this chapter\n{command}\n```"
    title.source = RERUN_BOX.sub(lambda _: box, title.source) if RERUN_BOX.search(title.source) \
        else f"{title.source}\n\n{box}"
    nbformat.write(notebook, path)


def build(profile: str, out_dir: Path, verify_dir: Path = layout.LAYOUT.folder(layout.LAYOUT.verify)) -> Path:
    """HTML from the executed chapters (book/ sources copied beside them), shown as a report (as_report), with
    a "Your rerun" section in each chapter that `openmed-repro verify` judged (its verdict.json under
    `verify_dir`) and the scorecard on the first page; returns the index page."""
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
        notebook = as_report(nbformat.read(chapters / f"{name}.ipynb", as_version=4))
        verdict = verify_dir / name / "verdict.json"
        if verdict.is_file():
            notebook.cells += your_rerun(verdict)
        nbformat.write(notebook, source / f"{name}.ipynb")
    (source / "intro.md").write_text(with_scorecard((source / "intro.md").read_text(), scorecard_of(profile)))
    (source / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "intro",
                                                     "chapters": [{"file": name} for name in names]}, sort_keys=False))
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(source), "--path-output", str(out_dir),
               "--warningiserror", "--keep-going"]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise OpenMedError(f"jupyter-book build failed ({' '.join(command)}):\n{(finished.stdout + finished.stderr)[-4000:]}")
    return out_dir / "_build" / "html" / "index.html"


def recorded_corpora(results: Path | None = None) -> list[str]:
    """Every corpus with a recorded fine-tuning run of its profile's current recipe (what Table 4 shows; a record
    of a recipe since changed waits for its rerun): the results page must show each one measured."""
    results = layout.LAYOUT.record if results is None else Path(results)
    return sorted({Path(atomic_files.read_json(path)["dataset"]).name for path in (results / "finetune").glob(f"*/{runs.METRICS}")
                   if runs.follows_its_profile(path.parent)})


def _measured(cells: list[str]) -> bool:
    return any(re.fullmatch(r"-?\d+\.\d+( ± \d+\.\d+)?( \(\d+\))?", cell) for cell in cells) \
        and not any(cell == "not run" for cell in cells)


NO_VALUE = re.compile(r"(<td[^>]*>)\s*(NaN|nan|None|&lt;NA&gt;|NaT)\s*(</td>)")


def as_report(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The executed chapter as a reader sees it: no parameters cells (papermill's injected one included), code
    folded away behind a toggle, no stderr (progress bars, warnings), and a dash in a table cell with no value."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        tags.append("remove-cell" if {"parameters", "injected-parameters"} & set(tags) else "hide-input")
        cell.outputs = [output for output in cell.get("outputs", [])
                        if not (output.output_type == "stream" and output.get("name") == "stderr")]
        for output in cell.outputs:
            html = output.get("data", {}).get("text/html")
            if html:
                output["data"]["text/html"] = NO_VALUE.sub(r"\1–\3", html if isinstance(html, str) else "".join(html))
    return notebook


def your_rerun(verdict_path: Path) -> list[nbformat.NotebookNode]:
    """The "Your rerun" section: `openmed-repro verify`'s verdict on this chapter's recorded runs."""
    from openmed_repro.report import verify

    payload = atomic_files.read_json(verdict_path)
    machines = sorted({(run.get("machines") or {}).get("rerun", {}).get("cpu") or "?" for run in payload["runs"]})
    text = (f"## Your rerun\n\n`openmed-repro verify` reran {len(payload['runs'])} recorded run(s) of this chapter "
            f"from scratch on {', '.join(machines)} and judged each headline figure against the record "
            f"(`{verdict_path}`):\n\n" + verify.table(payload).to_markdown(index=False))
    return [nbformat.v4.new_markdown_cell(text)]


def scorecard_of(profile: str) -> str | None:
    """The scorecard of the paper's claims, for a book that reads the record (None for any other)."""
    if not reads_record(profile):
        return None
    from openmed_repro.report import audit, scorecard

    checked = audit.audit(layout.LAYOUT.record)
    verdict = (f"**The record's audit** (`make audit`): {checked.verdict()}."
               + ("" if checked.passed else " The figures below come from a record that fails it."))
    return verdict + "\n\n" + scorecard.markdown(layout.LAYOUT.record)


def with_scorecard(intro: str, card: str | None) -> str:
    """The first page with the scorecard right under its title."""
    if card is None:
        return intro
    title, _, rest = intro.partition("\n")
    return f"{title}\n\n{card}\n{rest}"


def reads_record(profile: str) -> bool:
    return bool(paths.read_parameters("book.yaml")["profiles"][profile].get("reads_record"))


def check_in_browser(html_dir: Path, screenshots: Path, chromium: str | None = None,
                     without_results: Iterable[str] = (), measured_corpora: Iterable[str] = ()) -> dict[str, dict]:
    """Serve the built HTML on 127.0.0.1 and open every chapter in headless Chromium: each page must have
    its title, every image loaded with a non-zero size, a figure on every chapter page but those
    `without_results` (not in the record yet) and book.yaml's `without_figures`, and the results page its
    table with a measured row (a number, not "not run") for every one of `measured_corpora`. Screenshots of
    the index and results pages go to `screenshots`. Returns what was seen per page; raises on any failure."""
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
                        if path.stem in paths.read_parameters("book.yaml")["chapters"]]]
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
                    rows: Array.from(document.querySelectorAll('main table tr, article table tr'))
                              .map(r => Array.from(r.cells).map(c => c.innerText.trim())),
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
    book = paths.read_parameters("book.yaml")
    for name in set(book["chapters"]) - set(book.get("without_figures", [])) - set(without_results):
        if name in seen and not seen[name]["images"]:
            failures.append(f"{name}: no figure on the page")
    if "results" in seen and not seen["results"]["tables"]:
        failures.append("results: no table on the page")
    rows = seen.get("results", {}).get("rows", [])
    for corpus in measured_corpora:
        if not any(row and row[0] == corpus and _measured(row[1:]) for row in rows):
            failures.append(f"results: no measured row for {corpus}, which the record holds")
    if failures:
        raise OpenMedError("book check in Chromium failed:\n" + "\n".join(failures))
    return seen
