"""The record: a finished run copied into results/ as small portable files, read back through the corpus, and
listed in an index naming its command, commit and machine. One smoke fine-tuning run is recorded."""

import gzip
import json
import shutil
from pathlib import Path

import pytest

from openmed_repro import cli
from openmed_repro.data import saved_predictions
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, job_settings, paths, run_provenance, runs
from openmed_repro.report import record
from openmed_repro.training import finetune

COMMAND = "make reproduce RUN_DIR=runs/finetune/synthetic-smoke"
RUN_NAME = "finetune/synthetic-smoke"


@pytest.fixture(scope="module")
def machine(tmp_path_factory) -> Path:
    """The machine that made the run: a directory holding runs/ (and, later, results/)."""
    return tmp_path_factory.mktemp("machine")


@pytest.fixture(scope="module")
def run_dir(machine, synthetic_corpus) -> Path:
    """A finished smoke fine-tuning run in <machine>/runs/finetune/synthetic-smoke, started by COMMAND."""
    directory = machine / "runs" / RUN_NAME
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(run_provenance.COMMAND_ENV, COMMAND)
        finetune.run(job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus)}), directory)
    return directory


@pytest.fixture
def results(tmp_path) -> Path:
    return tmp_path / "results"


def record_cli(*arguments) -> int:
    return cli.main(["record", *map(str, arguments)])


def record_text(directory: Path) -> str:
    """Every file of a record as text, its predictions unzipped."""
    return "\n".join(gzip.decompress(p.read_bytes()).decode() if p.suffix == ".gz" else p.read_text()
                     for p in sorted(directory.rglob("*")) if p.is_file())


def copy_run(run_dir: Path, machine_root: Path) -> Path:
    """The same run as it lies on another machine (the same name under another runs/)."""
    copy = machine_root / "runs" / RUN_NAME
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("model", "checkpoints"))
    return copy


def test_a_new_run_names_its_corpus_by_key_and_checksum_and_its_machine_and_command(run_dir):
    provenance = atomic_files.read_json(run_dir / runs.PROVENANCE)
    assert provenance["data"]["corpus"] == "synthetic" and "directory" not in provenance["data"]
    for split, entry in provenance["data"]["files"].items():
        assert entry["file"] == f"{split}.tsv" and len(entry["sha256"]) == 64 and "path" not in entry
    assert provenance["machine"]["cpu"] == run_provenance.cpu_model() and provenance["machine"]["threads"] >= 1
    assert provenance["command"] == COMMAND


def test_a_recorded_run_holds_its_small_files_and_no_weights(run_dir, results):
    assert record_cli(run_dir, "--results", results) == 0
    recorded = results / RUN_NAME
    assert {p.name for p in recorded.iterdir()} == {"config.json", "metrics.json", "provenance.json",
                                                   "log_history.json", "footprint.json", "predictions.json.gz"}
    assert (run_dir / "model").is_dir() and not list(recorded.rglob("model"))
    assert json.loads((recorded / "metrics.json").read_text())["test"] == atomic_files.read_json(run_dir / "metrics.json")["test"]


def test_the_record_holds_no_absolute_path_of_the_machine_that_made_it(run_dir, machine, synthetic_corpus, results):
    record.record([run_dir], results)
    text = record_text(results / RUN_NAME)
    for place in (str(machine), str(synthetic_corpus), "/work", str(Path.home()), "/tmp"):
        assert place not in text
    provenance = json.loads((results / RUN_NAME / "provenance.json").read_text())
    assert provenance["run_dir"] == f"runs/{RUN_NAME}"


def test_reading_recorded_predictions_back_gives_exactly_the_runs_predictions_files(run_dir, synthetic_corpus, results):
    record.record([run_dir], results)
    for split in ("devel", "test"):
        assert (saved_predictions.read(results / RUN_NAME, split, dataset=synthetic_corpus)
                == saved_predictions.read_predictions(run_dir / f"predictions_{split}.tsv"))


def test_a_corpus_whose_file_changed_is_refused_on_read_back_naming_the_record_and_the_file(
        run_dir, synthetic_corpus, results, tmp_path):
    record.record([run_dir], results)
    changed = shutil.copytree(synthetic_corpus, tmp_path / "synthetic")
    with (changed / "test.tsv").open("a", encoding="utf-8") as test:
        test.write("\nextra\tO\n")
    with pytest.raises(OpenMedError, match=r"synthetic-smoke.*test\.tsv.*sha256") as refused:
        saved_predictions.read(results / RUN_NAME, "test", dataset=changed)
    assert str(changed / "test.tsv") in str(refused.value)
    assert saved_predictions.read(results / RUN_NAME, "devel", dataset=changed)   # an unchanged file still reads


def test_an_unfinished_run_is_refused_naming_it(run_dir, results, tmp_path, capsys):
    unfinished = tmp_path / "runs" / "finetune" / "interrupted"
    unfinished.mkdir(parents=True)
    shutil.copy(run_dir / runs.CONFIG, unfinished / runs.CONFIG)
    assert record_cli(unfinished, run_dir, "--results", results) == 2
    error = capsys.readouterr().err
    assert str(unfinished) in error and "not a finished run" in error
    assert not (results / "finetune" / "interrupted").exists() and (results / RUN_NAME).is_dir()


def test_recording_the_same_run_again_is_a_no_op_that_says_so(run_dir, results, tmp_path, capsys):
    record.record([run_dir], results)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (results / RUN_NAME).iterdir()}
    assert record_cli(copy_run(run_dir, tmp_path / "elsewhere"), "--results", results) == 0
    assert "identical: already recorded, nothing to do" in capsys.readouterr().out
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (results / RUN_NAME).iterdir()} == before


def test_a_changed_run_is_refused_over_its_record_without_replace_and_replaces_it_with(run_dir, results, tmp_path,
                                                                                       capsys):
    record.record([run_dir], results)
    changed = copy_run(run_dir, tmp_path / "rerun")
    metrics = atomic_files.read_json(changed / runs.METRICS)
    atomic_files.write_json(changed / runs.METRICS, {**metrics, "train_seconds": metrics["train_seconds"] + 1})
    assert record_cli(changed, "--results", results) == 2
    error = capsys.readouterr().err
    assert "a different record" in error and "metrics.json" in error and "--replace" in error
    assert atomic_files.read_json(results / RUN_NAME / runs.METRICS)["train_seconds"] == metrics["train_seconds"]
    assert record_cli(changed, "--results", results, "--replace") == 0
    assert atomic_files.read_json(results / RUN_NAME / runs.METRICS)["train_seconds"] == metrics["train_seconds"] + 1
    assert [p.name for p in (results / "finetune").iterdir()] == ["synthetic-smoke"]   # nothing left beside it


def test_the_index_lists_the_record_with_its_command_commit_and_machine(run_dir, results):
    record.record([run_dir], results)
    provenance = atomic_files.read_json(run_dir / runs.PROVENANCE)
    [row] = [line for line in (results / "README.md").read_text().splitlines() if RUN_NAME in line]
    test_f1 = 100 * atomic_files.read_json(run_dir / runs.METRICS)["test"]["strict"]["f1"]
    for expected in (f"`{COMMAND}`", run_provenance.cpu_model(), f"{provenance['machine']['threads']} threads",
                     f"test strict F1 {test_f1:.2f}", "synthetic", "smoke", "lora", provenance["created"][:10]):
        assert expected in row
    if provenance["git"]["commit"]:
        assert provenance["git"]["commit"][:10] in row
    [listed] = record.listing(results).to_dict("records")
    assert listed["name"] == RUN_NAME and listed["chapter"] == "finetune" and listed["kind"] == "run"


def test_a_run_recorded_before_provenance_was_portable_loses_its_paths_and_gains_a_machine(run_dir, results,
                                                                                          tmp_path):
    old = copy_run(run_dir, tmp_path / "before")
    provenance = atomic_files.read_json(old / runs.PROVENANCE)
    provenance["data"]["directory"] = "/work/wt/shared/data/synthetic"
    for split, entry in provenance["data"]["files"].items():
        entry["path"] = f"/work/wt/shared/data/synthetic/{entry.pop('file')}"
    for key in ("machine", "command", "run_dir"):
        del provenance[key]
    provenance["device"] = "cpu (3 threads)"
    atomic_files.write_json(old / runs.PROVENANCE, provenance)
    assert record_cli(old, "--results", results, "--command", "make reproduce") == 0
    recorded = atomic_files.read_json(results / RUN_NAME / runs.PROVENANCE)
    assert "/work" not in record_text(results / RUN_NAME)
    assert recorded["data"]["files"]["test"]["file"] == "test.tsv" and "directory" not in recorded["data"]
    assert recorded["machine"]["threads"] == 3 and recorded["machine"]["cpu"]   # the footprint's CPU model
    assert recorded["command"] == "make reproduce" and recorded["run_dir"] == f"runs/{RUN_NAME}"


def test_a_record_file_over_the_budget_is_refused_and_a_record_over_its_budget_is_reported(run_dir, results,
                                                                                           monkeypatch):
    monkeypatch.setattr(record, "FILE_LIMIT", 1000)
    outcome = record.record([run_dir], results)
    [refused] = outcome.refused
    assert not outcome.recorded and "metrics.json of its record would be" in refused and "1,000 bytes" in refused
    monkeypatch.setattr(record, "FILE_LIMIT", 5 * 2**20)
    monkeypatch.setattr(record, "TOTAL_LIMIT", 1000)
    outcome = record.record([run_dir], results)
    [warning] = outcome.warnings
    assert outcome.recorded and "over its budget of 1,000 bytes" in warning


def test_a_search_and_a_benchmark_are_recorded_as_their_own_files_and_found_with_the_finished_runs(
        run_dir, tmp_path, results):
    runs_root = tmp_path / "runs"
    search = runs_root / "hpo" / "synthetic-smoke"
    search.mkdir(parents=True)
    (search / "study.db").write_bytes(b"sqlite")
    for name, text in {"config.json": "{}", "trials.csv": "number,value\n0,0.5\n", "best.yaml": "epochs: 3\n",
                       "summary.json": json.dumps({"best_dev_strict_f1": 0.5})}.items():
        (search / name).write_text(text)
    unfinished_search = runs_root / "hpo" / "running"
    unfinished_search.mkdir()
    (unfinished_search / "trials.csv").write_text("number\n")
    bench = runs_root / "bench"
    bench.mkdir()
    (bench / "performance.json").write_text(json.dumps({"command": f"performance.py --out {bench}"}))
    (bench / "performance.partial.json").write_text("{}")
    finetune_run = copy_run(run_dir, tmp_path)
    assert record.finished(runs_root) == [search, bench / "performance.json"], "a smoke run is left out"
    settings = json.loads((finetune_run / "config.json").read_text())
    (finetune_run / "config.json").write_text(json.dumps({**settings, "profile": "cpu"}))
    assert record.finished(runs_root) == [finetune_run, search, bench / "performance.json"]
    set_aside = runs_root / "finetune" / ".withdrawn" / finetune_run.name
    shutil.copytree(finetune_run, set_aside)
    assert set_aside not in record.finished(runs_root), "a hidden folder is never searched"

    outcome = record.record(record.finished(runs_root), results)
    assert not outcome.refused
    assert {p.name for p in (results / "hpo" / "synthetic-smoke").iterdir()} == {
        "config.json", "trials.csv", "best.yaml", "summary.json"}
    assert json.loads((results / "bench" / "performance.json").read_text()) == {
        "command": "performance.py --out runs/bench"}
    assert set(record.listing(results)["kind"]) == {"run", "search", "benchmark"}
    assert "best dev strict F1 50.00" in (results / "README.md").read_text()


@pytest.mark.parametrize("argv, expected", [
    (["/home/me/repo/.venv/bin/openmed-repro", "record", "/home/me/repo/runs/finetune/x"],
     "openmed-repro record runs/finetune/x"),
    (["/usr/lib/python3/site-packages/ipykernel_launcher.py", "-f", "/tmp/kernel.json"], None),
    (["/x/lib/python3.11/site-packages/pytest/__main__.py", "-q"], "python -m pytest -q"),
])
def test_the_command_of_a_run_names_no_absolute_path(argv, expected, monkeypatch):
    monkeypatch.delenv(run_provenance.COMMAND_ENV, raising=False)
    monkeypatch.setattr(paths, "PROJECT_ROOT", Path("/home/me/repo"))
    assert run_provenance.command(argv) == expected


def test_a_dapt_run_is_recorded_without_its_adapter_weights(tmp_path, results):
    dapt_run = tmp_path / "runs" / "dapt" / "minilm-l6-cpu-seed42"
    (dapt_run / "adapter").mkdir(parents=True)
    atomic_files.write_json(dapt_run / "metrics.json", {"perplexity_before": 8.0, "perplexity_after": 7.0})
    (dapt_run / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    recorded = record.record_one(dapt_run, results)
    assert [p.name for p in recorded.path.rglob("*")] == ["metrics.json"]


def test_a_dapt_adapter_names_its_dapt_run_whether_it_lies_in_runs_or_in_the_record():
    run_config = {"dataset": "s800", "dapt_adapter": "runs/dapt/minilm-l6-cpu-seed42/adapter"}
    recorded = {"dataset": "s800", "dapt_adapter": "results/dapt/minilm-l6-cpu-seed42/adapter"}
    assert runs.changed_settings(recorded, run_config) == []
    other = {"dataset": "s800", "dapt_adapter": "runs/dapt/minilm-l6-cpu-seed1/adapter"}
    assert runs.changed_settings(recorded, other) == ["dapt_adapter"]

def test_a_record_replaced_by_a_run_of_another_recipe_moves_untouched_to_the_superseded_records(run_dir, results,
                                                                                                tmp_path):
    record.record([run_dir], results)
    before = record_text(results / RUN_NAME)
    commit = atomic_files.read_json(results / RUN_NAME / runs.PROVENANCE)["git"]["commit"]
    changed = copy_run(run_dir, tmp_path / "rerun")
    settings = atomic_files.read_json(changed / runs.CONFIG)
    atomic_files.write_json(changed / runs.CONFIG, {**settings, "learning_rate": settings["learning_rate"] / 3})
    [outcome] = record.record([changed], results, replace=True).recorded
    kept = results / "superseded" / f"{RUN_NAME}@{str(commit)[:7]}"
    assert outcome.outcome == f"replaced (the older recipe's record kept as {kept.relative_to(results)})"
    assert record_text(kept) == before
    assert atomic_files.read_json(results / RUN_NAME / runs.CONFIG)["learning_rate"] == settings["learning_rate"] / 3


def test_a_refused_record_leaves_the_index_and_the_manifest_as_they_were(run_dir, results, tmp_path):
    record.record([run_dir], results)
    index, manifest = (results / "README.md").read_bytes(), (results / "SHA256SUMS").read_bytes()
    unfinished = tmp_path / "runs" / "finetune" / "interrupted"
    unfinished.mkdir(parents=True)
    (results / "README.md").write_bytes(index + b"\n")   # any rewrite would undo this
    outcome = record.record([unfinished], results)
    assert outcome.refused and not outcome.recorded
    assert (results / "README.md").read_bytes() == index + b"\n" and (results / "SHA256SUMS").read_bytes() == manifest


@pytest.mark.parametrize("provenance, refused, allowed_by", [
    ({"git": {"commit": "a" * 40, "dirty": True}}, "dirty", "allow_dirty"),
    ({"git": {"commit": "a" * 40, "dirty": False}, "packages": {"torch": "2.11.0"}},
     "off-constraints: torch 2.11.0, not 2.13.0", "allow_env")])
def test_a_run_of_uncommitted_code_or_other_packages_is_refused_unless_allowed_and_then_marked(
        run_dir, results, tmp_path, provenance, refused, allowed_by):
    copy = copy_run(run_dir, tmp_path / "elsewhere")
    atomic_files.write_json(copy / runs.PROVENANCE, {**atomic_files.read_json(copy / runs.PROVENANCE), **provenance})
    outcome = record.record([copy], results)
    assert outcome.refused == [f"{copy}: {refused}: rerun it from a clean checkout with `make venv`'s packages, or "
                               "record it marked with --allow-dirty / --allow-env"]
    assert not (results / RUN_NAME).exists()
    assert record.record([copy], results, **{allowed_by: True}).recorded
    assert refused in (results / "README.md").read_text()
    assert atomic_files.read_json(results / RUN_NAME / runs.PROVENANCE)["marks"] == [refused]


def test_the_packages_of_a_run_made_by_make_are_the_pinned_ones(run_dir):
    assert record.marks(atomic_files.read_json(run_dir / runs.PROVENANCE)) == []
