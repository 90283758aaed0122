"""The user's command, `papermill notebooks/finetune.ipynb OUT -p dataset ...`, on the smoke profile."""

import json

import papermill
import pytest

from openmed_repro.infra import paths
from openmed_repro.report import notebook_parameters
from openmed_repro.errors import OpenMedError

NOTEBOOK = paths.PROJECT_ROOT / "notebooks" / "finetune.ipynb"


def execute(tmp_path, **parameters):
    return papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "executed.ipynb"), parameters=parameters,
                                      cwd=str(tmp_path), progress_bar=False, kernel_name="python3")


def test_the_notebook_runs_end_to_end_on_the_smoke_profile(synthetic_corpus, tmp_path):
    executed = execute(tmp_path, dataset=str(synthetic_corpus), profile="smoke", output_dir=str(tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["profile"] == "smoke" and metrics["backbone"] == "tiny-random-bert"
    outputs = "".join(str(o) for cell in executed.cells for o in cell.get("outputs", []))
    assert "image/png" in outputs                         # the learning curve
    assert "profile **smoke**" in outputs                 # says which backbone and profile made the numbers


def test_an_unknown_notebook_parameter_stops_the_notebook_naming_it(synthetic_corpus, tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="unknown notebook parameter.*learning_rte"):
        execute(tmp_path, dataset=str(synthetic_corpus), profile="smoke", learning_rte=0.1)
    assert not (tmp_path / "runs").exists()


def test_a_project_error_shows_its_message_alone_in_the_notebook(synthetic_corpus, tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        execute(tmp_path, dataset=str(synthetic_corpus), profile="smoke", learning_rte=0.1)
    traceback = "\n".join(raised.value.traceback)
    assert "unknown notebook parameter(s) learning_rte" in traceback
    assert "notebook_parameters.py" not in traceback      # no frames through the library


def notebook_globals(**parameters) -> dict:
    defaults = {"dataset": "ncbi_disease", "profile": "smoke", "backbone": None, "method": None, "dapt_adapter": None, "data_dir": None,
                "output_dir": None, "seed": None}
    return {**defaults, **parameters}


@pytest.mark.parametrize("parameters, message", [
    ({"dataset": "ncbi"}, r"unknown dataset 'ncbi'"),
    ({"backbone": "bert-base"}, r"unknown backbone 'bert-base'"),
    ({"seed": "42"}, r"parameter seed must be int, got str '42'"),
    ({"epochs": -1}, r"parameter epochs=-1.0 must be positive"),
    ({"method": "qlora"}, r"parameter method='qlora'; valid: lora, full"),
    ({"output_dir": 3}, r"parameter output_dir must be a path string"),
])
def test_invalid_parameters_fail_before_any_work_naming_the_parameter(parameters, message):
    with pytest.raises(OpenMedError, match=message):
        notebook_parameters.run_config(notebook_globals(**parameters))


def test_a_dapt_adapter_directory_must_hold_an_adapter(tmp_path):
    with pytest.raises(OpenMedError, match="parameter dapt_adapter: .* holds no adapter_config.json"):
        notebook_parameters.run_config(notebook_globals(dapt_adapter=str(tmp_path)))


def test_parameters_tuned_on_a_smaller_budget_are_printed_as_a_warning(capsys):
    settings, _ = notebook_parameters.run_config({"dataset": "ncbi_disease", "profile": "cpu", "learning_rate": 1e-3,
                                                  "tuned_on": "the first 500 training sentences, at most 3 epochs"})
    assert settings.learning_rate == 1e-3
    warning = capsys.readouterr().out
    assert warning.startswith("Warning: these parameters were tuned on the first 500 training sentences")
