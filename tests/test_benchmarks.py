"""The benchmark code runs and writes its JSON and figure, and the Performance chapter shows them (smoke mode,
seconds; benchmarks are never timed tests, so nothing here asserts a speed)."""

import json
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

import benchmark_scripts
from openmed_repro.report import bench_report
from openmed_repro.infra import cpu_units, job_settings, paths

BENCHMARK = paths.PROJECT_ROOT / "benchmarks" / "performance.py"
NOTEBOOK = paths.PROJECT_ROOT / "notebooks" / "performance.ipynb"


def search_directory(path: Path, trial_seconds: float, states: list[str], epochs: list[int]) -> Path:
    path.mkdir()
    (path / "summary.json").write_text(json.dumps({"trial_seconds": trial_seconds, "best_dev_strict_f1": 0.5}))
    (path / "trials.csv").write_text("number,state,user_attrs_epochs_run\n" + "".join(
        f"{i},{s},{e}\n" for i, (s, e) in enumerate(zip(states, epochs))) + f"{len(states)},FAIL,\n")
    return path


def import_performance():
    return benchmark_scripts.load("performance")


@pytest.fixture(scope="module")
def smoke_bench(synthetic_corpus, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    pruned = search_directory(root / "pruned", 100.0, ["COMPLETE", "PRUNED"], [3, 1])
    unpruned = search_directory(root / "unpruned", 160.0, ["COMPLETE", "COMPLETE"], [3, 3])
    done = subprocess.run([sys.executable, str(BENCHMARK), "--smoke", "--dataset", str(synthetic_corpus),
                           "--options-sentences", "48", "--inference-repeats", "1", "--threads", "1", "--low-precision", "bf16",
                           "--low-precision-set", "method=full",
                           "--search-pruned", str(pruned), "--search-unpruned", str(unpruned),
                           "--out", str(root / "out")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "out"


def test_the_smoke_benchmark_writes_every_section_and_a_figure(smoke_bench):
    record = json.loads((smoke_bench / "performance-smoke.json").read_text())
    assert (smoke_bench / "performance-smoke.png").stat().st_size > 0
    assert set(record["training"]) == {"ours", "standard", "ours_low_precision"}
    for run in record["training"].values():
        assert [p["epoch"] for p in run["dev_curve"]] == [1.0, 2.0]
        assert run["train_tokens_per_second"] > 0 and run["peak_rss_mb"] > 0
        assert 0 <= run["test"]["strict_f1"] <= 1
    runners = record["inference"]["runners"]
    assert len(runners) == 3 and all(r["sentences_per_second"] > 0 for r in runners.values())
    assert record["inference"]["sentences"] == 24
    assert all(0 < r["fraction_of_peak"] for r in record["utilisation"]["rows"].values())
    assert {"time_to_quality_met", "test_f1_met", "inference_met", "inference_met_against_every_pipeline"} <= record["targets"].keys()
    assert all(row["tokens_per_second"] and row["error"] is None for row in record["training_options"])


def test_our_recipe_also_trains_in_bf16_and_is_judged_against_the_standard_and_its_fp32_interval(smoke_bench):
    record = json.loads((smoke_bench / "performance-smoke.json").read_text())
    low = record["training"]["ours_low_precision"]
    assert low["settings"]["precision"] == "bf16" and record["training"]["ours"]["settings"]["precision"] == "fp32"
    assert low["settings"]["method"] == "full" and record["training"]["ours"]["settings"]["method"] == "lora"
    lower, upper = record["training"]["ours"]["test_strict_f1_interval"]
    assert lower <= record["training"]["ours"]["test"]["strict_f1"] <= upper
    judged = record["targets"]["low_precision_training"]
    assert judged["precision"] == "bf16" and judged["test_f1_within_fp32_interval"] == (lower <= low["test"]["strict_f1"] <= upper)
    assert judged["tokens_per_second_vs_fp32"] > 0
    shown = bench_report.targets(record)
    assert shown["bf16 training: time_to_quality_met"] == judged["time_to_quality_met"]


def test_the_search_section_reads_trial_time_saved_by_pruning(smoke_bench):
    search = json.loads((smoke_bench / "performance-smoke.json").read_text())["search"]
    assert search["trial_time_saved"] == pytest.approx(0.375)
    assert search["epochs_saved"] == pytest.approx(1 / 3, abs=1e-3)   # 4 epochs trained against 6; failed trials not counted
    assert search["pruned"]["pruned_trials"] == 1 and search["unpruned"]["pruned_trials"] == 0


def test_the_benchmark_leaves_no_scratch_directory_or_partial_record(smoke_bench):
    assert sorted(p.name for p in smoke_bench.iterdir()) == ["performance-smoke.json", "performance-smoke.png"]


def test_search_directories_that_hold_no_finished_search_are_refused_before_any_work(synthetic_corpus, tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARK), "--smoke", "--dataset", str(synthetic_corpus),
                           "--search-pruned", str(tmp_path / "absent"), "--search-unpruned", str(tmp_path / "absent"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and f"--search-pruned {tmp_path / 'absent'}: not a finished search" in done.stderr
    assert not (tmp_path / "out").exists()   # refused before any work


@pytest.mark.parametrize("requested, has_bf16_units, device, profile_precision, compared", [
    ("auto", True, "cpu", "fp32", "bf16"),
    ("auto", False, "cpu", "fp32", None),      # a CPU without bf16 units: nothing faster to compare
    ("auto", True, "cuda", "fp32", None),      # on a GPU both recipes train in bf16 already
    ("auto", True, "cpu", "bf16", None),       # the recipe is in bf16 already
    ("bf16", False, "cpu", "fp32", "bf16"),    # asked explicitly
    ("none", True, "cpu", "fp32", None),
])
def test_which_precision_our_recipe_is_also_trained_in(monkeypatch, requested, has_bf16_units, device,
                                                       profile_precision, compared):
    performance = import_performance()
    monkeypatch.setattr(performance.devices, "cpu_units",
                        lambda: cpu_units.CpuUnits(frozenset({"amx_bf16"} if has_bf16_units else set())))
    run_config = job_settings.load_run_config("smoke", {"dataset": "ncbi_disease", "precision": profile_precision})
    assert performance.low_precision_to_compare(requested, device, run_config) == compared


def test_an_unknown_option_of_the_low_precision_run_is_refused_naming_it_before_any_work(synthetic_corpus, tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARK), "--smoke", "--dataset", str(synthetic_corpus),
                           "--low-precision", "bf16", "--low-precision-set", "freeze=1", "--options-sentences", "0",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "freeze" in done.stderr and not list(tmp_path.iterdir())


def test_the_pipelines_entity_groups_become_word_spans_comparable_with_ours():
    """Ours are iob.spans_of (tests/test_iob.py), which reads a stray I- as the pipeline does."""
    performance = import_performance()
    groups = [{"start": 0, "end": 9, "entity_group": "D"}, {"start": 16, "end": 21, "entity_group": "C"}]
    assert performance.pipeline_entities(groups, ["lung", "cancer", "and", "tumor"]) == {(0, 2, "D"), (3, 4, "C")}


def test_the_performance_chapter_shows_the_benchmark_record(smoke_bench, tmp_path):
    executed = papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "performance.ipynb"), cwd=str(tmp_path),
                                          parameters={"bench_json": str(smoke_bench / "performance-smoke.json")},
                                          progress_bar=False, kernel_name="python3")
    outputs = "".join(str(o) for cell in executed.cells for o in cell.get("outputs", []))
    assert "image/png" in outputs and "smoke mode" in outputs and "time_to_quality_met" in outputs


def test_a_missing_benchmark_record_says_how_to_make_it(tmp_path):
    with pytest.raises(Exception, match="make bench"):
        bench_report.load(tmp_path / "absent.json")


def test_the_search_summary_gives_epochs_time_and_the_replayed_pruner():
    replay = {"trials": 20, "pruned_trials": 6, "epochs_saved": 0.2, "best_dev_strict_f1": 0.25,
              "unpruned_best_dev_strict_f1": 0.25}
    record = {"search": {"epochs_saved": 0.25, "trial_time_saved": 0.3, "best_dev_f1_difference": -0.001,
                         "pruner_replayed_on_unpruned": {**replay, "pruner": "median"}}}
    assert bench_report.search_summary(record) == (
        "Pruning saved 25% of the epochs trained and 30% of the trial time; best dev strict F1 -0.1 points against "
        "the unpruned search. Replayed on the unpruned study's own 20 trials, the median pruner would have pruned 6, "
        "saved 20% of the epochs and kept its best trial.")
    halving = {**replay, "pruner": "successive_halving", "best_dev_strict_f1": 0.2}
    record["search"] = {**record["search"], "pruner_replayed_on_unpruned": halving}
    assert bench_report.search_summary(record).endswith(
        "the successive halving pruner would have pruned 6, saved 20% of the epochs and kept a best dev F1 of 20.0 "
        "(unpruned 25.0).")
    assert bench_report.search_summary({"search": {"skipped": "no search"}}) == "Not measured in this run: no search"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_asking_for_the_gpu_comparison_without_a_gpu_is_refused_naming_the_option(synthetic_corpus, tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARK), "--smoke", "--dataset", str(synthetic_corpus),
                           "--device", "cuda", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "--device cuda: no CUDA GPU is visible" in done.stderr
    assert not list(tmp_path.iterdir())   # refused before any work or file


def test_the_gpu_comparison_trains_the_standard_recipe_in_bf16_with_batch_32(synthetic_corpus, tmp_path):
    """bf16 autocast runs on a CPU too (slowly), so the GPU comparison's recipe can be exercised here."""
    from openmed_repro.data import corpora
    performance = import_performance()
    corpus = corpora.load(str(synthetic_corpus))
    recipe = performance.standard_recipe.StandardRecipe(epochs=1, **performance.GPU_SETTINGS)
    trainer, _, _ = performance.standard_recipe.train("tiny-random-bert", corpus.train[:40], corpus.devel[:8],
                                                      corpus.labels, tmp_path, recipe)
    assert trainer.args.bf16 and trainer.args.per_device_train_batch_size == 32
    assert trainer.state.global_step == 2   # 40 sentences in batches of 32


def test_the_peak_is_measured_in_the_precision_asked_for(monkeypatch):
    import torch

    performance = import_performance()
    multiplied = []
    real_matmul = torch.Tensor.__matmul__

    def recording_matmul(a, b):
        multiplied.append((a.dtype, b.dtype))
        return real_matmul(a, b)

    monkeypatch.setattr(torch.Tensor, "__matmul__", recording_matmul)
    assert performance.matmul_peak(64, repeats=2, dtype=torch.bfloat16) > 0
    assert multiplied and set(multiplied) == {(torch.bfloat16, torch.bfloat16)}


def test_the_precision_benchmark_records_the_cpu_its_units_and_each_precision_against_fp32(synthetic_corpus,
                                                                                          tmp_path):
    from openmed_repro.training import finetune

    run_dir = tmp_path / "run"
    finetune.run(job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "epochs": 2}), run_dir)
    done = subprocess.run([sys.executable, str(paths.PROJECT_ROOT / "benchmarks" / "precision.py"), "--run",
                           str(run_dir), "--rounds", "1", "--train-sentences", "0", "--out", str(tmp_path / "bench")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "bench" / "precision.json").read_text())
    assert record["threads"] == 1 and "precision.py --run" in record["command"]
    assert {"amx_bf16", "avx512_bf16", "avx512_vnni", "bf16_units"} <= set(record["machine"]["cpu_units"])
    assert record["auto"]["prediction"] in {"fp32", "bf16", "int8"} and record["auto"]["why"]
    rows = record["inference"]["precisions"]
    assert set(rows) == {"fp32", "bf16", "int8"} and rows["fp32"]["sentences_with_identical_entities"] == 1.0
    assert all(0 <= row["sentences_with_identical_entities"] <= 1 and row["sentences_per_second"] > 0
               for row in rows.values())
    assert record["targets"]["precision_auto_chose"] == record["auto"]["prediction"]


def test_annotation_entities_are_compared_sentence_by_sentence():
    from openmed_repro.annotation import annotate

    throughput = benchmark_scripts.load("annotate_throughput")
    document = annotate.Document("d", "Lung cancer kills. Asthma too.", 1)
    found = [[annotate.Entity("d", 0, 11, "Disease", "Lung cancer", 0.9),
              annotate.Entity("d", 19, 25, "Disease", "Asthma", 0.8)]]
    assert throughput.sentence_entities([document], found) == [{(0, 11, "Disease")}, {(19, 25, "Disease")}]
