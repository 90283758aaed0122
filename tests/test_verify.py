"""A reviewer's verdict: a recorded smoke fine-tuning run is rerun from scratch and each headline figure is held
against the record; a tampered record is told apart; a chapter without a verifier is refused."""

import contextlib
import gzip
import io
import json
from pathlib import Path

import pytest

from openmed_repro import cli
from openmed_repro.data import saved_predictions
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, job_settings, run_provenance, runs
from openmed_repro.report import record, verify
from openmed_repro.training import baseline, finetune, rerun

RUN_NAME = "finetune/synthetic-smoke"
FEW = {"trials": 200, "samples": 200}


@pytest.fixture(scope="module")
def machine(tmp_path_factory) -> Path:
    """The machine: runs/ (the recorded run, later the reruns) and results/ (the record) side by side."""
    return tmp_path_factory.mktemp("machine")


@pytest.fixture(scope="module")
def results(machine, synthetic_corpus) -> Path:
    """The record of one finished smoke fine-tuning run."""
    finetune.run(job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus)}), machine / "runs" / RUN_NAME)
    outcome = record.record([machine / "runs" / RUN_NAME], machine / "results")
    assert not outcome.refused
    return machine / "results"


@pytest.fixture(scope="module")
def verified(machine, results, synthetic_corpus):
    """`openmed-repro verify finetune` on that record: its exit code, printed table and verdict.json."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["verify", "finetune", "--all", "--results", str(results), "--runs", str(machine / "runs"),
                         "--trials", "200", "--samples", "200", "--set", f"dataset={synthetic_corpus}"])
    return code, printed.getvalue(), atomic_files.read_json(machine / "runs" / "verify" / "finetune" / "verdict.json")


def tampered(results: Path, tmp_path: Path) -> Path:
    """A copy of the record whose every predicted test entity became O: the rerun cannot agree with it."""
    copy = tmp_path / "results" / RUN_NAME
    copy.parent.mkdir(parents=True)
    copy.mkdir()
    for path in (results / RUN_NAME).iterdir():
        copy.joinpath(path.name).write_bytes(path.read_bytes())
    payload = json.loads(gzip.decompress((copy / saved_predictions.RECORD_FILE).read_bytes()))
    tags = payload["splits"]["test"]["tags"]
    flipped = sum(tag != "O" for sentence in tags for tag in sentence)
    assert flipped > 10
    payload["splits"]["test"]["tags"] = [["O"] * len(sentence) for sentence in tags]
    (copy / saved_predictions.RECORD_FILE).write_bytes(gzip.compress(json.dumps(payload).encode(), mtime=0))
    return copy


def test_a_rerun_on_the_same_machine_and_threads_is_identical_in_every_figure(verified, machine):
    code, printed, verdict = verified
    assert code == 0
    [run] = verdict["runs"]
    assert run["name"] == RUN_NAME and run["verdict"] == "reproduced"
    figures = {figure["name"]: figure for figure in run["figures"]}
    assert figures["test strict F1"]["verdict"] == "identical"
    assert figures["test strict F1"]["rerun"] == figures["test strict F1"]["recorded"]
    recorded_f1 = atomic_files.read_json(machine / "results" / RUN_NAME / runs.METRICS)["test"]["strict"]["f1"]
    assert figures["test strict F1"]["recorded"] == pytest.approx(recorded_f1)
    assert run["threads"] == atomic_files.read_json(machine / "runs" / RUN_NAME / runs.PROVENANCE)["machine"]["threads"]


def test_the_verdict_json_holds_every_figure_with_tolerance_p_value_interval_and_both_machines(verified):
    _, _, verdict = verified
    [run] = verdict["runs"]
    assert run["machines"]["recorded"]["cpu"] == run["machines"]["rerun"]["cpu"] == run_provenance.cpu_model()
    f1 = next(figure for figure in run["figures"] if figure["name"] == "test strict F1")
    assert {"recorded", "rerun", "tolerance", "verdict", "p_value", "interval"} <= f1.keys()
    assert f1["p_value"] == 1.0 and f1["interval"][0] <= f1["recorded"] <= f1["interval"][1]
    energy = next(figure for figure in run["figures"] if figure["name"] == "energy kWh")
    assert not energy["counts"] and "same hardware" in energy["tolerance"]
    assert verdict["tolerances"]["alpha"] == 0.05


def test_the_rerun_is_trained_from_the_recorded_configuration_in_its_own_directory(verified, machine):
    rerun_dir = machine / "runs" / "verify" / RUN_NAME
    recorded_run = machine / "runs" / RUN_NAME
    assert (rerun_dir / runs.METRICS).is_file() and (rerun_dir / "model").is_dir()
    assert atomic_files.read_json(rerun_dir / runs.PROVENANCE)["created"] >= atomic_files.read_json(recorded_run / runs.PROVENANCE)["created"]
    assert atomic_files.read_json(rerun_dir / runs.CONFIG)["seed"] == atomic_files.read_json(recorded_run / runs.CONFIG)["seed"]


def test_the_printed_table_names_figure_recorded_rerun_tolerance_and_verdict(verified):
    _, printed, verdict = verified
    lines = printed.splitlines()
    header, *rows = lines[next(i for i, line in enumerate(lines) if line.split()[:2] == ["run", "figure"]):]
    print("\n".join([header, *rows]))
    assert header.split() == ["run", "figure", "recorded", "rerun", "tolerance", "verdict"]
    recorded = next(f["recorded"] for f in verdict["runs"][0]["figures"] if f["name"] == "test strict F1")
    f1_row = next(row for row in rows if "test strict F1" in row)
    assert f1_row.count(f"{100 * recorded:.2f}") == 2 and "identical test tags" in f1_row
    assert f1_row.split()[-1] == "identical"
    assert any("energy kWh" in row and "informational" in row for row in rows)
    assert rows[-1] == f"verdict: {Path(verdict['runs'][0]['rerun_dir']).parent / 'verdict.json'}"
    assert lines[0].startswith("verify finetune: 1 run(s) to rerun on ") and "synthetic-smoke: trained" in lines[1]


def test_a_finished_rerun_is_read_back_and_fresh_trains_it_again(verified, machine, results, synthetic_corpus,
                                                                  monkeypatch):
    trained = []
    original = rerun.CHAPTERS["finetune"]
    monkeypatch.setitem(rerun.CHAPTERS, "finetune", rerun.Chapter(
        original.settings, lambda settings, run_dir: trained.append(run_dir) or original.run(settings, run_dir)))
    created = atomic_files.read_json(machine / "runs" / "verify" / RUN_NAME / runs.PROVENANCE)["created"]
    [again] = cli.verify_chapter("finetune", results, machine / "runs", every=True,
                            overrides={"dataset": str(synthetic_corpus)}, say=lambda line: None, **FEW)
    assert again.verdict == "reproduced"
    assert atomic_files.read_json(machine / "runs" / "verify" / RUN_NAME / runs.PROVENANCE)["created"] == created
    cli.verify_chapter("finetune", results, machine / "runs", every=True, fresh=True,
                       overrides={"dataset": str(synthetic_corpus)}, say=lambda line: None, **FEW)
    assert (machine / "runs" / "verify" / RUN_NAME / "model").is_dir() and len(trained) == 2


def test_by_default_verify_reruns_the_run_the_chapters_page_shows():
    assert verify.page_run("finetune") == "ncbi_disease-minilm-l6-cpu-lora-seed42"
    assert verify.page_run("dapt") == "minilm-l6-cpu-seed42"


def test_a_record_that_fails_its_audit_is_not_used_to_judge_a_rerun(results, synthetic_corpus, tmp_path):
    copy = tmp_path / "results"
    import shutil
    shutil.copytree(results, copy)
    tampered_metrics = copy / RUN_NAME / runs.METRICS
    stated = atomic_files.read_json(tampered_metrics)
    atomic_files.write_json(tampered_metrics, {**stated, "test": {**stated["test"], "strict": {**stated["test"]["strict"],
                                                                                      "f1": 0.99}}})
    with pytest.raises(OpenMedError, match="the record fails its audit, so no rerun is judged against it: .*metrics.json"):
        cli.verify_chapter("finetune", copy, tmp_path / "runs", every=True,
                           overrides={"dataset": str(synthetic_corpus)}, say=lambda line: None, **FEW)
    assert not (tmp_path / "runs").exists(), "nothing was trained"


def test_a_tampered_record_is_told_apart_by_the_statistical_tolerance(verified, machine, results, synthetic_corpus,
                                                                    tmp_path):
    copy = tampered(results, tmp_path)
    judged = verify.compare("finetune", copy, machine / "runs" / "verify" / RUN_NAME, RUN_NAME, 1,
                            dataset=synthetic_corpus, **FEW)
    f1 = judged.figures[0]
    assert f1.name == "test strict F1" and f1.verdict == "differs" and judged.verdict == "differs"
    assert f1.recorded == 0.0 and f1.rerun > 0
    assert f1.p_value < 0.05 and "AR test" in f1.tolerance and "bootstrap 95% interval" in f1.tolerance


def test_a_few_changed_tags_are_reproduced_not_identical(verified, machine, results, synthetic_corpus, tmp_path):
    copy = tmp_path / "results" / RUN_NAME
    copy.mkdir(parents=True)
    for path in (results / RUN_NAME).iterdir():
        copy.joinpath(path.name).write_bytes(path.read_bytes())
    payload = json.loads(gzip.decompress((copy / saved_predictions.RECORD_FILE).read_bytes()))
    first = payload["splits"]["test"]["tags"][0]
    first[-1] = "O" if first[-1] != "O" else "B-Disease"   # one tag of one sentence
    (copy / saved_predictions.RECORD_FILE).write_bytes(gzip.compress(json.dumps(payload).encode(), mtime=0))
    f1 = verify.compare("finetune", copy, machine / "runs" / "verify" / RUN_NAME, RUN_NAME, 1,
                        dataset=synthetic_corpus, **FEW).figures[0]
    assert f1.verdict == "reproduced" and f1.p_value >= 0.05


def test_a_chapter_without_a_verifier_is_refused_naming_the_ones_that_exist(tmp_path, capsys):
    assert cli.main(["verify", "hpo", "--results", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "'hpo'" in error and "finetune, baseline, dapt" in error
    with pytest.raises(OpenMedError, match="finetune, baseline, dapt"):
        cli.verify_chapter("all-corpora", tmp_path, tmp_path)


def test_every_chapter_verify_judges_is_one_the_training_runner_can_rerun():
    assert list(verify.CHAPTERS) == list(rerun.CHAPTERS) == ["finetune", "baseline", "dapt"]
    with pytest.raises(OpenMedError, match="finetune, baseline, dapt"):
        rerun.chapter_of("hpo")


def test_a_rerun_on_another_version_of_the_corpus_is_refused_naming_the_split(tmp_path):
    recorded, again = tmp_path / "recorded", tmp_path / "rerun"
    for directory, sha in ((recorded, "a" * 64), (again, "b" * 64)):
        directory.mkdir()
        atomic_files.write_json(directory / runs.PROVENANCE, {"data": {"files": {"test": {"sha256": sha}}}})
    with pytest.raises(OpenMedError, match=r"rerun: trained on test files whose sha256 is not the one"):
        rerun._check_same_data(recorded, again)


def test_a_named_run_that_is_not_recorded_is_refused_naming_the_recorded_ones(results):
    with pytest.raises(OpenMedError, match="synthetic-smoke"):
        verify.recorded_runs("finetune", results, ["nothing-here"])
    assert verify.recorded_runs("finetune", results, [RUN_NAME]) == [results / RUN_NAME]


def test_a_baseline_record_is_rerun_with_the_threads_asked_for_and_judged_by_its_test_f1(synthetic_corpus, tmp_path):
    run_dir = tmp_path / "runs" / "baseline" / "synthetic-smoke"
    baseline.run(job_settings.load_baseline_config("smoke", {"dataset": str(synthetic_corpus)}), run_dir)
    record.record([run_dir], tmp_path / "results")
    [judged] = cli.verify_chapter("baseline", tmp_path / "results", tmp_path / "runs", threads=1, every=True,
                                  overrides={"dataset": str(synthetic_corpus)}, **FEW)
    assert judged.threads == 1 and judged.name == "baseline/synthetic-smoke"
    assert judged.figures[0].name == "test strict F1" and judged.figures[0].verdict in ("identical", "reproduced")
    assert (tmp_path / "runs" / "verify" / "baseline" / "synthetic-smoke" / runs.METRICS).is_file()


def write_metrics(directory: Path, reduction: float, machine: dict, kwh: float) -> Path:
    directory.mkdir(parents=True)
    atomic_files.write_json(directory / runs.METRICS, {"perplexity_reduction_percent": reduction})
    atomic_files.write_json(directory / runs.PROVENANCE, {"machine": machine})
    atomic_files.write_json(directory / "footprint.json", {"records": [{"energy_kwh": kwh}]})
    return directory


@pytest.mark.parametrize("rerun, expected", [(31.0, "identical"), (32.9, "reproduced"), (29.5, "reproduced"),
                                             (33.5, "differs"), (20.0, "differs")])
def test_a_dapt_perplexity_reduction_is_reproduced_within_two_points_absolute(rerun, expected, tmp_path):
    here = {"cpu": "CPU A", "gpu": None}
    recorded = write_metrics(tmp_path / "recorded", 31.0, here, 1.0)
    again = write_metrics(tmp_path / "rerun", rerun, here, 1.0)
    judged = verify.compare("dapt", recorded, again, "dapt/x", 2)
    assert judged.figures[0].verdict == expected and judged.verdict == ("differs" if expected == "differs"
                                                                         else "reproduced")
    assert judged.figures[0].tolerance == "within 2 points absolute"


@pytest.mark.parametrize("rerun_cpu, rerun_kwh, expected", [("CPU A", 1.9, "within"), ("CPU A", 2.5, "outside"),
                                                            ("CPU B", 4.5, "within"), ("CPU B", 0.1, "outside")])
def test_energy_is_judged_by_the_factor_of_its_hardware_class_and_does_not_count(rerun_cpu, rerun_kwh, expected,
                                                                                 tmp_path):
    recorded = write_metrics(tmp_path / "recorded", 31.0, {"cpu": "CPU A", "gpu": None}, 1.0)
    again = write_metrics(tmp_path / "rerun", 31.0, {"cpu": rerun_cpu, "gpu": None}, rerun_kwh)
    judged = verify.compare("dapt", recorded, again, "dapt/x", 2)
    energy = judged.figures[-1]
    assert energy.name == "energy kWh" and energy.verdict == expected and not energy.counts
    assert judged.verdict == "reproduced"
    factor = verify.ENERGY_FACTORS["same hardware" if rerun_cpu == "CPU A" else "other hardware"]
    assert f"within {factor:g}x" in energy.tolerance
