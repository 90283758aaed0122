"""The paper's released checkpoints scored on our test splits (openmed_repro/released/, notebooks/released.ipynb,
`make released`). The hub is out of reach here, so a stand-in saved in the test plays the checkpoint: a token
classifier in the OpenMed style (upper-case types, one the corpus lacks) whose every output is fixed by hand."""

import string
from pathlib import Path

import huggingface_hub
import papermill
import pytest
import torch
from transformers import BertConfig, BertForTokenClassification, BertTokenizer

from openmed_repro import cli
from openmed_repro.data import corpora
from openmed_repro.errors import OpenMedError
from openmed_repro.evaluation import comparison
from openmed_repro.infra import atomic_files, layout, paths
from openmed_repro.models import backbones
from openmed_repro.released import checkpoints, labels, scoring
from openmed_repro.report import notebook_parameters, record, released_scores, results
from openmed_repro.data import saved_predictions

from conftest import write_split

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["lung", "cancer", "aspirin", "cells", "with", "patients", "kills", "helps"]
VOCAB = SPECIALS + WORDS + list(string.ascii_lowercase) + ["##" + c for c in string.ascii_lowercase]
PREFIXED = ["O", "B-DISEASE", "I-DISEASE", "B-CHEM", "I-CHEM"]
PREFIXED_OUTPUTS = {"lung": "B-DISEASE", "cancer": "I-DISEASE", "aspirin": "B-CHEM"}   # every other sub-word: O
BARE = ["O", "DISEASE", "CHEM"]
BARE_OUTPUTS = {"lung": "DISEASE", "cancer": "DISEASE", "aspirin": "CHEM"}
POSITIONS = 64

# The corpus's test split: "cancer" alone opens with the stand-in's I-DISEASE, which strict IOB2 does not count.
TEST = [[("Lung", "B-Disease"), ("cancer", "I-Disease"), ("kills", "O")],
        [("Aspirin", "O"), ("helps", "O"), ("lung", "B-Disease"), ("cancer", "I-Disease"), ("patients", "O")],
        [("cells", "O"), ("with", "O"), ("cancer", "B-Disease")]]
DISEASE_MAP = {"DISEASE": "Disease"}


def released_stand_in(directory, own_labels=PREFIXED, outputs=PREFIXED_OUTPUTS):
    """A token classifier saved as a released checkpoint is (config.json with its id2label, model.safetensors,
    tokenizer.json), whose outputs are fixed: no encoder layer, each word's embedding one-hot on the label it
    predicts, an identity head. Its tokenizer names no maximum length, so its position embeddings bound it."""
    model_config = BertConfig(vocab_size=len(VOCAB), hidden_size=len(own_labels), num_hidden_layers=0,
                              num_attention_heads=1, intermediate_size=4, max_position_embeddings=POSITIONS,
                              hidden_dropout_prob=0.0, id2label=dict(enumerate(own_labels)),
                              label2id={label: index for index, label in enumerate(own_labels)})
    model = BertForTokenClassification(model_config)
    embedding = torch.zeros(len(VOCAB), len(own_labels))
    embedding[:, 0] = 1.0
    for word, label in outputs.items():
        embedding[VOCAB.index(word)] = torch.nn.functional.one_hot(torch.tensor(own_labels.index(label)),
                                                                   len(own_labels)).float()
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.copy_(embedding)
        model.bert.embeddings.position_embeddings.weight.zero_()
        model.bert.embeddings.token_type_embeddings.weight.zero_()
        model.classifier.weight.copy_(torch.eye(len(own_labels)))
        model.classifier.bias.zero_()
    model.save_pretrained(directory)
    BertTokenizer(vocab={token: index for index, token in enumerate(VOCAB)}).save_pretrained(directory)
    return directory


@pytest.fixture
def corpus(tmp_path):
    """A corpus directory with only the test split: nothing is trained, so nothing else is read."""
    directory = tmp_path / "mycorpus"
    write_split(directory / "test.tsv", TEST)
    return directory


@pytest.fixture
def checkpoint(tmp_path):
    return released_stand_in(tmp_path / "OpenMed-NER-StandIn-1K")


def settings(corpus, model, **values):
    return checkpoints.configure({"dataset": str(corpus), "model": str(model), "labels": DISEASE_MAP, **values})


@pytest.fixture
def hub_out_of_reach(monkeypatch):
    """No checkpoint in the cache, and the hub off (HF_HUB_OFFLINE): what a machine without a network sees."""
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_a_released_style_checkpoint_in_a_directory_is_scored_on_the_test_split_end_to_end(corpus, checkpoint,
                                                                                             tmp_path):
    result = scoring.run(settings(corpus, checkpoint), tmp_path / "runs" / "released" / "scored")
    metrics = result.metrics
    assert metrics["test"]["strict"]["f1"] == pytest.approx(0.8)      # 2 of 3 found; the stray I- is no entity
    assert metrics["test"]["default"]["f1"] == pytest.approx(1.0)     # seqeval's default mode accepts it
    assert metrics["labels"]["checkpoint"] == PREFIXED and metrics["labels"]["unmapped_types"] == ["CHEM"]
    assert (metrics["labels"]["removed_entities"], metrics["labels"]["removed_words"]) == (1, 1)   # aspirin
    assert metrics["labels"]["removed_by_type"] == {"CHEM": 1}
    assert metrics["max_length"] == POSITIONS and metrics["sentences"] == {"test": 3}
    tokens, gold, predicted = saved_predictions.read_predictions(result.run_dir / "predictions_test.tsv")
    assert predicted == [["B-Disease", "I-Disease", "O"], ["O", "O", "B-Disease", "I-Disease", "O"],
                         ["O", "O", "I-Disease"]]
    assert atomic_files.read_json(result.run_dir / "config.json")["labels"] == DISEASE_MAP
    assert atomic_files.read_json(result.run_dir / "provenance.json")["data"]["files"]["test"]["sentences"] == 3
    assert comparison.load([result.run_dir, result.run_dir])[0].score.strict.f1 == pytest.approx(0.8)


def test_bare_type_labels_become_iob2_entities_and_a_run_of_one_type_one_entity(corpus, tmp_path):
    checkpoint = released_stand_in(tmp_path / "bare", BARE, BARE_OUTPUTS)
    result = scoring.run(settings(corpus, checkpoint), tmp_path / "runs" / "released" / "bare")
    _, _, predicted = saved_predictions.read_predictions(result.run_dir / "predictions_test.tsv")
    assert predicted[0] == ["B-Disease", "I-Disease", "O"] and predicted[2] == ["O", "O", "B-Disease"]
    assert result.metrics["test"]["strict"]["f1"] == pytest.approx(1.0)


def test_unmapped_types_become_o_and_every_entity_they_formed_is_counted():
    mapped = labels.apply({"DISEASE": "Disease"}, [["B-CHEM", "I-CHEM", "O", "B-Disease", "GENE", "GENE", "CHEM"]])
    assert mapped.tags == [["O", "O", "O", "B-Disease", "O", "O", "O"]]
    assert (mapped.removed_entities, mapped.removed_words) == (3, 5)
    assert mapped.removed_by_type == {"CHEM": 2, "GENE": 1}


def test_a_label_map_that_does_not_cover_the_corpus_types_is_refused_naming_the_missing_ones(tmp_path, checkpoint):
    directory = tmp_path / "two-types"
    write_split(directory / "test.tsv", [[("aspirin", "B-Chemical"), ("cancer", "B-Disease")]])
    with pytest.raises(OpenMedError, match=r"no label of the checkpoint maps onto the corpus's Chemical; its types: "
                                           r"DISEASE, CHEM"):
        scoring.run(settings(directory, checkpoint, labels={"DISEASE": "Disease", "GENE": "Chemical"}),
                    tmp_path / "runs" / "released" / "refused")
    assert not (tmp_path / "runs" / "released" / "refused" / "predictions_test.tsv").exists()


def test_a_label_map_onto_a_type_the_corpus_lacks_is_refused(corpus, checkpoint, tmp_path):
    with pytest.raises(OpenMedError, match=r"maps onto Chemical, which the corpus lacks; its types: Disease"):
        scoring.run(settings(corpus, checkpoint, labels={"DISEASE": "Disease", "CHEM": "Chemical"}),
                    tmp_path / "runs" / "released" / "refused")


def test_a_finished_run_is_read_back_without_the_checkpoint_or_the_hub(corpus, checkpoint, tmp_path, hub_out_of_reach):
    run_dir = tmp_path / "runs" / "released" / "scored"
    first = scoring.run(settings(corpus, checkpoint), run_dir)
    for path in checkpoint.iterdir():
        path.unlink()
    checkpoint.rmdir()
    again = scoring.attempt(settings(corpus, checkpoint), run_dir)
    assert again.result.reused and again.result.metrics == first.metrics


def test_an_unreachable_checkpoint_is_not_run_here_in_one_line_and_nothing_is_written(corpus, tmp_path,
                                                                                      hub_out_of_reach):
    run_dir = tmp_path / "runs" / "released" / "offline"
    attempt = scoring.attempt(settings(corpus, "OpenMed/OpenMed-NER-DiseaseDetect-SuperClinical-434M"), run_dir)
    assert attempt.result is None and "\n" not in attempt.not_run
    assert attempt.not_run.startswith("not run here: OpenMed/OpenMed-NER-DiseaseDetect-SuperClinical-434M cannot be "
                                      "reached (HF_HUB_OFFLINE is set")
    assert "--local-dir DIR` there and pass -p model DIR" in attempt.not_run and not run_dir.exists()
    assert released_scores.headline(attempt).data == attempt.not_run
    assert released_scores.scores(attempt) is None and released_scores.against_ours(attempt) is None


def test_make_released_without_a_network_fails_in_one_line_per_corpus(capsys, hub_out_of_reach, tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(layout.RECORD_DIR_ENV, str(tmp_path / "results"))
    assert cli.main(["released", "--record"]) == 2
    printed, error = capsys.readouterr()
    lines = printed.splitlines()
    assert [line.split(":")[0] for line in lines] == [entry.corpus for entry in checkpoints.catalogue()]
    assert all("not run here" in line and "cannot be reached" in line for line in lines)
    assert error == f"openmed-repro: error: {len(lines)} of {len(lines)} released checkpoints not scored " \
                    "(one line each above)\n"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_the_corpus_s_checkpoint_and_its_map_come_from_released_yaml_also_for_a_local_copy(tmp_path):
    default = checkpoints.configure({"dataset": "bc5cdr_disease"})
    assert default.model == "OpenMed/OpenMed-NER-DiseaseDetect-SuperClinical-434M"
    assert default.labels == {"DISEASE": "Disease"}
    local = tmp_path / "OpenMed-NER-DiseaseDetect-SuperClinical-434M"
    assert checkpoints.configure({"dataset": "bc5cdr_disease", "model": str(local)}).labels == {"DISEASE": "Disease"}
    with pytest.raises(OpenMedError, match=r"no released checkpoint is paired with ncbi_disease"):
        checkpoints.configure({"dataset": "ncbi_disease"})
    with pytest.raises(OpenMedError, match=r"elsewhere/model is not paired with s800 .* give labels"):
        checkpoints.configure({"dataset": "s800", "model": "elsewhere/model"})
    assert layout.run_directory("released", {"dataset": "bc5cdr_disease", "model": default.model}) == \
        Path("runs/released/bc5cdr_disease-OpenMed-NER-DiseaseDetect-SuperClinical-434M")


@pytest.mark.parametrize("parameters, message", [
    ({"dataset": "ncbi"}, r"no released checkpoint is paired with ncbi"),
    ({"overlap": -1}, r"parameter overlap=-1 must not be negative"),
    ({"labels": ["DISEASE"]}, r"parameter labels must map names to names"),
    ({"trials": 0}, r"parameter trials=0 must be positive"),
    ({"modle": "OpenMed/x"}, r"unknown notebook parameter\(s\) modle"),
])
def test_the_chapter_s_parameters_are_checked_before_any_work_naming_the_parameter(parameters, message):
    with pytest.raises(OpenMedError, match=message):
        notebook_parameters.released_config({"dataset": "bc5cdr_disease", **parameters})


def test_released_yaml_pairs_each_checkpoint_with_a_registered_corpus_and_maps_only_onto_its_types():
    catalogue = checkpoints.catalogue()
    assert {entry.corpus for entry in catalogue} == {"bc5cdr_disease", "bc5cdr_chem", "bc4chemd", "bc2gm", "jnlpba",
                                                     "fsu", "bionlp13cg", "anatem", "linnaeus"}
    assert set(checkpoints.unpaired()) == {"ncbi_disease", "s800", "cll"}
    assert set(checkpoints.unpaired()) | {e.corpus for e in catalogue} == set(corpora.registry())
    for entry in catalogue:
        types = corpora.spec(entry.corpus).entity_types
        assert not types or set(entry.labels.values()) == set(types), entry.corpus   # fsu's types come from its files
        assert entry.model.startswith("OpenMed/OpenMed-NER-") and entry.pairing and entry.reported_f1


def test_the_checkpoints_own_maximum_length_bounds_the_windows():
    class Tokenizer:
        model_max_length = int(1e30)

    bert = BertConfig(max_position_embeddings=512)
    roberta = config_of("xlm-roberta", 514)
    assert backbones.maximum_length(Tokenizer(), bert) == 512
    assert backbones.maximum_length(Tokenizer(), roberta) == 512
    Tokenizer.model_max_length = 256
    assert backbones.maximum_length(Tokenizer(), bert) == 256


def config_of(model_type: str, positions: int):
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, max_position_embeddings=positions)


def test_the_cpu_estimate_scales_the_measured_speed_by_the_parameter_count():
    measured = paths.read_parameters("released.yaml")["cpu_estimate"]
    words = measured["measured_words_per_second"] * 60
    assert checkpoints.estimated_seconds(measured["measured_parameters"], words) == pytest.approx(60)
    assert checkpoints.estimated_seconds(10 * measured["measured_parameters"], words) == pytest.approx(600)


def test_table_4_shows_the_released_checkpoint_scored_here_beside_the_paper(checkpoint, tmp_path):
    disease = tmp_path / "bc5cdr_disease"          # read as that corpus's copy: its row shows the stand-in's score
    write_split(disease / "test.tsv", TEST)
    root = tmp_path / "runs"
    scoring.run(settings(disease, checkpoint), root / "released" / "scored")
    table = results.table(root, samples=100)
    columns = list(table.columns)
    assert columns[columns.index("paper F1") + 1] == results.RELEASED
    assert table.loc["bc5cdr_disease", results.RELEASED] == "80.00"
    assert table.loc["bc5cdr_chem", results.RELEASED] == "not scored here"
    assert table.loc["ncbi_disease", results.RELEASED] == "none released"


def test_the_released_run_is_recorded_and_tested_against_our_best_run_on_the_corpus(corpus, checkpoint, tmp_path):
    root = tmp_path / "runs"
    released = scoring.run(settings(corpus, checkpoint), root / "released" / "scored")
    ours = root / "finetune" / "ours"
    ours.mkdir(parents=True)
    saved_predictions.write_predictions(ours / "predictions_test.tsv", corpora.load(corpus, splits=("test",)).test,
                           [[tag for _, tag in sentence] for sentence in TEST])
    atomic_files.write_json(ours / "metrics.json", {"dataset": str(corpus), "backbone": "minilm-l6", "method": "lora",
                                            "profile": "cpu", "seed": 42, "sentences": {"train": 1},
                                            "devel": {"strict": {"f1": 0.9}}, "test": {"strict": {"f1": 1.0}}})
    tested = released_scores.against_ours(scoring.Attempt(released), root, trials=500)
    assert list(tested["run A"]) == [results.RELEASED] and tested["run B"].iloc[0].startswith("ours: minilm-l6")
    assert tested["F1 A"].iloc[0] == 80.0 and tested["F1 B"].iloc[0] == 100.0
    shown = released_scores.scores(scoring.Attempt(released), samples=200)
    assert shown.loc[results.RELEASED, "F1 (strict)"] == 80.0 and "as paired" in shown.index[2]
    assert "set to O: CHEM, which removed predicted entities: 1 (words: 1; by type: CHEM 1)" in \
        released_scores.label_map(scoring.Attempt(released)).data
    assert released.run_dir in record.finished(root)
    written = record.record([released.run_dir], tmp_path / "results")
    assert not written.refused and (tmp_path / "results" / "released" / "scored" / "predictions.json.gz").is_file()


NOTEBOOK = paths.PROJECT_ROOT / "notebooks" / "released.ipynb"


def execute(tmp_path, **parameters):
    executed = papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "executed.ipynb"), parameters=parameters,
                                          cwd=str(tmp_path), progress_bar=False, kernel_name="python3")
    return ["".join(str(output) for output in cell.get("outputs", [])) for cell in executed.cells]


def test_the_chapter_scores_a_stand_in_and_says_not_run_here_in_one_line_without_the_hub(corpus, checkpoint,
                                                                                          tmp_path, monkeypatch):
    outputs = execute(tmp_path, dataset=str(corpus), model=str(checkpoint), labels=DISEASE_MAP,
                      output_dir=str(tmp_path / "runs" / "released" / "chapter"), ours_dir=str(tmp_path / "none"))
    shown = "\n".join(outputs)
    assert "strict F1 **80.00**" in shown and "set to O: CHEM" in shown and "No fine-tuning run of ours" in shown
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")            # the kernel's huggingface_hub reads it when imported
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    offline = [output for output in execute(tmp_path, dataset="bc5cdr_disease") if output]
    assert len(offline) == 1 and "not run here: OpenMed/OpenMed-NER-DiseaseDetect-SuperClinical-434M" in offline[0]
    assert not (tmp_path / "runs" / "released" / "bc5cdr_disease-OpenMed-NER-DiseaseDetect-SuperClinical-434M").exists()
