import dataclasses
import json

import pytest

from openmed_repro.infra import job_settings, paths, runs, validation
from openmed_repro.errors import OpenMedError
from openmed_repro.report import notebook_parameters


PROFILE_KINDS = {"profiles": job_settings.RunConfig, "baseline_profiles": job_settings.BaselineConfig,
                 "dapt_profiles": job_settings.DaptConfig}
PROFILE_FILES = sorted((kind, path.stem) for kind in PROFILE_KINDS
                       for path in (paths.PARAMETERS_DIR / kind).glob("*.yaml"))
LOADERS = {"profiles": lambda name: job_settings.load_run_config(name, {"dataset": "ncbi_disease"}),
           "baseline_profiles": lambda name: job_settings.load_baseline_config(name, {"dataset": "ncbi_disease"}),
           "dapt_profiles": job_settings.load_dapt_config}
# What defines each profile: a few values a change to the profile or to the defaults would break.
DEFINING = {
    ("profiles", "paper"): {"backbone": "deberta-v3-large", "method": "lora", "epochs": 20.0, "batch_size": 32,
                            "precision": "auto", "gradient_checkpointing": True},
    ("profiles", "cpu"): {"backbone": "minilm-l6", "method": "lora", "learning_rate": 1e-3, "epochs": 8.0,
                          "batch_size": 16, "precision": "auto"},
    ("profiles", "cpu-lora-all-linear"): {"learning_rate": 1e-3, "lora_r": 16,
                                          "lora_target_modules": ["query", "key", "value", "dense"]},
    ("profiles", "cpu-lora-r64"): {"learning_rate": 1e-3, "lora_r": 64, "lora_alpha": 128},
    ("profiles", "cpu-fast"): {"backbone": "minilm-l6", "method": "full", "learning_rate": 1e-4, "epochs": 3.0,
                               "warmup_ratio": 0.06, "batch_size": 16, "precision": "fp32"},
    ("profiles", "smoke"): {"backbone": "tiny-random-bert", "max_length": 32, "overlap": 8,
                            "max_train_sentences": 48, "precision": "fp32"},
    ("baseline_profiles", "paper"): {"output": "crf", "hidden_size": 200, "batch_size": 8, "epochs": 50,
                                     "learning_rate": 1e-3, "dropout": 0.5},
    ("baseline_profiles", "cpu"): {"output": "crf", "hidden_size": 100, "batch_size": 32, "epochs": 10,
                                   "learning_rate": 2e-3},
    ("baseline_profiles", "smoke"): {"hidden_size": 16, "epochs": 12, "early_stopping_patience": 12,
                                     "max_train_sentences": 48},
    ("dapt_profiles", "paper"): {"backbone": "deberta-v3-large", "epochs": 3.0, "warmup_steps": 500,
                                 "gradient_checkpointing": True, "precision": "auto"},
    ("dapt_profiles", "cpu"): {"backbone": "minilm-l6", "passages": None, "epochs": 4.0,
                               "gradient_accumulation_steps": 4, "precision": "auto", "perplexity_steps": 37,
                               "attention_dropout": 0.0},
    ("dapt_profiles", "smoke"): {"backbone": "tiny-random-bert", "max_length": 64, "held_out_fraction": 0.2},
}


@pytest.mark.parametrize("kind, profile", PROFILE_FILES)
def test_every_profile_file_loads_with_the_values_that_define_it(kind, profile):
    loaded = LOADERS[kind](profile).to_dict()
    assert loaded["profile"] == profile
    assert {key: loaded[key] for key in DEFINING[kind, profile]} == DEFINING[kind, profile]


def test_every_profile_file_is_described_by_the_test():
    assert set(PROFILE_FILES) == set(DEFINING)


@pytest.mark.parametrize("kind, profile", PROFILE_FILES)
def test_no_profile_repeats_a_default(kind, profile):
    defaults = {f.name: f.default for f in dataclasses.fields(PROFILE_KINDS[kind])}
    stated = paths.read_parameters(f"{kind}/{profile}.yaml")
    repeated = sorted(key for key, value in stated.items() if key in defaults and defaults[key] == value)
    assert not repeated, f"{kind}/{profile}.yaml repeats the default of {', '.join(repeated)}"


def test_paper_profile_holds_the_papers_recipe():
    c = job_settings.load_run_config("paper", {"dataset": "ncbi_disease"})
    assert (c.method, c.lora_r, c.lora_alpha, c.lora_dropout) == ("lora", 16, 32, 0.05)
    assert (c.warmup_ratio, c.lr_scheduler, c.early_stopping_patience) == (0.1, "cosine", 3)
    assert (c.max_length, c.overlap, c.batch_size, c.precision) == (256, 50, 32, "auto")
    assert c.label_smoothing == 0.1 and c.gradient_checkpointing


def test_overrides_win_over_yaml_files_which_win_over_the_profile(tmp_path):
    best = tmp_path / "best.yaml"
    best.write_text("learning_rate: 0.002\nbatch_size: 16\n")
    c = job_settings.load_run_config("cpu", {"dataset": "s800", "batch_size": 32}, files=[best])
    assert c.learning_rate == 0.002 and c.batch_size == 32


def test_an_integer_is_accepted_where_a_float_is_expected():
    assert job_settings.load_run_config("smoke", {"dataset": "x", "epochs": 3}).epochs == 3.0


@pytest.mark.parametrize("key, value, message", [
    ("epochs", "three", "parameter epochs must be float, got str 'three'"),
    ("batch_size", 1.5, "parameter batch_size must be int, got float 1.5"),
    ("batch_size", True, "parameter batch_size must be int, got bool True"),
    ("group_by_length", "yes", "parameter group_by_length must be bool"),
    ("epochs", -1, "parameter epochs=-1.0 must be positive"),
    ("learning_rate", 0, "parameter learning_rate=0.0 must be positive"),
    ("warmup_ratio", 1.5, "parameter warmup_ratio=1.5 must be below 1"),
    ("method", "adapter", "parameter method='adapter'; valid: lora, full"),
    ("lora_target_modules", "query", "parameter lora_target_modules must be a list of strings"),
])
def test_wrong_types_and_values_are_refused_naming_the_parameter(key, value, message):
    with pytest.raises(OpenMedError, match=message.replace("(", r"\(").replace(")", r"\)")):
        job_settings.load_run_config("smoke", {"dataset": "x", key: value})


def test_an_unknown_parameter_is_refused_with_the_valid_ones():
    with pytest.raises(OpenMedError, match=r"overrides: unknown parameter 'lerning_rate'; valid: .*learning_rate"):
        job_settings.load_run_config("smoke", {"dataset": "x", "lerning_rate": 0.1})


def test_an_unknown_key_in_a_yaml_file_names_the_file(tmp_path):
    best = tmp_path / "best.yaml"
    best.write_text("lr: 0.002\n")
    with pytest.raises(OpenMedError, match=rf"{best}: unknown parameter 'lr'"):
        job_settings.load_run_config("smoke", {"dataset": "x"}, files=[best])


def test_an_unknown_profile_lists_the_known_ones():
    with pytest.raises(OpenMedError, match="unknown profile 'gpu'; known: cpu, cpu-fast, cpu-lora-all-linear, cpu-lora-r64, paper, smoke"):
        job_settings.load_run_config("gpu", {"dataset": "x"})


def test_a_missing_dataset_is_named():
    with pytest.raises(OpenMedError, match="missing parameter.*dataset"):
        job_settings.load_run_config("smoke", {})


def test_overlap_must_fit_inside_the_window():
    with pytest.raises(OpenMedError, match="overlap=40 must be below max_length=32"):
        job_settings.load_run_config("smoke", {"dataset": "x", "overlap": 40})


def test_the_paper_dapt_profile_holds_the_papers_recipe():
    c = job_settings.load_dapt_config("paper")
    assert (c.lora_r, c.lora_alpha, c.lora_dropout, c.mlm_probability) == (16, 32, 0.05, 0.15)
    assert (c.batch_size * c.gradient_accumulation_steps, c.max_length, c.warmup_steps, c.epochs) == (128, 256, 500, 3)


def test_a_dapt_mix_must_map_source_names_to_weights():
    with pytest.raises(OpenMedError, match="parameter mix must map names to non-negative numbers"):
        job_settings.load_dapt_config("smoke", {"mix": {"pubmed": -1}})


@pytest.mark.parametrize("kind, values, message", [
    (job_settings.SearchConfig, {"max_retry": -1}, "search: parameter max_retry=-1 must not be negative"),
    (job_settings.DaptConfig, {"backbone": "b", "profile": "p", "mlm_probability": 1.0},
     "dapt: parameter mlm_probability=1.0 must be below 1"),
    (job_settings.DaptConfig, {"backbone": "b", "profile": "p", "precision": "int8"},
     "dapt: parameter precision='int8'; valid: auto, fp32, bf16, fp16"),
    (job_settings.BaselineConfig, {"dataset": "d", "profile": "p", "output": 3},
     "baseline: parameter output must be str, got int 3"),
    (job_settings.BaselineConfig, {"dataset": "d", "profile": "p", "max_train_sentences": 0},
     "baseline: parameter max_train_sentences=0 must be positive"),
])
def test_each_field_carries_its_own_rules(kind, values, message):
    with pytest.raises(OpenMedError, match=message):
        validation.validated(kind, values, message.split(":")[0])


def test_a_chapters_settings_are_checked_by_their_fields_rules():
    with pytest.raises(OpenMedError, match="evaluate.ipynb parameters: parameter split='train'; valid: test, devel"):
        notebook_parameters.evaluation_settings({"runs": ["a"], "split": "train"})
    with pytest.raises(OpenMedError, match="results.ipynb parameters: parameter samples=0 must be positive"):
        notebook_parameters.results_settings({"samples": 0})


def test_the_confirmation_seeds_are_a_list_of_integers_and_an_empty_one_skips_it():
    assert job_settings.load_search_config({"confirm_seeds": []}).confirm_seeds == []
    assert job_settings.load_search_config({"confirm_seeds": [42, 1]}).confirm_seeds == [42, 1]
    with pytest.raises(OpenMedError, match="parameter confirm_seeds must be a list of integers"):
        job_settings.load_search_config({"confirm_seeds": [42, "1"]})


def test_a_run_follows_its_profile_whatever_its_corpus_seed_and_backbone_but_not_with_other_hyper_parameters():
    own = job_settings.load_run_config("cpu", {"dataset": "s800", "seed": 2, "backbone": "tiny-random-bert"}).to_dict()
    assert runs.settings_follow_profile(own)
    assert runs.settings_follow_profile({key: value for key, value in own.items() if key != "freeze_word_embeddings"}), \
        "a parameter added after the run was recorded counts as unset"
    assert not runs.settings_follow_profile({**own, "learning_rate": 3e-3})
    assert not runs.settings_follow_profile({**own, "precision": "bf16"})
    assert runs.settings_follow_profile({**own, "profile": "a-profile-since-removed"})


@pytest.mark.parametrize("epochs_evaluated, follows", [(8, True), (5, False)])
def test_a_run_recorded_under_a_smaller_patience_stays_its_profiles_only_if_early_stopping_never_ended_it(
        tmp_path, epochs_evaluated, follows):
    profile = job_settings.load_run_config("cpu", {"dataset": "linnaeus"})
    assert profile.epochs == 8 and profile.early_stopping_patience >= profile.epochs, "every epoch of profile cpu runs"
    (tmp_path / runs.CONFIG).write_text(json.dumps({**profile.to_dict(), "early_stopping_patience": 3}))
    (tmp_path / runs.LOG_HISTORY).write_text(json.dumps(
        [{"epoch": float(epoch), "eval_strict_f1": 0.8} for epoch in range(1, epochs_evaluated + 1)]))
    assert runs.follows_its_profile(tmp_path) is follows

    (tmp_path / runs.CONFIG).write_text(json.dumps({**profile.to_dict(), "early_stopping_patience": 3,
                                                    "learning_rate": 3e-3}))
    assert not runs.follows_its_profile(tmp_path), "a patience never used does not excuse another rate"


@pytest.mark.parametrize("finished, epochs_evaluated, reopened", [(True, 8, True), (True, 5, False), (False, 8, False)])
def test_a_finished_run_early_stopping_never_ended_is_read_back_under_the_profiles_larger_patience(
        tmp_path, finished, epochs_evaluated, reopened):
    profile = job_settings.load_run_config("cpu", {"dataset": "linnaeus"})
    (tmp_path / runs.CONFIG).write_text(json.dumps({**profile.to_dict(), "early_stopping_patience": 3}))
    (tmp_path / runs.LOG_HISTORY).write_text(json.dumps(
        [{"epoch": float(epoch), "eval_strict_f1": 0.8} for epoch in range(1, epochs_evaluated + 1)]))
    if finished:
        (tmp_path / runs.METRICS).write_text("{}")
    if reopened:
        runs.claim(tmp_path, profile)
    else:   # stopped early, or unfinished: resuming it at another patience would mix two recipes
        with pytest.raises(OpenMedError, match=r"other parameters \(early_stopping_patience\)"):
            runs.claim(tmp_path, profile)
