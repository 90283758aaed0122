"""The paper's own path without the hub: tiny stand-ins of DeBERTa-v3, PubMedBERT and BioELECTRA in their real
formats (tests/paper_backbones.py) go through fine-tuning with the paper profile, the sliding windows and DAPT."""

import sys
from types import SimpleNamespace

import pytest
import torch

from openmed_repro.data import encoding
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, job_settings, runs
from openmed_repro.models import backbones, predictor, token_classifier
from openmed_repro.training import dapt, finetune
from openmed_repro.data import saved_predictions

from conftest import write_dapt_text
from paper_backbones import STAND_INS, deberta_v3

LABELS = ["O", "B-X", "I-X"]
LONG_SENTENCE = ("Aspirin and ibuprofen reduced hepatocellular carcinoma in mice ( n=12 ) , while tamoxifen "
                 "inhibition of BRCA1 expression and p53 mutation levels in Staphylococcus aureus and Escherichia "
                 "coli showed dose-dependent apoptosis ; IC50 of interleukin-6 and TNF-alpha receptor kinase was "
                 "12 mg/kg in randomised placebo trial patients with glioblastoma , neuropathy and cardiomyopathy "
                 "xylophonequick").split()


def query_value_names(paper_backbone: str) -> list[str]:
    """The attention modules parameters/backbones.yaml puts LoRA on for that paper backbone."""
    return list(backbones.registry()[paper_backbone]["lora_target_modules"])


@pytest.fixture(scope="module", params=list(STAND_INS))
def stand_in(request, tmp_path_factory) -> SimpleNamespace:
    name = request.param
    directory = STAND_INS[name](tmp_path_factory.mktemp("backbones") / name)
    return SimpleNamespace(name=name, directory=directory, backbone=backbones.resolve(str(directory)))


def paper_settings(stand_in, corpus, **overrides) -> job_settings.RunConfig:
    """The paper profile (gradient checkpointing, label smoothing, windows 256/50, early stopping, LoRA on
    query and value) shrunk to a CPU's seconds: fp32, two epochs of 48 sentences, a high learning rate."""
    return job_settings.load_run_config("paper", {
        "backbone": str(stand_in.directory), "dataset": str(corpus), "precision": "fp32", "epochs": 2,
        "learning_rate": 5e-2, "batch_size": 8, "eval_batch_size": 16, "max_train_sentences": 48,
        "max_eval_sentences": 24, "logging_steps": 2, "lora_target_modules": query_value_names(stand_in.name),
        **overrides})


@pytest.fixture(scope="module")
def fine_tuned(stand_in, synthetic_corpus, tmp_path_factory):
    settings = paper_settings(stand_in, synthetic_corpus)
    return settings, finetune.run(settings, tmp_path_factory.mktemp("runs") / stand_in.name)


def test_each_stand_in_has_its_paper_backbones_files_and_query_value_module_names(stand_in):
    files = {p.name for p in stand_in.directory.iterdir()}
    assert "tokenizer.json" not in files
    tokenizer = backbones.load_tokenizer(stand_in.backbone)
    assert tokenizer.is_fast and 500 <= len(tokenizer) <= 1000
    if stand_in.name == "deberta-v3-large":
        assert {"spm.model", "tokenizer_config.json"} <= files
        assert type(tokenizer).__name__ == "DebertaV2Tokenizer"
        assert tokenizer.tokenize("Aspirin") != tokenizer.tokenize("aspirin")      # cased, as DeBERTa-v3 is
    else:
        assert "vocab.txt" in files and "spm.model" not in files
        assert tokenizer.tokenize("Aspirin") == tokenizer.tokenize("aspirin")      # uncased vocabularies
    model = backbones.load_token_classifier(stand_in.backbone, LABELS, len(tokenizer))
    assert backbones.query_value_modules(model) == query_value_names(stand_in.name)


def test_each_stand_in_fine_tunes_with_the_paper_profile_and_reloads_to_identical_predictions(stand_in, fine_tuned,
                                                                                            synthetic_corpus):
    settings, result = fine_tuned
    assert settings.profile == "paper" and settings.gradient_checkpointing and settings.label_smoothing == 0.1
    assert (settings.max_length, settings.overlap, settings.early_stopping_patience) == (256, 50, 3)
    adapter = atomic_files.read_json(result.run_dir / runs.MODEL_DIR / "adapter_config.json")
    assert sorted(adapter["target_modules"]) == sorted(query_value_names(stand_in.name))
    assert result.metrics["trainable_parameters"] < result.metrics["total_parameters"]
    assert [e["epoch"] for e in result.log_history if "eval_strict_f1" in e] == [1.0, 2.0]
    model, tokenizer, labels = token_classifier.load(result.run_dir / runs.MODEL_DIR, settings)
    tokens, gold, predicted = saved_predictions.read_predictions(result.run_dir / "predictions_test.tsv")
    assert predictor.predict(model, tokenizer, tokens, labels, settings.max_length, settings.overlap) == predicted
    assert any(tag != "O" for sentence in predicted for tag in sentence)   # it learnt something to reproduce


class TokenEcho(torch.nn.Module):
    """Logits from each position's token id alone: a word gets the same tag in any window, so windows merged
    correctly give exactly the tags of one window holding the whole sentence."""

    def __init__(self, labels: int):
        super().__init__()
        self.labels = labels
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.nn.functional.one_hot(input_ids % self.labels, self.labels) + self.anchor)


def test_a_sentence_longer_than_a_window_merges_to_one_tag_per_word_with_each_tokenizer(stand_in, fine_tuned):
    tokenizer = backbones.load_tokenizer(stand_in.backbone)
    windows = encoding.encode([LONG_SENTENCE], tokenizer, max_length=32, overlap=8)
    assert len(windows) >= 3 and all(len(w.input_ids) <= 32 for w in windows)
    assert set().union(*(set(w.word_ids) - {None} for w in windows)) == set(range(len(LONG_SENTENCE)))
    echo = TokenEcho(len(LABELS))
    windowed = predictor.predict(echo, tokenizer, [LONG_SENTENCE], LABELS, 32, 8, progress=False)
    assert windowed == predictor.predict(echo, tokenizer, [LONG_SENTENCE], LABELS, 512, 50, progress=False)
    assert len(set(windowed[0])) == len(LABELS)                       # the echo is not one constant tag
    settings, result = fine_tuned
    model, tokenizer, labels = token_classifier.load(result.run_dir / runs.MODEL_DIR, settings)
    tagged, = predictor.predict(model, tokenizer, [LONG_SENTENCE], labels, 32, 8, progress=False)
    assert len(tagged) == len(LONG_SENTENCE) and set(tagged) <= set(labels)


@pytest.fixture(scope="module")
def adapted(stand_in, tmp_path_factory):
    text = write_dapt_text(tmp_path_factory.mktemp("dapt-text"))
    settings = job_settings.load_dapt_config("smoke", {"backbone": str(stand_in.directory), "dapt_dir": str(text),
                                                 "passages": 32, "lora_target_modules": query_value_names(stand_in.name)})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dapt, "evaluation_sentences", lambda data_dir=None: [])
        return dapt.run(settings, tmp_path_factory.mktemp("dapt") / stand_in.name)


def test_dapt_runs_on_each_stand_in_calibrating_a_head_only_where_the_checkpoint_has_none(stand_in, adapted):
    m = adapted.metrics
    assert 1 < m["perplexity_before"] < float("inf") and 1 < m["perplexity_after"] < float("inf")
    if stand_in.name == "pubmedbert-large":
        assert m["head"] == "shipped with the checkpoint" and m["calibration_seconds"] == 0
    else:   # DeBERTa-v3 and the ELECTRA discriminator ship no masked-LM head
        assert m["head"] == f"calibrated: {m['optimizer_steps']} optimizer steps, encoder frozen"
        assert (adapted.run_dir / dapt.CALIBRATED_HEAD).is_file()
    adapter = atomic_files.read_json(adapted.run_dir / dapt.ADAPTER_DIR / "adapter_config.json")
    assert sorted(adapter["target_modules"]) == sorted(query_value_names(stand_in.name))


def test_the_dapt_adapter_of_each_stand_in_merges_into_its_token_classifier(stand_in, adapted):
    vocabulary = len(backbones.load_tokenizer(stand_in.backbone))
    plain = backbones.load_token_classifier(stand_in.backbone, LABELS, vocabulary).state_dict()
    merged = backbones.merge_adapter(backbones.load_token_classifier(stand_in.backbone, LABELS, vocabulary),
                                     adapted.run_dir / dapt.ADAPTER_DIR).state_dict()
    query = next(k for k in plain if k.endswith(f".{query_value_names(stand_in.name)[0]}.weight"))
    assert set(merged) == set(plain) and not torch.equal(plain[query], merged[query])


@pytest.mark.parametrize("module", ["sentencepiece", "google.protobuf"])
def test_without_sentencepiece_or_protobuf_the_deberta_stand_in_is_refused_naming_the_directory_and_packages(
        module, tmp_path, monkeypatch):
    directory = deberta_v3(tmp_path / "deberta")
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(OpenMedError, match=rf"'{directory}'.*SentencePiece model.*pip install sentencepiece protobuf"):
        backbones.load_tokenizer(backbones.resolve(str(directory)))


def test_the_papers_default_backbone_cached_from_the_hub_is_refused_without_sentencepiece(tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--microsoft--deberta-v3-large" / "snapshots" / "0123abc"
    deberta_v3(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setitem(sys.modules, "sentencepiece", None)
    with pytest.raises(OpenMedError, match=r"'microsoft/deberta-v3-large'.*0123abc/spm.model.*pip install sentencepiece"):
        backbones.load_tokenizer(backbones.resolve("deberta-v3-large"))
