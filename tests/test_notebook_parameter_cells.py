"""Papermill warns "Passed unknown parameter" for any `-p` name its `parameters` cell does not assign; a
valid configuration field must not read as a typo, so every notebook's cell names every field it accepts."""

import logging

import papermill
import pytest
from papermill.inspection import inspect_notebook

from openmed_repro.infra import job_settings, paths
from openmed_repro.report import notebook_parameters

NOTEBOOKS = paths.PROJECT_ROOT / "notebooks"
ACCEPTED = notebook_parameters.CHAPTER_SETTINGS
accepted = notebook_parameters.accepted


def papermill_warnings(notebook: str, parameters: dict, tmp_path, caplog) -> list[str]:
    """What papermill warns while injecting `parameters` (prepare_only: the notebook is not executed)."""
    with caplog.at_level(logging.WARNING, logger="papermill"):
        papermill.execute_notebook(str(NOTEBOOKS / f"{notebook}.ipynb"), str(tmp_path / "prepared.ipynb"),
                                   parameters=parameters, prepare_only=True)
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize("notebook", sorted(ACCEPTED))
def test_every_parameters_cell_assigns_exactly_the_names_its_notebook_accepts(notebook):
    assigned = set(inspect_notebook(str(NOTEBOOKS / f"{notebook}.ipynb")))
    assert not accepted(notebook) - assigned, f"add to {notebook}.ipynb's parameters cell (`name = None`)"
    assert not assigned - accepted(notebook), f"{notebook}.ipynb's parameters cell assigns names nobody reads"


def parameters_source(notebook: str) -> str:
    return next(cell.source for cell in papermill.iorw.load_notebook_node(str(NOTEBOOKS / f"{notebook}.ipynb")).cells
                if "parameters" in cell.metadata.get("tags", []))


@pytest.mark.parametrize("notebook", notebook_parameters.GENERATED_CELLS)
def test_the_written_part_of_each_long_parameters_cell_is_the_settings_as_they_are(notebook):
    source = parameters_source(notebook)
    assert notebook_parameters.parameters_cell(notebook, source) == source, \
        f"{notebook}.ipynb: run `openmed-repro parameter-cells`"


def test_a_field_missing_from_a_written_cell_is_written_back_and_a_stale_one_dropped():
    source = parameters_source("finetune")
    cut = source.replace("\nlora_alpha = None", "") + "\nretired_field = None"
    rewritten = notebook_parameters.parameters_cell("finetune", cut)
    assert "lora_alpha = None" in rewritten and "retired_field" not in rewritten
    assert rewritten == source


def test_parameter_cells_check_names_an_out_of_date_notebook(monkeypatch, tmp_path, capsys):
    from openmed_repro import cli
    from openmed_repro.report import book

    for name in notebook_parameters.GENERATED_CELLS:
        (tmp_path / f"{name}.ipynb").write_bytes((NOTEBOOKS / f"{name}.ipynb").read_bytes())
    stale = tmp_path / "dapt.ipynb"
    stale.write_text(stale.read_text(encoding="utf-8").replace('"lora_r = None\\n",', ""), encoding="utf-8")
    monkeypatch.setattr(book, "NOTEBOOKS", tmp_path)
    assert cli.main(["parameter-cells", "--check"]) == 1
    assert f"{stale}: out of date" in capsys.readouterr().out
    assert cli.main(["parameter-cells"]) == 0 and cli.main(["parameter-cells", "--check"]) == 0
    assert (tmp_path / "dapt.ipynb").read_bytes() == (NOTEBOOKS / "dapt.ipynb").read_bytes()


@pytest.mark.parametrize("notebook, parameters", [
    ("finetune", {"max_train_sentences": 100, "epochs": 2, "learning_rate": 1e-3}),
    ("dapt", {"mlm_probability": 0.2, "save_steps": 5}),
    ("baseline", {"hidden_size": 50, "epochs": 2}),
    ("hpo", {"max_retry": 1, "lora_r": 8}),
])
def test_papermill_does_not_warn_about_a_valid_configuration_field(notebook, parameters, tmp_path, caplog):
    assert papermill_warnings(notebook, parameters, tmp_path, caplog) == []


def test_papermill_still_warns_about_a_misspelt_name(tmp_path, caplog):
    assert papermill_warnings("finetune", {"epoks": 2}, tmp_path, caplog) == ["Passed unknown parameter: epoks"]


@pytest.mark.parametrize("notebook", ["finetune", "dapt", "baseline", "hpo"])
def test_the_parameters_cell_as_written_gives_its_profile_unchanged(notebook, tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DAPT_DIR_ENV, str(tmp_path))
    cell = next(cell for cell in papermill.iorw.load_notebook_node(str(NOTEBOOKS / f"{notebook}.ipynb")).cells
                if "parameters" in cell.metadata.get("tags", []))
    namespace: dict = {}
    exec(cell.source, namespace)
    del namespace["__builtins__"]
    profile, dataset = namespace["profile"], {"dataset": namespace.get("dataset")}
    if notebook == "finetune":
        assert notebook_parameters.run_config(namespace)[0] == job_settings.load_run_config(profile, dataset)
    elif notebook == "dapt":
        assert notebook_parameters.dapt_config(namespace)[0] == job_settings.load_dapt_config(profile)
    elif notebook == "baseline":
        assert notebook_parameters.baseline_config(namespace)[0] == job_settings.load_baseline_config(profile, dataset)
    else:
        run_config, search, _ = notebook_parameters.search_config(namespace)
        assert (run_config, search) == (job_settings.load_run_config(profile, dataset), job_settings.SearchConfig())
