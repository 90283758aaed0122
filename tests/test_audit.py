"""The audit of the record: an untouched record passes; a changed prediction file, a changed metrics.json and a
removed file each fail it, the problem naming the file."""

import gzip
import json
import shutil

import pytest

from openmed_repro import cli
from openmed_repro.infra import atomic_files, job_settings, paths
from openmed_repro.report import audit, record
from openmed_repro.training import finetune


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, synthetic_corpus):
    """A smoke fine-tuning run of the synthetic corpus, recorded into <machine>/results."""
    machine = tmp_path_factory.mktemp("machine")
    run_dir = machine / "runs" / "finetune" / "synthetic-smoke"
    finetune.run(job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus)}), run_dir)
    record.record([run_dir], machine / "results")
    return machine / "results"


@pytest.fixture
def results(recorded, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(recorded, copy)
    return copy


def run_audit(results, synthetic_corpus):
    return audit.audit(results, data_dir=synthetic_corpus.parent)


def test_an_untouched_record_passes_with_every_figure_recomputed(results, synthetic_corpus):
    report = run_audit(results, synthetic_corpus)
    assert report.passed, report.problems
    assert report.runs == 1 and report.figures > 20 and report.files == len([p for p in results.rglob("*") if p.is_file()]) - 1
    assert report.verdict().startswith("passed: ")


def test_tags_changed_to_o_in_the_predictions_fail_the_audit_naming_the_file_and_the_figure(results, synthetic_corpus):
    predictions = results / "finetune" / "synthetic-smoke" / "predictions.json.gz"
    payload = json.loads(gzip.decompress(predictions.read_bytes()))
    tags = payload["splits"]["test"]["tags"]
    changed = 0
    for sentence in tags:
        for i, tag in enumerate(sentence):
            if tag != "O" and changed < 5:
                sentence[i], changed = "O", changed + 1
    assert changed, "the smoke run predicted entities to change"
    predictions.write_bytes(gzip.compress(json.dumps(payload).encode(), mtime=0))
    problems = run_audit(results, synthetic_corpus).problems
    assert any(str(predictions) in p and "changed since it was recorded" in p for p in problems)
    assert any("metrics.json: test strict" in p and "but its predictions give" in p for p in problems)


def test_a_changed_metrics_file_fails_the_audit_naming_it(results, synthetic_corpus):
    metrics_path = results / "finetune" / "synthetic-smoke" / "metrics.json"
    stated = json.loads(metrics_path.read_text())
    stated["test"]["strict"]["f1"] += 0.01
    metrics_path.write_text(json.dumps(stated))
    problems = run_audit(results, synthetic_corpus).problems
    assert f"{metrics_path}: changed since it was recorded (its sha256 differs from SHA256SUMS's)" in problems
    assert any(p.startswith(f"{metrics_path}: test strict f1 is ") for p in problems)


def test_a_removed_or_an_added_file_fails_the_audit_naming_it(results, synthetic_corpus):
    removed = results / "finetune" / "synthetic-smoke" / "log_history.json"
    removed.unlink()
    added = results / "finetune" / "synthetic-smoke" / "notes.txt"
    added.write_text("by hand")
    problems = run_audit(results, synthetic_corpus).problems
    assert f"{removed}: listed in SHA256SUMS but missing" in problems
    assert f"{added}: not listed in SHA256SUMS (not written by `record`)" in problems


def test_the_command_exits_1_listing_each_problem_and_0_on_a_clean_record(results, synthetic_corpus, capsys,
                                                                          monkeypatch):
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(synthetic_corpus.parent))
    assert cli.main(["audit", "--results", str(results), "--data-dir", str(synthetic_corpus.parent)]) == 0
    (results / "finetune" / "synthetic-smoke" / "config.json").write_text("{}")
    assert cli.main(["audit", "--results", str(results), "--data-dir", str(synthetic_corpus.parent)]) == 1
    assert "config.json: changed since it was recorded" in capsys.readouterr().err


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory, synthetic_corpus):
    """A record holding two smoke runs (seeds 42 and 1, standing for a search's default and tuned runs) and a search
    confirmation that compares them, its figures computed from the records."""
    from openmed_repro.evaluation import comparison, significance

    machine = tmp_path_factory.mktemp("confirmed")
    results = machine / "results"
    names = {"default": "synthetic-smoke-seed42", "tuned": "synthetic-smoke-seed1"}
    for side, seed in (("default", 42), ("tuned", 1)):
        run_dir = machine / "runs" / "finetune" / names[side]
        finetune.run(job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "seed": seed}), run_dir)
        record.record([run_dir], results)
    scored = {side: json.loads((results / "finetune" / name / "metrics.json").read_text()) for side, name in names.items()}
    pair = comparison.load([results / "finetune" / names["tuned"], results / "finetune" / names["default"]],
                           data_dir=synthetic_corpus.parent)
    test = significance.approximate_randomization(pair[0].sentence_counts, pair[1].sentence_counts, 10_000, seed=0)
    row = {"seed": 42, "p (AR)": round(test.p_value, 4)}
    for side in names:
        row[f"{side} run"] = f"finetune/{names[side]}"
        row[f"{side} dev F1"] = round(100 * scored[side]["devel"]["strict"]["f1"], 2)
        row[f"{side} test F1"] = round(100 * scored[side]["test"]["strict"]["f1"], 2)
    (results / "hpo" / "search").mkdir(parents=True)
    atomic_files.write_json(results / "hpo" / "search" / "confirmation.json", {"kept": "tuned", "per_seed": [row]})
    audit.write_manifest(results)
    return results


def rewritten_confirmation(results, tmp_path, change) -> tuple:
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    path = copy / "hpo" / "search" / "confirmation.json"
    written = json.loads(path.read_text())
    change(written["per_seed"][0])
    path.write_text(json.dumps(written))
    audit.write_manifest(copy)   # as if `record` wrote it: only the figures can fail
    return copy, path


def test_a_search_confirmation_passes_when_its_figures_follow_from_the_records_it_names(confirmed, synthetic_corpus):
    report = run_audit(confirmed, synthetic_corpus)
    assert report.passed, report.problems
    assert report.runs == 2 and report.figures > 2 * 20 + 4


def test_a_changed_p_value_or_f1_of_a_confirmation_fails_the_audit_naming_the_file(confirmed, synthetic_corpus,
                                                                                    tmp_path):
    copy, path = rewritten_confirmation(confirmed, tmp_path, lambda row: row.update({"p (AR)": 0.0001,
                                                                                    "tuned test F1": 99.99}))
    problems = run_audit(copy, synthetic_corpus).problems
    assert any(p.startswith(f"{path}: seed 42: p (AR) is 0.0001 but") for p in problems), problems
    assert any(p.startswith(f"{path}: seed 42: tuned test F1 is 99.99 but") for p in problems), problems


def test_a_confirmation_naming_runs_outside_the_record_fails_the_audit(confirmed, synthetic_corpus, tmp_path):
    copy, path = rewritten_confirmation(confirmed, tmp_path,
                                        lambda row: row.update({"tuned run": "runs/finetune/synthetic-smoke-seed1"}))
    problems = run_audit(copy, synthetic_corpus).problems
    assert any(p.startswith(f"{path}: seed 42: tuned run 'runs/finetune/synthetic-smoke-seed1' names no record")
               for p in problems), problems
