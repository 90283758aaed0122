import time

import pytest

from openmed_repro.models import backbones
from openmed_repro.errors import OpenMedError


def test_the_papers_backbones_resolve_to_their_hub_ids():
    assert backbones.resolve("deberta-v3-large").source == "microsoft/deberta-v3-large"
    assert backbones.resolve("pubmedbert-large").source == "microsoft/BiomedNLP-BiomedBERT-large-uncased-abstract"
    assert backbones.resolve("bioelectra-large").source == "kamalkraj/bioelectra-large-discriminator-pubmed"


def test_the_offline_default_is_a_directory_shipped_in_a_package():
    minilm = backbones.resolve("minilm-l6")
    assert minilm.kind == "package"
    tokenizer = backbones.load_tokenizer(minilm)
    assert tokenizer.is_fast
    assert tokenizer.tokenize("lung cancer") == ["lung", "cancer"]


def test_a_local_model_directory_is_a_backbone(tmp_path):
    model = backbones.load_token_classifier(backbones.resolve("tiny-random-bert"), ["O", "B-X", "I-X"], 30522)
    model.save_pretrained(tmp_path)
    local = backbones.resolve(str(tmp_path))
    assert local.kind == "local"
    reloaded = backbones.load_token_classifier(local, ["O", "B-X", "I-X"], 30522)
    assert backbones.lora_config(local, reloaded, 4, 8, 0.0).target_modules == {"query", "value"}


def test_the_tiny_random_backbone_is_the_same_model_every_time():
    tiny = backbones.resolve("tiny-random-bert")
    first = backbones.load_token_classifier(tiny, ["O", "B-X", "I-X"], 30522).state_dict()
    second = backbones.load_token_classifier(tiny, ["O", "B-X", "I-X"], 30522).state_dict()
    assert all((first[k] == second[k]).all() for k in first)


def test_an_unknown_backbone_lists_the_known_ones():
    with pytest.raises(OpenMedError, match=r"unknown backbone 'bert-base'; known: deberta-v3-large.*minilm-l6"):
        backbones.resolve("bert-base")


def test_an_unreachable_hub_id_fails_fast_saying_how_to_use_a_local_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))           # an empty cache
    monkeypatch.setenv("HF_ENDPOINT", "http://10.255.255.1")  # a host that never answers
    started = time.monotonic()
    with pytest.raises(OpenMedError, match=r"microsoft/deberta-v3-large.*cannot be loaded.*-p backbone DIR"):
        backbones.load_tokenizer(backbones.resolve("deberta-v3-large"))
    assert time.monotonic() - started < 30  # bounded by the reachability probe, not a download's retries
