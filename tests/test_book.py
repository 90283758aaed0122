"""The book on the smoke profile: every chapter executed by papermill, the HTML built from those executed
copies, and every page opened in headless Chromium with its figures loaded and the results table present."""

import json
import os
import shutil

import nbformat
import pytest

from openmed_repro.report import book
from openmed_repro.infra import job_settings, paths
from openmed_repro.errors import OpenMedError

from conftest import write_dapt_text

SCREENSHOTS = paths.PROJECT_ROOT / "runs" / "ci" / "book-screenshots"


@pytest.fixture(scope="module")
def built(synthetic_corpus, tmp_path_factory):
    dapt_text = write_dapt_text(tmp_path_factory.mktemp("dapt_text"))
    out = tmp_path_factory.mktemp("book")
    with pytest.MonkeyPatch.context() as patch:   # no registered corpus: the chapters read only the synthetic one
        patch.setenv("OPENMED_DATA_DIR", str(tmp_path_factory.mktemp("no_corpora")))
        book.execute("smoke", out, {"dataset": str(synthetic_corpus), "dapt_dir": str(dapt_text)})
        index = book.build("smoke", out)
    return out, index


def chapters(profile="smoke"):
    settings = paths.read_parameters("book.yaml")
    return [name for name in settings["chapters"] if name not in settings["profiles"][profile].get("skip", [])]


def test_every_chapter_is_executed_and_its_rerun_box_holds_the_exact_command(built, synthetic_corpus):
    out, _ = built
    for name in chapters():
        title = nbformat.read(out / "chapters" / f"{name}.ipynb", as_version=4).cells[0].source
        assert f"papermill notebooks/{name}.ipynb" in title
    finetune_title = nbformat.read(out / "chapters" / "finetune.ipynb", as_version=4).cells[0].source
    assert f"-p dataset {synthetic_corpus}" in finetune_title and "-p profile smoke" in finetune_title


def test_the_book_is_html_built_from_the_executed_chapters(built):
    out, index = built
    assert index.is_file()
    for name in chapters():
        assert (index.parent / f"{name}.html").is_file()
    results_page = (index.parent / "results.html").read_text(encoding="utf-8")
    assert "ncbi_disease" in results_page and "not run here" in results_page


def test_rebuilding_without_executing_reuses_the_executed_chapters(built):
    out, index = built
    before = (out / "chapters" / "finetune.ipynb").stat().st_mtime_ns
    assert book.build("smoke", out) == index
    assert (out / "chapters" / "finetune.ipynb").stat().st_mtime_ns == before


def test_a_book_that_was_never_executed_cannot_be_built(tmp_path):
    with pytest.raises(OpenMedError, match="make book PROFILE=smoke"):
        book.build("smoke", tmp_path)


def test_an_unknown_book_profile_is_refused_naming_the_known_ones(tmp_path):
    with pytest.raises(OpenMedError, match="known: smoke, cpu, cpu-rerun, paper"):
        book.plan("laptop", tmp_path)


@pytest.mark.skipif(not (shutil.which("chromium") or os.environ.get("OPENMED_REQUIRE_CHROMIUM")),
                    reason="needs Debian's chromium (.ci/run installs it and sets OPENMED_REQUIRE_CHROMIUM)")
def test_every_page_renders_in_headless_chromium_with_its_figures_and_the_results_table(built):
    _, index = built
    seen = book.check_in_browser(index.parent, SCREENSHOTS)
    assert set(seen) == {"intro", *chapters()}
    assert all(width > 0 and height > 0 for page in seen.values() for width, height in page["images"])
    assert seen["results"]["tables"] >= 1 and seen["results"]["images"]
    assert (SCREENSHOTS / "index.png").stat().st_size > 0 and (SCREENSHOTS / "results.png").stat().st_size > 0


def test_a_rerun_command_with_a_long_list_stays_on_one_pasteable_line():
    runs = [f"runs/finetune/{'x' * 40}-{i}" for i in range(3)]
    command = book.rerun_command("evaluate", {"runs": runs, "trials": 1000})
    assert "\n" not in command
    assert command.endswith(f"-y 'runs: [{', '.join(runs)}]' -p trials 1000")


def test_the_book_names_default_runs_by_their_parameters_through_the_run_directory_function(tmp_path):
    evaluate = dict(book.plan("cpu-rerun", tmp_path)[1])["evaluate"]
    assert evaluate["runs"] == ["runs/finetune/ncbi_disease-minilm-l6-cpu-lora-seed42",
                                "runs/finetune/ncbi_disease-minilm-l6-cpu-lora-seed42-tuned",
                                "runs/baseline/ncbi_disease-cpu-crf-word2vec-dapt-seed42"]
    assert book.run_reference({"chapter": "hpo", "dataset": "s800", "profile": "cpu", "n_trials": 20}) == \
        "runs/hpo/s800-minilm-l6-cpu"


def test_the_default_book_reads_the_record_and_its_rerun_boxes_train_into_runs(tmp_path):
    chapters = dict(book.plan("cpu", tmp_path)[1])
    assert chapters["finetune"]["output_dir"] == "results/finetune/ncbi_disease-minilm-l6-cpu-lora-seed42"
    assert chapters["results"]["runs_dir"] == "results"
    assert "results/" not in book.rerun_command("finetune", chapters["finetune"])
    assert "output_dir" not in book.rerun_command("finetune", chapters["finetune"])


def test_a_chapter_whose_recorded_runs_are_missing_names_them_and_a_list_keeps_the_runs_that_are_there(tmp_path):
    present = tmp_path / "results" / "finetune" / "a"
    present.mkdir(parents=True)
    (present / "metrics.json").write_text("{}")
    reference = book.RecordPath
    parameters, missing = book.not_recorded({"output_dir": reference(tmp_path / "results" / "dapt" / "b"), "seed": 1})
    assert parameters == {"output_dir": str(tmp_path / "results" / "dapt" / "b"), "seed": 1}
    assert missing == [str(tmp_path / "results" / "dapt" / "b")]
    third = tmp_path / "results" / "finetune" / "c"
    third.mkdir()
    (third / "metrics.json").write_text("{}")
    kept, missing = book.not_recorded({"runs": [reference(present), reference(tmp_path / "gone"), reference(third)]})
    assert kept["runs"] == [str(present), str(third)] and missing == []
    _, missing = book.not_recorded({"runs": [reference(present), reference(tmp_path / "gone")]})
    assert missing[-1].startswith("two of ")


def test_a_chapter_not_in_the_record_is_a_page_saying_which_command_makes_it(tmp_path, monkeypatch):
    target = tmp_path / "dapt.ipynb"
    book._write_not_recorded_page("dapt", ["results/dapt/minilm-l6-cpu-seed42"], "make dapt", target)
    page = nbformat.read(target, as_version=4)
    assert page.cells[0].source.startswith("# ")
    assert "Not in the record yet" in page.cells[1].source and "`make dapt`, then `make record`" in page.cells[1].source


def test_the_report_hides_parameters_cells_code_and_stderr_and_shows_a_dash_for_no_value():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("dataset = 'x'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("dataset = 'y'", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("table", outputs=[
            nbformat.v4.new_output("stream", name="stderr", text="IProgress not found"),
            nbformat.v4.new_output("execute_result", data={"text/html": "<td>NaN</td><td>None</td><td>0.5</td>"})]),
    ])
    shown = book.as_report(notebook)
    assert "remove-cell" in shown.cells[0].metadata.tags and "remove-cell" in shown.cells[1].metadata.tags
    assert shown.cells[2].metadata.tags == ["hide-input"]
    assert len(shown.cells[2].outputs) == 1
    assert shown.cells[2].outputs[0]["data"]["text/html"] == "<td>–</td><td>–</td><td>0.5</td>"


def test_a_verdict_of_openmed_repro_verify_becomes_the_your_rerun_section(tmp_path):
    verdict = tmp_path / "verdict.json"
    verdict.write_text(json.dumps({"tolerances": {}, "runs": [{
        "name": "finetune/x", "verdict": "identical", "record_dir": "results/finetune/x", "rerun_dir": "runs/verify/x",
        "threads": 1, "machines": {"rerun": {"cpu": "Intel Xeon"}},
        "figures": [{"name": "test strict F1", "recorded": 0.8048, "rerun": 0.8048, "tolerance": "p >= 0.05",
                     "verdict": "identical"}]}]}))
    section = book.your_rerun(verdict)[0].source
    assert section.startswith("## Your rerun") and "Intel Xeon" in section
    row = next(line for line in section.splitlines() if "test strict F1" in line)
    assert [cell.strip() for cell in row.strip("|").split("|")] == \
        ["finetune/x", "test strict F1", "80.48", "80.48", "p >= 0.05", "identical"]


def test_a_measured_row_holds_a_figure_and_an_unrun_row_does_not():
    assert book._measured(["91.10", "80.48", "79.6-81.3"])
    assert book._measured(["91.10", "80.0 ± 1.2 (3)"])
    assert not book._measured(["91.10", "–", "not run"])


def test_every_run_the_recorded_book_shows_is_one_its_chapter_would_train_today():
    """A profile changed after a run was recorded (a new parameter, another value) makes the chapter refuse the
    recorded run when the book is built; caught here, without building. A chapter whose run is not recorded yet
    is a page saying so and has nothing to check."""
    from openmed_repro.infra import runs

    chapters = paths.read_parameters("book.yaml")["profiles"]["cpu"]
    loaders = {"finetune": job_settings.load_run_config, "baseline": job_settings.load_baseline_config}
    checked = []
    for chapter, load in loaders.items():
        parameters = chapters[chapter]
        recorded = paths.PROJECT_ROOT / book.record_reference(parameters["output_dir"])
        if (recorded / runs.METRICS).is_file():
            runs.claim(recorded, load(parameters["profile"], {"dataset": parameters["dataset"]}))
            checked.append(chapter)
    assert "finetune" in checked   # the main job is always in the record


def test_the_results_page_must_measure_each_corpus_whose_record_follows_its_profile_now(tmp_path):
    for name, rate in (("ncbi_disease-now", None), ("s800-before", 3e-3)):
        directory = tmp_path / "finetune" / name
        directory.mkdir(parents=True)
        dataset = name.split("-")[0]
        overrides = {"dataset": dataset} | ({"learning_rate": rate} if rate else {})
        (directory / "config.json").write_text(json.dumps(job_settings.load_run_config("cpu", overrides).to_dict()))
        (directory / "metrics.json").write_text(json.dumps({"dataset": dataset}))
    assert book.recorded_corpora(tmp_path) == ["ncbi_disease"]
