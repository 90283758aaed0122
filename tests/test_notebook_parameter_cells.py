"""Papermill warns "Passed unknown parameter" for any `-p` name its `parameters` cell does not assign; a
valid configuration field must not read as a typo, so every notebook's cell names every field it accepts."""

import dataclasses
import logging

import papermill
import pytest
from papermill.inspection import inspect_notebook

from openmed_repro.infra import config
from openmed_repro.report import notebook_parameters

NOTEBOOKS = config.PROJECT_ROOT / "notebooks"
ACCEPTED = {
    "finetune": ([config.RunConfig], notebook_parameters.FINETUNE_NOTEBOOK_KEYS),
    "dapt": ([config.DaptConfig], notebook_parameters.DAPT_NOTEBOOK_KEYS),
    "baseline": ([config.BaselineConfig], notebook_parameters.BASELINE_NOTEBOOK_KEYS),
    "hpo": ([config.RunConfig, config.SearchConfig], notebook_parameters.NOTEBOOK_KEYS),
    "evaluate": ([notebook_parameters.EvaluationSettings], set()),
    "results": ([notebook_parameters.ResultsSettings], set()),
    "footprint": ([notebook_parameters.FootprintSettings], set()),
    "data": ([notebook_parameters.DataSettings], set()),
    "released": ([config.ReleasedConfig, notebook_parameters.ReleasedChapterSettings], notebook_parameters.NOTEBOOK_KEYS),
}


def accepted(notebook: str) -> set[str]:
    kinds, notebook_keys = ACCEPTED[notebook]
    return {field.name for kind in kinds for field in dataclasses.fields(kind)} | notebook_keys


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
    monkeypatch.setenv(config.DAPT_DIR_ENV, str(tmp_path))
    cell = next(cell for cell in papermill.iorw.load_notebook_node(str(NOTEBOOKS / f"{notebook}.ipynb")).cells
                if "parameters" in cell.metadata.get("tags", []))
    namespace: dict = {}
    exec(cell.source, namespace)
    del namespace["__builtins__"]
    profile, dataset = namespace["profile"], {"dataset": namespace.get("dataset")}
    if notebook == "finetune":
        assert notebook_parameters.run_config(namespace)[0] == config.load_run_config(profile, dataset)
    elif notebook == "dapt":
        assert notebook_parameters.dapt_config(namespace)[0] == config.load_dapt_config(profile)
    elif notebook == "baseline":
        assert notebook_parameters.baseline_config(namespace)[0] == config.load_baseline_config(profile, dataset)
    else:
        run_config, search, _ = notebook_parameters.search_config(namespace)
        assert (run_config, search) == (config.load_run_config(profile, dataset), config.SearchConfig())
