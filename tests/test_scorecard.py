"""The first page's scorecard: each claim of the paper judged from what the record holds, by stated rules."""

import json

from openmed_repro.infra import job_settings
from openmed_repro.report import scorecard


def recorded(results, chapter, name, **metrics):
    directory = results / chapter / name
    directory.mkdir(parents=True)
    (directory / "metrics.json").write_text(json.dumps(metrics))


def finetuned(results, method, seed, f1, dataset="ncbi_disease", device="cpu (1 threads)", profile="cpu",
              seconds=1500.0):
    recorded(results, "finetune", f"{dataset}-{method}-{profile}-seed{seed}", dataset=dataset, method=method, seed=seed,
             test={"strict": {"f1": f1}}, devel={"strict": {"f1": f1}}, trainable_parameters=150_000,
             total_parameters=22_700_000, model_mb=0.6, train_seconds=seconds, device=device, profile=profile,
             backbone="minilm-l6", sentences={"train": 100})


def verdict(results, chapter):
    card = scorecard.claims(results).set_index("chapter")
    return card.loc[chapter, "verdict"], card.loc[chapter, "measured here"]


def test_an_empty_record_says_what_is_not_measured_yet_and_how_to_measure_it(tmp_path):
    card = scorecard.claims(tmp_path)
    assert len(card) == 7
    assert list(card["verdict"][:2]) == ["not measured yet (`make dapt`, `make record`)",
                                         "not measured yet (`make dapt`, `make ablation`, `make record`)"]
    assert card.set_index("chapter").loc["evaluate", "verdict"].startswith("not measured yet")
    assert all(text.startswith("not testable here: ") for text in card["at the paper's scale"]
               if not text.startswith("supported"))


def test_lora_matches_full_fine_tuning_when_its_mean_is_within_one_point(tmp_path):
    for seed, (lora, full) in zip((42, 1, 2), ((0.80, 0.805), (0.79, 0.80), (0.81, 0.80))):
        finetuned(tmp_path, "lora", seed, lora)
        finetuned(tmp_path, "full", seed, full)
    judged, measured = verdict(tmp_path, "evaluate")
    assert judged == "supported"
    assert "LoRA 80.0 ± 1.0 (3 seeds), full 80.2 ± 0.3 (3 seeds)" in measured and "0.66% of the parameters" in measured


def test_a_tuned_run_is_not_counted_as_one_more_seed_of_its_profile(tmp_path):
    for seed, f1 in ((42, 0.80), (1, 0.79), (2, 0.81)):
        finetuned(tmp_path, "lora", seed, f1)
        finetuned(tmp_path, "full", seed, 0.802)
    tuned = tmp_path / "finetune" / "ncbi_disease-lora-cpu-seed1-tuned"
    recorded(tmp_path, "finetune", tuned.name, dataset="ncbi_disease", method="lora", seed=1, test={"strict": {"f1": 0.99}},
             device="cpu (1 threads)", profile="cpu", train_seconds=1500.0)
    settings = job_settings.load_run_config("cpu", {"dataset": "ncbi_disease", "seed": 1, "learning_rate": 1.8e-3})
    (tuned / "config.json").write_text(json.dumps(settings.to_dict()))
    assert "LoRA 80.0 ± 1.0 (3 seeds)" in verdict(tmp_path, "evaluate")[1]


def test_lora_two_points_below_full_fine_tuning_contradicts_the_claim(tmp_path):
    finetuned(tmp_path, "lora", 42, 0.78)
    finetuned(tmp_path, "full", 42, 0.80)
    assert verdict(tmp_path, "evaluate")[0] == "contradicted"


def dapt_claim(results):
    return scorecard.claims(results).iloc[0][["verdict", "measured here"]].tolist()


def test_dapt_perplexity_is_supported_when_its_interval_lies_above_zero_and_contradicted_when_it_rises(tmp_path):
    recorded(tmp_path, "dapt", "minilm", backbone="minilm-l6", perplexity_reduction_percent=12.5,
             perplexity_before=8.0, perplexity_after=7.0,
             perplexity_reduction_interval={"percent": 12.5, "low": 10.1, "high": 14.8})
    assert dapt_claim(tmp_path) == ["supported (the interval lies above 0)",
                                    "12.5% lower on minilm-l6 (8.00 -> 7.00, 95% interval 10.1-14.8%)"]
    recorded(tmp_path, "dapt", "other", backbone="x", perplexity_reduction_percent=-3.0, perplexity_before=7.0,
             perplexity_after=7.2, perplexity_reduction_interval={"percent": -3.0, "low": -4.0, "high": -2.0})
    assert dapt_claim(tmp_path)[0].startswith("contradicted")


def test_a_dapt_reduction_whose_interval_holds_zero_is_not_significant(tmp_path):
    recorded(tmp_path, "dapt", "minilm", backbone="minilm-l6", perplexity_reduction_percent=0.5,
             perplexity_before=8.0, perplexity_after=7.96,
             perplexity_reduction_interval={"percent": 0.5, "low": -0.4, "high": 1.3})
    assert dapt_claim(tmp_path)[0] == "not significant (the interval holds 0)"


def test_the_adapter_size_claim_is_judged_by_the_measured_bytes_per_parameter_at_the_paper_counts(tmp_path):
    finetuned(tmp_path, "lora", 42, 0.8)
    paper_scale, measured = scorecard.claims(tmp_path).iloc[5][["at the paper's scale", "measured here"]]
    assert paper_scale.startswith("supported") and "(4.00 bytes each)" in measured
    assert "deberta-v3-large 17.2 MB" in paper_scale


def test_a_claim_about_an_a100_is_not_testable_on_a_cpu_record_and_says_what_was_measured(tmp_path):
    finetuned(tmp_path, "lora", 42, 0.8)
    paper_scale, judged, measured = scorecard.claims(tmp_path).iloc[4][["at the paper's scale", "verdict", "measured here"]]
    assert paper_scale.startswith("not testable here: no run of the paper's profile")
    assert (judged, measured) == ("measured", "25.0-25.0 min a run (median 25.0) on cpu (1 threads) (1 runs)")


def test_the_a100_claim_is_judged_only_on_gpu_runs_of_the_papers_profile(tmp_path):
    finetuned(tmp_path, "lora", 1, 0.8, device="NVIDIA H200", seconds=90.0)
    paper_scale, measured = scorecard.claims(tmp_path).iloc[4][["at the paper's scale", "measured here"]]
    assert paper_scale.startswith("not testable here: no run of the paper's profile")
    assert measured == "1.5-1.5 min a run (median 1.5) on NVIDIA H200 (1 runs)"
    finetuned(tmp_path, "lora", 2, 0.9, device="NVIDIA H200", profile="paper", seconds=240.0)
    paper_scale = scorecard.claims(tmp_path).iloc[4]["at the paper's scale"]
    assert paper_scale == "supported: 4.0-4.0 min on NVIDIA H200 (1 runs of the paper's profile)"


def test_the_first_page_links_every_claim_to_its_chapter(tmp_path):
    text = scorecard.markdown(tmp_path)
    assert text.startswith("## The paper's claims, checked against the record")
    assert "[dapt](dapt.ipynb)" in text and "[results](results.ipynb)" in text


def predicted(results, chapter, name, found, **metrics):
    """A run on four one-entity sentences that finds the first `found` entities."""
    recorded(results, chapter, name, **({"profile": "cpu"} | metrics), dataset="ncbi_disease", seed=42,
             backbone="minilm-l6", sentences={"train": 100}, train_seconds=600.0, device="cpu (1 threads)", trainable_parameters=150_000,
             total_parameters=22_700_000, model_mb=0.6)
    blocks = [f"the\tO\tO\ntumour{n}\tB-Disease\t{'B-Disease' if n < found else 'O'}" for n in range(4)]
    (results / chapter / name / "predictions_test.tsv").write_text("\n\n".join(blocks) + "\n")


def test_the_state_of_the_art_analogue_says_how_far_the_best_lever_carries_the_recipe(tmp_path):
    scores = {2: 2 / 3, 3: 6 / 7, 4: 1.0}   # strict F1 of finding 2, 3 or 4 of the 4 entities
    predicted(tmp_path, "finetune", "lora", 2, method="lora", test={"strict": {"f1": scores[2]}},
              devel={"strict": {"f1": 0.7}})
    predicted(tmp_path, "baseline", "bilstm", 3, method="crf", test={"strict": {"f1": scores[3]}},
              majority_test_strict_f1=0.0)
    card = scorecard.claims(tmp_path, trials=200).set_index("claim")
    measured = card.loc["State of the art on 10 of 12 corpora", "measured here"]
    assert "ncbi_disease lora 66.7 vs 85.7" in measured and "lever" not in measured   # no lever in the record yet

    predicted(tmp_path, "finetune", "full", 4, method="full", profile="cpu-fast", test={"strict": {"f1": scores[4]}},
              devel={"strict": {"f1": 0.9}})
    measured = scorecard.claims(tmp_path, trials=200).set_index("claim").loc["State of the art on 10 of 12 corpora",
                                                                             "measured here"]
    assert measured.endswith("the best system on test (an upper bound) is level with or ahead of the BiLSTM's mean "
                             "on 1 of 1 corpora")
