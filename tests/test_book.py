"""The book on the smoke profile: every chapter executed by papermill, the HTML built from those executed
copies, and every page opened in headless Chromium with its figures loaded and the results table present."""

import os
import shutil

import nbformat
import pytest

from openmed_repro.report import book
from openmed_repro.infra import config
from openmed_repro.errors import OpenMedError

from conftest import write_dapt_text

SCREENSHOTS = config.PROJECT_ROOT / "runs" / "ci" / "book-screenshots"


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
    settings = config.read_parameters("book.yaml")
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
    with pytest.raises(OpenMedError, match="known: smoke, cpu, paper"):
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
    evaluate = dict(book.plan("cpu", tmp_path)[1])["evaluate"]
    assert evaluate["runs"] == ["runs/finetune/ncbi_disease-minilm-l6-cpu-lora-seed42",
                                "runs/finetune/ncbi_disease-minilm-l6-cpu-lora-seed42-tuned",
                                "runs/baseline/ncbi_disease-cpu-crf-seed42"]
    assert book.run_reference({"chapter": "hpo", "dataset": "s800", "profile": "cpu", "n_trials": 20}) == \
        "runs/hpo/s800-minilm-l6-cpu"
