"""Comparing runs on one corpus: the notebook's p-value is significance.py's, different gold data is refused,
errors are shown in context, and the Table 4 layout keeps a row for every registered corpus. A recorded run
(results/) is compared and tabulated like its run directory (runs/)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from openmed_repro.data import corpora
from openmed_repro.evaluation import comparison as evaluation
from openmed_repro.evaluation import metrics
from openmed_repro.infra import atomic_files, job_settings, layout, runs
from openmed_repro.report import record, results
from openmed_repro.evaluation import significance
from openmed_repro.errors import OpenMedError
from openmed_repro.training import finetune

SENTENCES = [["Aspirin", "treats", "heart", "disease", "."], ["No", "entity", "here", "."],
             ["Lung", "cancer", "and", "breast", "cancer", "."]] * 20
GOLD = [["O", "O", "B-Disease", "I-Disease", "O"], ["O", "O", "O", "O"],
        ["B-Disease", "I-Disease", "O", "B-Disease", "I-Disease", "O"]] * 20


def write_run(directory, predicted, gold=GOLD, sentences=SENTENCES, dataset="ncbi_disease", dev_f1=0.5, test_f1=0.5,
              profile="cpu", seed=42, method="lora"):
    directory.mkdir(parents=True)
    blocks = ["\n".join(f"{t}\t{g}\t{p}" for t, g, p in zip(s, gs, ps)) for s, gs, ps in zip(sentences, gold, predicted)]
    (directory / "predictions_test.tsv").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    record = {"dataset": dataset, "backbone": "minilm-l6", "method": method, "profile": profile, "seed": seed,
              "sentences": {"train": 100}, "devel": {"strict": {"f1": dev_f1}}, "test": {"strict": {"f1": test_f1}}}
    (directory / "metrics.json").write_text(json.dumps(record), encoding="utf-8")
    return directory


def degraded(every: int):
    """GOLD with the disease in every `every`-th sentence missed and one boundary cut short."""
    predicted = [list(tags) for tags in GOLD]
    for index in range(0, len(predicted), every):
        predicted[index] = ["O"] * len(predicted[index])
    predicted[2] = ["B-Disease", "O", "O", "B-Disease", "I-Disease", "O"]
    return predicted


@pytest.fixture
def two_runs(tmp_path):
    return [write_run(tmp_path / "good", degraded(7)), write_run(tmp_path / "worse", degraded(2))]


def test_the_pairwise_p_value_is_exactly_the_significance_modules_for_the_same_predictions(two_runs):
    loaded = evaluation.load(two_runs)
    table = evaluation.pairwise_tests(loaded, trials=2000, seed=3)
    expected = significance.approximate_randomization(metrics.sentence_counts(GOLD, degraded(7)),
                                                      metrics.sentence_counts(GOLD, degraded(2)), 2000, 3)
    assert table.loc[0, "p (AR)"] == pytest.approx(round(expected.p_value, 4))
    assert table.loc[0, "A - B"] == pytest.approx(round(100 * expected.difference, 2))
    assert expected.p_value < 0.05


def test_scores_carry_a_bootstrap_interval_around_the_f1(two_runs):
    table = evaluation.scores(evaluation.load(two_runs), samples=1000)
    assert (table["F1 95% low"] <= table["F1"]).all() and (table["F1"] <= table["F1 95% high"]).all()
    assert table["F1"].iloc[0] > table["F1"].iloc[1]


def test_each_run_is_scored_once_however_many_tables_are_drawn_from_it(two_runs, monkeypatch):
    calls = []
    score, counts = metrics.score, metrics.sentence_counts
    monkeypatch.setattr(metrics, "score", lambda *a: calls.append("score") or score(*a))
    monkeypatch.setattr(metrics, "sentence_counts", lambda *a: calls.append("counts") or counts(*a))
    loaded = evaluation.load(two_runs)
    evaluation.scores(loaded, samples=100)
    evaluation.pairwise_tests(loaded, trials=100)
    evaluation.per_type(loaded)
    evaluation.error_counts(loaded)
    assert sorted(calls) == ["counts", "counts", "score", "score"]


def test_runs_scored_on_different_gold_data_are_refused_naming_both(tmp_path):
    other_gold = [list(tags) for tags in GOLD]
    other_gold[1] = ["B-Disease", "O", "O", "O"]
    first = write_run(tmp_path / "first", GOLD)
    second = write_run(tmp_path / "second", other_gold, gold=other_gold)
    with pytest.raises(OpenMedError, match="different gold data") as error:
        evaluation.load([first, second])
    assert "first" in str(error.value) and "second" in str(error.value)


def test_fewer_than_two_runs_or_an_unfinished_run_is_refused(tmp_path):
    with pytest.raises(OpenMedError, match="at least two"):
        evaluation.load([write_run(tmp_path / "only", GOLD)])
    with pytest.raises(OpenMedError, match=r"missing: no saved test predictions: neither predictions_test\.tsv .* "
                                            r"nor predictions\.json\.gz"):
        evaluation.load([tmp_path / "only", tmp_path / "missing"])


def test_error_examples_mark_the_gold_and_predicted_spans_in_their_context(two_runs):
    worse = evaluation.load(two_runs)[1]
    examples = evaluation.error_examples(worse, per_category=2)
    boundary = examples[examples["category"] == "wrong_boundary"].iloc[0]
    assert boundary["gold"] == "Lung cancer (Disease)" and boundary["predicted"] == "Lung (Disease)"
    assert "[{Lung} cancer]" in boundary["context"]
    missed = examples[examples["category"] == "false_negative"].iloc[0]
    assert "[heart disease]" in missed["context"] and missed["predicted"] == ""
    assert evaluation.error_counts([worse]).loc["wrong_boundary"].iloc[0] == 1


def test_the_results_table_has_a_row_for_every_registered_corpus_and_says_which_were_not_run(tmp_path):
    write_run(tmp_path / "a", degraded(7), dev_f1=0.9, test_f1=0.8)
    write_run(tmp_path / "b", degraded(2), dev_f1=0.7, test_f1=0.85)
    table = results.table(tmp_path, samples=500)
    assert list(table.index) == list(corpora.registry())
    chosen = table.loc["ncbi_disease"]
    assert chosen["reproduced F1"] == 80.0 and "(a)" in chosen["run"] and chosen["runs"] == 2   # chosen on dev F1
    assert chosen["difference"] == pytest.approx(80.0 - 91.10)
    low, high = (float(x) for x in chosen["95% CI"].split("-"))
    assert low < high
    assert table.loc["s800", "run"] == "not run here" and np.isnan(table.loc["s800", "reproduced F1"])


def test_the_results_table_can_keep_to_the_runs_of_chosen_profiles(tmp_path):
    write_run(tmp_path / "cpu-run", degraded(7), dev_f1=0.7, test_f1=0.8)
    write_run(tmp_path / "smoke-run", degraded(2), dev_f1=0.9, test_f1=0.1, profile="smoke")
    assert "(smoke-run)" in results.table(tmp_path, samples=100).loc["ncbi_disease", "run"]
    kept = results.table(tmp_path, samples=100, profiles=["cpu", "cpu-fast"]).loc["ncbi_disease"]
    assert "(cpu-run)" in kept["run"] and kept["runs"] == 1
    assert list(results.finished_runs(tmp_path, ["cpu"])["profile"]) == ["cpu"]


def test_table_4_shows_each_profile_over_its_seeds_the_baseline_and_the_spark_nlp_paper(tmp_path):
    for seed, f1 in ((42, 0.80), (1, 0.78), (2, 0.82)):
        write_run(tmp_path / f"lora-{seed}", degraded(7), seed=seed, test_f1=f1)
    write_run(tmp_path / "full-42", degraded(7), profile="cpu-fast", method="full", test_f1=0.81)
    for start, f1 in (("word2vec-dapt", 0.7512), ("learned", 0.70)):   # the profile's start, and one it was chosen over
        baseline = tmp_path / f"baseline-{start}"
        baseline.mkdir()
        settings = job_settings.load_baseline_config("cpu", {"dataset": "ncbi_disease", "word_embeddings": start})
        (baseline / "config.json").write_text(json.dumps(settings.to_dict()))
        (baseline / "metrics.json").write_text(json.dumps({
            "dataset": "ncbi_disease", "method": "crf", "profile": "cpu", "seed": 42, "majority_test_strict_f1": 0.1,
            "test": {"strict": {"f1": f1}}}))
    row = results.table(tmp_path, samples=100, profiles=["cpu", "cpu-fast"]).loc["ncbi_disease"]
    assert row["ours cpu (lora)"] == "80.00 ± 2.00 (3)"
    tuned = write_run(tmp_path / "lora-1-tuned", degraded(7), seed=1, dev_f1=0.99, test_f1=0.95)
    tuned_settings = job_settings.load_run_config("cpu", {"dataset": "ncbi_disease", "seed": 1, "learning_rate": 1.8e-3})
    (tuned / "config.json").write_text(json.dumps(tuned_settings.to_dict()))
    row = results.table(tmp_path, samples=100, profiles=["cpu", "cpu-fast"]).loc["ncbi_disease"]
    assert row["ours cpu (lora)"] == "80.00 ± 2.00 (3)", "a tuned run is not one of the profile's seeds"
    assert row["ours cpu-fast (full)"] == "81.00"
    assert row["ours BiLSTM"] == "75.12"
    assert row["Spark NLP BiLSTM (paper)"] == 89.13
    assert results.table(tmp_path, samples=100, profiles=["cpu", "cpu-fast"]).loc["s800", "ours cpu (lora)"] == "–"


def test_lora_and_full_fine_tuning_are_tested_seed_by_seed_and_their_wins_counted(tmp_path):
    for seed in (42, 1):
        write_run(tmp_path / f"lora-{seed}", GOLD, seed=seed)
        write_run(tmp_path / f"full-{seed}", degraded(2), seed=seed, profile="cpu-fast", method="full")
    write_run(tmp_path / "lora-7", GOLD, seed=7)   # no full fine-tuning with seed 7: not paired
    tuned = write_run(tmp_path / "lora-0-tuned", degraded(3), seed=1)   # found first; the search's tuned run: not the profile's
    tuned_settings = job_settings.load_run_config("cpu", {"dataset": "ncbi_disease", "seed": 1, "learning_rate": 1.8e-3})
    (tuned / "config.json").write_text(json.dumps(tuned_settings.to_dict()))
    paired = evaluation.paired_by_seed(tmp_path, trials=2000)
    assert list(paired["seed"]) == [1, 42] and set(paired["corpus"]) == {"ncbi_disease"}
    assert (paired["lora F1"] == 100.0).all() and (paired["lora - full"] > 0).all()
    expected = significance.approximate_randomization(
        metrics.sentence_counts(GOLD, GOLD), metrics.sentence_counts(GOLD, degraded(2)), 2000, 0).p_value
    assert paired["p (AR)"].iloc[0] == round(expected, 4)
    summary = evaluation.wins(paired).loc["ncbi_disease"]
    assert summary["seeds"] == 2
    assert summary["lora wins"] + summary["full wins"] + summary["ties"] == 2
    assert summary["lora wins"] == (2 if expected < evaluation.ALPHA else 0)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, synthetic_corpus):
    """A finished smoke fine-tuning run in <machine>/runs/finetune/synthetic-smoke and its record in
    <machine>/results/finetune/synthetic-smoke (predicted tags only; tokens and gold come from the corpus)."""
    machine = tmp_path_factory.mktemp("machine")
    run_dir = machine / "runs" / "finetune" / "synthetic-smoke"
    finetune.run(job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus)}), run_dir)
    return run_dir, record.record_one(run_dir, machine / "results").path


def test_a_recorded_run_loads_for_comparison_with_the_same_tags_as_its_run_directory(recorded, synthetic_corpus):
    run_dir, record_dir = recorded
    assert not list(record_dir.glob("*.tsv"))
    from_run, from_record = evaluation.load([run_dir, record_dir], data_dir=synthetic_corpus.parent)
    assert from_record.tokens == from_run.tokens and from_record.gold == from_run.gold
    assert from_record.predicted == from_run.predicted and any(t != "O" for s in from_record.predicted for t in s)
    assert from_record.name == from_run.name and from_record.name.startswith("synthetic-smoke (")
    assert from_record.name.endswith(", lora, smoke)")


def test_a_record_of_a_corpus_outside_the_registry_is_refused_without_the_directory_holding_it(recorded):
    run_dir, record_dir = recorded
    with pytest.raises(OpenMedError, match="corpus 'synthetic', which the registry does not know") as refused:
        evaluation.load([run_dir, record_dir])
    assert str(record_dir) in str(refused.value) and "data_dir" in str(refused.value)


def test_a_record_whose_corpus_file_changed_is_refused_by_the_comparison_naming_the_file(recorded, synthetic_corpus,
                                                                                        tmp_path):
    run_dir, record_dir = recorded
    changed = shutil.copytree(synthetic_corpus, tmp_path / "synthetic")
    with (changed / "test.tsv").open("a", encoding="utf-8") as test:
        test.write("\nextra\tO\n")
    with pytest.raises(OpenMedError, match="sha256") as refused:
        evaluation.load([run_dir, record_dir], data_dir=tmp_path)
    assert str(record_dir) in str(refused.value) and str(changed / "test.tsv") in str(refused.value)


def test_the_results_table_over_the_record_has_the_measured_row_with_the_interval_of_its_run_directory(
        recorded, synthetic_corpus):
    run_dir, record_dir = recorded
    from_record = results.table(record_dir.parents[1], samples=200, data_dir=synthetic_corpus.parent).loc["synthetic"]
    from_run = results.table(run_dir.parents[1], samples=200).loc["synthetic"]
    test_f1 = 100 * atomic_files.read_json(record_dir / runs.METRICS)["test"]["strict"]["f1"]
    assert from_record["reproduced F1"] == round(test_f1, 2) and from_record["runs"] == 1
    assert "(synthetic-smoke)" in from_record["run"]
    low, high = (float(x) for x in from_record["95% CI"].split("-"))
    assert low - 0.05 <= test_f1 <= high + 0.05 and low < high
    assert from_record["95% CI"] == from_run["95% CI"]


def test_without_runs_the_evaluation_chapter_compares_the_default_directories_of_the_make_targets():
    from openmed_repro.report import notebook_parameters

    settings = notebook_parameters.evaluation_settings({"runs": None})
    main_job = layout.run_directory("finetune", {"dataset": "ncbi_disease", "profile": "cpu"})
    baseline = layout.run_directory("baseline", {"dataset": "ncbi_disease", "profile": "cpu"})
    assert settings.runs == [str(main_job), f"{main_job}-tuned", str(baseline)]


def test_the_cost_of_the_record_is_its_training_hours_per_chapter_profile_and_machine(tmp_path):
    for name, profile, seconds, device in (("a", "cpu", 1800.0, "cpu (1 threads)"), ("b", "cpu", 3600.0, "cpu (1 threads)"),
                                           ("c", "cpu-fast", 900.0, "cpu (1 threads)"), ("d", "cpu", 360.0, "NVIDIA H200")):
        directory = tmp_path / "finetune" / name
        directory.mkdir(parents=True)
        (directory / "metrics.json").write_text(json.dumps({"profile": profile, "train_seconds": seconds}))
        (directory / "provenance.json").write_text(json.dumps({"device": device, "machine": {"cpu": "Xeon", "threads": 1}}))
    table = results.cost(tmp_path)
    on_the_cpu = table.loc[("finetune", "cpu", "Xeon, 1 thread(s)")]
    assert on_the_cpu["runs"] == 2 and on_the_cpu["training hours"] == 1.5
    assert table.loc[("finetune", "cpu", "GPU: NVIDIA H200"), "training hours"] == 0.1
    assert table.loc[("finetune", "cpu-fast", "Xeon, 1 thread(s)"), "runs"] == 1


def test_the_seed_spread_is_judged_against_the_papers_negligible_variance(tmp_path):
    assert results.seed_variance(tmp_path).startswith("No corpus has two seeds")
    for seed, f1 in ((42, 0.80), (1, 0.78), (2, 0.82)):
        write_run(tmp_path / f"lora-{seed}", degraded(7), seed=seed, test_f1=f1)
    for seed, f1 in ((42, 0.831), (1, 0.834), (2, 0.829)):
        write_run(tmp_path / f"full-{seed}", degraded(7), seed=seed, test_f1=f1, profile="cpu-fast", method="full")
    text = results.seed_variance(tmp_path)
    assert "for profile cpu it does not hold here (ncbi_disease (3 seeds): sd 2.00, range 4.00 points)" in text
    assert "for profile cpu-fast it holds here (ncbi_disease (3 seeds): sd 0.25, range 0.50 points)" in text


def test_a_seed_that_early_stopping_ended_before_the_last_epoch_is_named_beside_the_seeds_that_ran_on():
    epochs = int(job_settings.load_run_config("cpu", {"dataset": "ncbi_disease"}).epochs)
    curves = pd.DataFrame({"seed 1": pd.Series({1.0: 62.0, 2.0: 81.5, 3.0: 74.0, 4.0: 78.0, 5.0: 80.0}),
                           "seed 42": pd.Series({float(e): 60.0 + e for e in range(1, epochs + 1)})})
    said = results.early_stops(curves, "cpu")
    assert f"seed 1 stopped after epoch 5 of {epochs} (best dev F1 81.50, at epoch 2)" in said
    assert f"the seeds that ran all {epochs} epochs reached best dev F1 {60 + epochs:.2f}-{60 + epochs:.2f}" in said
    assert results.early_stops(curves[["seed 42"]], "cpu").startswith(f"Every seed ran all {epochs} epochs")


def test_the_widest_seed_spread_shows_each_seeds_dev_f1_after_every_epoch(tmp_path):
    assert results.widest_seed_spread(tmp_path) is None
    curves = {42: [0.0, 0.0], 1: [0.50, 0.0], 2: [0.59, 0.10]}
    for seed, dev in curves.items():
        run = write_run(tmp_path / f"linnaeus-{seed}", degraded(7), dataset="linnaeus", seed=seed, test_f1=max(dev))
        history = [{"epoch": epoch, "eval_strict_f1": f1} for epoch, f1 in enumerate(dev, start=1)]
        (run / "log_history.json").write_text(json.dumps(history + [{"epoch": 2.0, "loss": 0.3}]))
    for seed, f1 in ((42, 0.80), (1, 0.79)):
        write_run(tmp_path / f"ncbi-{seed}", degraded(7), seed=seed, test_f1=f1)
    assert results.widest_seed_spread(tmp_path) == ("linnaeus", "cpu")
    table = results.dev_f1_by_epoch(tmp_path, "linnaeus", "cpu")
    assert list(table.columns) == ["seed 1", "seed 2", "seed 42"]
    assert table.loc[1, "seed 2"] == 59.0 and table.loc[2, "seed 1"] == 0.0 and table["seed 42"].max() == 0.0


def from_dapt(run_dir, profile="cpu", seed=42):
    """Mark a written run as started from a DAPT adapter, as its config.json says."""
    settings = job_settings.load_run_config(profile, {"dataset": "ncbi_disease", "seed": seed,
                                                "dapt_adapter": "results/dapt/minilm-l6-cpu-seed42/adapter"})
    (run_dir / "config.json").write_text(json.dumps(settings.to_dict()))
    return run_dir


def test_a_dapt_started_run_is_its_own_system_never_a_seed_of_the_plain_recipe(tmp_path):
    write_run(tmp_path / "a-lora", degraded(2), seed=42)
    from_dapt(write_run(tmp_path / "b-lora-dapt", GOLD, seed=42, dev_f1=0.9, test_f1=1.0))
    write_run(tmp_path / "c-full", degraded(3), seed=42, profile="cpu-fast", method="full")
    plain = evaluation.paired_by_seed(tmp_path, trials=500)
    assert plain["lora F1"].tolist() == [round(100 * metrics.score(GOLD, degraded(2)).strict.f1, 2)]
    dapt = evaluation.paired_by_seed(tmp_path, ("cpu", "lora", True), ("cpu", "lora"), trials=500)
    assert list(dapt.columns[2:5]) == ["lora+DAPT F1", "lora F1", "lora+DAPT - lora"]
    assert dapt["lora+DAPT F1"].tolist() == [100.0] and dapt["winner"].tolist() == ["lora+DAPT"]


def test_the_ablation_pairs_each_dapt_run_with_the_plain_run_of_its_method_corpus_and_seed(tmp_path):
    from openmed_repro.report import ablation

    for seed in (42, 1):
        write_run(tmp_path / f"lora-{seed}", degraded(2), seed=seed)
        from_dapt(write_run(tmp_path / f"lora-dapt-{seed}", GOLD, seed=seed), seed=seed)
        write_run(tmp_path / f"full-{seed}", GOLD, seed=seed, profile="cpu-fast", method="full")
        from_dapt(write_run(tmp_path / f"full-dapt-{seed}", GOLD, seed=seed, profile="cpu-fast", method="full"),
                  profile="cpu-fast", seed=seed)
    seeds = ablation.by_seed(tmp_path, trials=500)
    assert len(seeds) == 4 and set(seeds["method"]) == {"lora", "full"}
    lora = seeds[seeds["method"] == "lora"]
    assert (lora["with"] == 100.0).all() and (lora["DAPT gain"] > 0).all() and (lora["winner"] == "with DAPT").all()
    full = seeds[seeds["method"] == "full"]
    assert (full["DAPT gain"] == 0).all() and (full["winner"] == "tie").all() and (full["p (AR)"] == 1.0).all()
    summary = ablation.summary(seeds).set_index("method")
    assert summary.loc["lora", ["seeds", "DAPT wins", "DAPT loses", "ties"]].tolist() == [2, 2, 0, 0]
    assert summary.loc["full", "ties"] == 2


def test_the_selection_takes_the_start_with_the_higher_mean_dev_f1_never_the_test_f1(tmp_path):
    for seed, dev in ((42, 0.80), (1, 0.70)):
        write_run(tmp_path / f"plain-{seed}", GOLD, seed=seed, dev_f1=dev, test_f1=0.90)
    for seed, dev in ((42, 0.76), (1, 0.76)):
        from_dapt(write_run(tmp_path / f"dapt-{seed}", GOLD, seed=seed, dev_f1=dev, test_f1=0.60), seed=seed)
    chosen = results.selection(results.finished_runs(tmp_path)).set_index("corpus").loc["ncbi_disease"]
    assert chosen["chosen"] == "with DAPT" and chosen["dev F1 with DAPT"] == pytest.approx(76.0)
    assert chosen[results.SELECTED] == "60.00 ± 0.00 (2)"
    table = results.table(tmp_path, samples=100, profiles=["cpu"])
    assert table.loc["ncbi_disease", "ours cpu (DAPT + lora)"] == "60.00 ± 0.00 (2)"
    assert table.loc["ncbi_disease", "ours cpu (lora)"] == "90.00 ± 0.00 (2)"
    assert table.loc["ncbi_disease", results.SELECTED] == "60.00 ± 0.00 (2) (with DAPT)"


def test_a_lever_closes_its_share_of_the_gap_from_the_papers_lora_to_full_fine_tuning(tmp_path):
    from openmed_repro.report import levers

    for seed in (42, 1):
        write_run(tmp_path / f"lora-{seed}", GOLD, seed=seed, dev_f1=0.70, test_f1=0.70)
        write_run(tmp_path / f"all-linear-{seed}", GOLD, seed=seed, profile="cpu-lora-all-linear",
                  dev_f1=0.78, test_f1=0.76)
        write_run(tmp_path / f"r64-{seed}", GOLD, seed=seed, profile="cpu-lora-r64", dev_f1=0.69, test_f1=0.71)
        write_run(tmp_path / f"full-{seed}", GOLD, seed=seed, profile="cpu-fast", method="full",
                  dev_f1=0.80, test_f1=0.80)
    table = levers.table(tmp_path, corpora=("ncbi_disease",)).set_index("profile")
    assert table.loc["cpu-lora-all-linear", "gap closed %"] == pytest.approx(60.0)
    assert table.loc["cpu-lora-r64", "gap closed %"] == pytest.approx(10.0)
    assert pd.isna(table.loc["cpu", "gap closed %"]) and table.loc["cpu-fast", "seeds"] == 2
    assert levers.adopted(table.reset_index()) == "cpu-lora-all-linear"
    assert "ncbi_disease 70.00 -> 78.00" in levers.adoption(table.reset_index())
    assert "profile `cpu-lora-all-linear` adopts it" in levers.adoption(table.reset_index())


def test_no_lever_is_adopted_unless_it_beats_the_papers_lora_on_dev_on_every_corpus(tmp_path):
    from openmed_repro.report import levers

    for corpus, lever_dev in (("ncbi_disease", 0.78), ("s800", 0.69)):
        write_run(tmp_path / f"lora-{corpus}", GOLD, dataset=corpus, dev_f1=0.70, test_f1=0.70)
        write_run(tmp_path / f"all-linear-{corpus}", GOLD, dataset=corpus, profile="cpu-lora-all-linear",
                  dev_f1=lever_dev, test_f1=0.80)
    table = levers.table(tmp_path)
    assert levers.adopted(table) is None
    assert "keep the paper's LoRA" in levers.adoption(table)


def bilstm_run(directory, test_f1, dataset="ncbi_disease", predicted=GOLD):
    run_dir = write_run(directory, predicted, dataset=dataset, method=None, test_f1=test_f1)
    record = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({**record, "majority_test_strict_f1": 0.0}))
    return run_dir


def test_each_lever_is_measured_by_the_share_of_the_papers_lora_distance_to_the_bilstm_it_closes(tmp_path):
    from openmed_repro.report import gap_to_baseline

    for seed, f1 in ((42, 0.70), (1, 0.72)):
        write_run(tmp_path / f"lora-{seed}", GOLD, seed=seed, test_f1=f1)
        write_run(tmp_path / f"full-{seed}", GOLD, seed=seed, profile="cpu-fast", method="full", test_f1=0.76)
    from_dapt(write_run(tmp_path / "lora-dapt-42", GOLD, test_f1=0.69))
    write_run(tmp_path / "all-linear-42", GOLD, profile="cpu-lora-all-linear", test_f1=0.80)
    bilstm_run(tmp_path / "bilstm", 0.75)
    write_run(tmp_path / "s800-lora", GOLD, dataset="s800", test_f1=0.60)   # no BiLSTM on s800: no row
    write_run(tmp_path / "cll-lora", GOLD, dataset="cll", test_f1=0.90)     # ahead of its BiLSTM: no share
    bilstm_run(tmp_path / "cll-bilstm", 0.80, dataset="cll")

    gaps = gap_to_baseline.table(tmp_path)
    ncbi = gaps[gaps["corpus"] == "ncbi_disease"].set_index("system")
    assert ncbi.loc[gap_to_baseline.PAPERS_LORA, ["seeds", "test F1", "behind BiLSTM"]].tolist() == [2, 71.0, 4.0]
    assert ncbi.loc["full fine-tuning", "gap closed %"] == pytest.approx(125.0)
    assert ncbi.loc["LoRA on every linear layer", "gap closed %"] == pytest.approx(225.0)
    assert ncbi.loc["DAPT + LoRA (the paper's two stages)", "gap closed %"] == pytest.approx(-50.0)
    assert set(gaps["corpus"]) == {"ncbi_disease", "cll"}
    assert gaps[gaps["corpus"] == "cll"]["gap closed %"].isna().all()

    summary = gap_to_baseline.summary(gaps).set_index("system")
    assert summary.loc["full fine-tuning", ["gap closed % (pooled)", "level or ahead"]].tolist() == [125.0, 1]
    assert summary.loc[gap_to_baseline.PAPERS_LORA, "level or ahead"] == 1          # cll
    assert "**2 of 2**" in gap_to_baseline.what_is_left(gaps)
    assert "ncbi_disease: LoRA on every linear layer passes it by 5.00" in gap_to_baseline.what_is_left(gaps)


def test_the_selected_start_is_tested_against_the_bilstm_baseline_corpus_by_corpus(tmp_path):
    write_run(tmp_path / "plain", degraded(2), dev_f1=0.7)
    from_dapt(write_run(tmp_path / "dapt", GOLD, dev_f1=0.8))
    bilstm_run(tmp_path / "baseline", 0.5, predicted=degraded(3))
    tested = results.against_baseline(tmp_path, trials=500).set_index("corpus").loc["ncbi_disease"]
    assert tested["ours"] == "DAPT + lora" and tested["ours F1"] == 100.0
    assert tested["BiLSTM F1"] == round(100 * metrics.score(GOLD, degraded(3)).strict.f1, 2)
    assert tested["winner"] == "paper's recipe" and tested["p (AR)"] < 0.05


def test_dev_f1_by_rate_shows_a_corpus_runs_at_the_profiles_current_and_superseded_rates_and_patiences(tmp_path):
    for name, rate, seed, curve, patience in (("superseded/old-42", 3e-3, 42, [0.5, 0.0], None),
                                              ("superseded/stopped-42", 1e-3, 42, [0.6, 0.5], 1),
                                              ("now-42", 1e-3, 42, [0.6, 0.7], None)):
        run_dir = write_run(tmp_path / name, GOLD, dataset="linnaeus", seed=seed)
        settings = job_settings.load_run_config("cpu", {"dataset": "linnaeus", "seed": seed, "learning_rate": rate}
                                                | ({"early_stopping_patience": patience} if patience else {}))
        (run_dir / "config.json").write_text(json.dumps(settings.to_dict()))
        (run_dir / "log_history.json").write_text(json.dumps(
            [{"epoch": float(epoch), "eval_strict_f1": f1} for epoch, f1 in enumerate(curve, 1)]))
    curves = results.dev_f1_by_rate(tmp_path, "linnaeus")
    assert list(curves.columns) == ["lr 3e-03, seed 42", "lr 1e-03, seed 42, patience 1", "lr 1e-03, seed 42"]
    assert curves["lr 3e-03, seed 42"].tolist() == [50.0, 0.0] and curves["lr 1e-03, seed 42"].tolist() == [60.0, 70.0]
    assert curves["lr 1e-03, seed 42, patience 1"].tolist() == [60.0, 50.0], "stopped at another patience: its own"


def test_a_precision_twin_is_compared_with_its_profile_run_by_the_twins_interval(tmp_path):
    for name, precision, trained_in, predicted, seconds in (("run", None, "bf16", degraded(7), 600.0),
                                                           ("twin", "fp32", "fp32", degraded(6), 1500.0)):
        run_dir = write_run(tmp_path / name, predicted)
        overrides = {"dataset": "ncbi_disease"} | ({"precision": precision} if precision else {})
        (run_dir / "config.json").write_text(json.dumps(job_settings.load_run_config("cpu", overrides).to_dict()))
        (run_dir / "provenance.json").write_text(json.dumps({"precision": trained_in}))
        record = json.loads((run_dir / "metrics.json").read_text())
        (run_dir / "metrics.json").write_text(json.dumps({**record, "train_seconds": seconds}))
    [row] = results.precision_twins(tmp_path, samples=500, trials=500).to_dict("records")
    assert (row["precision"], row["twin precision"]) == ("bf16", "fp32")
    assert row["F1"] == round(100 * metrics.score(GOLD, degraded(7)).strict.f1, 2)
    low, high = map(float, row["twin 95% CI"].split("-"))
    assert row["inside"] == (low <= row["F1"] <= high) and (row["train s"], row["twin train s"]) == (600.0, 1500.0)


def test_a_seed_group_trained_on_different_devices_is_shown_as_mixed_naming_them():
    group = pd.DataFrame({"device": ["cpu", "NVIDIA H200", "NVIDIA H200"], "seed": [42, 1, 2]})
    assert results.mixed_devices(group) == " (mixed: NVIDIA H200, cpu)"
    assert results.mixed_devices(group.assign(device="cpu")) == ""
