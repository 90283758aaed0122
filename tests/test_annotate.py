"""Annotating raw text with a trained run: offsets, sliding windows, malformed input, the command, Spark."""

import json
import os
import shutil
import subprocess
import sys
from functools import partial
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openmed_repro.annotation import annotate
from openmed_repro import cli
from openmed_repro.data import iob, sentences
from openmed_repro.models import predictor, saved_model
from openmed_repro.infra import atomic_files, job_settings, runs
from openmed_repro.training import finetune
from openmed_repro.errors import OpenMedError
from openmed_repro.data import saved_predictions

ABSTRACT = ("Many patients with lung cancer were treated in the study. Asthma and diabetes, e.g. in "
            "cells of patients with breast cancer, were often treated with aspirin!")


@pytest.fixture(scope="module")
def run_dir(synthetic_corpus, tmp_path_factory):
    """A smoke-profile fine-tuning run that has learned the synthetic corpus's disease names."""
    directory = tmp_path_factory.mktemp("annotate") / "run"
    finetune.run(job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "epochs": 4}), directory)
    return directory


@pytest.fixture(scope="module")
def annotator(run_dir):
    return annotate.Annotator(run_dir)


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_entity_offsets_point_at_the_entity_text_in_the_input(annotator):
    documents = [annotate.Document("a", ABSTRACT, 1), annotate.Document("b", "  Lung cancer\tkills. " * 3, 2)]
    found = annotator.annotate(documents)
    assert sum(map(len, found)) > 0
    for document, entities in zip(documents, found):
        for entity in entities:
            assert entity.id == document.id
            assert document.text[entity.start:entity.end] == entity.text
            assert entity.text == entity.text.strip() and entity.type == "Disease"
            assert 0 < entity.score <= 1


def test_a_document_longer_than_one_window_is_annotated_to_its_end(annotator):
    """Smoke windows hold 32 sub-words: one 600-word sentence goes through many windows, none truncated."""
    text = " ".join(["patients with lung cancer and"] * 120)
    entities = annotator.annotate([annotate.Document("long", text, 1)])[0]
    assert annotator.run_config.max_length == 32
    assert entities and max(e.end for e in entities) > len(text) - 40
    assert all(text[e.start:e.end] == e.text for e in entities)


def test_annotation_finds_exactly_the_entities_of_the_tags_evaluation_predicted(run_dir):
    """One predictor: annotating the run's test sentences as documents (merged LoRA, small token-budget
    batches) gives the spans of the tags fine-tuning's evaluation wrote for them (unmerged, its own batches)."""
    tokens, _, predicted = saved_predictions.read_predictions(run_dir / "predictions_test.tsv")
    documents = [annotate.Document(str(i), " ".join(words), i) for i, words in enumerate(tokens)]
    found = annotate.Annotator(run_dir, batch_size=3, max_batch_tokens=40).annotate(documents)
    for document, entities, tags in zip(documents, found, predicted):
        starts = [start for start, _ in sentences.words(document.text)]
        ends = [end for _, end in sentences.words(document.text)]
        assert [(starts.index(e.start), ends.index(e.end) + 1, e.type) for e in entities] == iob.spans_of(tags)
    assert sum(map(len, found)) > len(documents) / 2


def test_i_tags_continue_an_entity_and_a_stray_i_opens_one():
    document = annotate.Document("d", "lung cancer in the colon tumor", 1)
    spans = sentences.words(document.text)
    tags = ["B-Disease", "I-Disease", "O", "O", "I-Disease", "I-Disease"]
    entities = annotate.entities_of(document, spans, tags, [0.9, 0.7, 1, 1, 0.5, 0.6])
    assert [(e.text, e.score) for e in entities] == [("lung cancer", 0.8), ("colon tumor", 0.55)]


def test_malformed_jsonl_lines_are_reported_with_line_numbers_and_skipped(tmp_path, capsys):
    source = write_lines(tmp_path / "in.jsonl", [
        json.dumps({"id": "p1", "text": "Lung cancer."}),
        "{not json",
        "",
        json.dumps({"id": "p4", "body": "no text field"}),
        json.dumps(["a", "list"]),
        json.dumps({"id": 6, "text": "Asthma in patients."}),
        json.dumps({"text": "no id"}),
    ])
    documents, problems = annotate.read_documents(source)
    assert [(d.id, d.line) for d in documents] == [("p1", 1), ("6", 6)]
    assert [(p.line, p.reason.split(" (")[0]) for p in problems] == [
        (2, "invalid JSON"), (3, "empty line"), (4, "no 'text' field"), (5, "not a JSON object but list"),
        (7, "no 'id' field")]
    annotate.report(problems, source)
    assert f"{source}:2: invalid JSON" in capsys.readouterr().err


def test_with_on_error_fail_the_first_malformed_line_stops_the_run_naming_it(tmp_path):
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": 1, "text": "ok"}), "", "{"])
    with pytest.raises(OpenMedError, match=r"in.jsonl:2: empty line"):
        annotate.read_documents(source, on_error="fail")


def test_plain_text_is_one_document_a_line_with_the_line_number_as_id(tmp_path):
    source = write_lines(tmp_path / "in.txt", ["Lung cancer kills.", "   ", "Asthma."])
    documents, problems = annotate.read_documents(source)
    assert [(d.id, d.text) for d in documents] == [("1", "Lung cancer kills."), ("3", "Asthma.")]
    assert problems == [annotate.Problem(2, "empty line")]


def test_a_document_that_is_no_text_is_skipped_and_every_other_one_annotated(run_dir, tmp_path, capsys):
    """JSON's "\\ud800" is a lone UTF-16 surrogate: valid JSON, no character of any text. The tokenizer
    raised on it, and the run lost the other documents."""
    lines = [json.dumps({"id": "a", "text": ABSTRACT}), '{"id": "b", "text": "Asthma \\ud800 in patients."}',
             json.dumps({"id": "c", "text": "Lung cancer and asthma."})]
    source = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "entities.jsonl"
    assert cli.main(["annotate", "--run", str(run_dir), str(source), str(out)]) == 0
    captured = capsys.readouterr()
    assert (f"{source}:2: field 'text' holds a lone surrogate (\\ud800 at character 8), which is not text; "
            "skipped") in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["documents"] == 2 and summary["skipped_lines"] == [2]
    annotate.annotate_file(run_dir, write_lines(tmp_path / "good.jsonl", lines[::2]), tmp_path / "good-entities.jsonl",
                           progress=False)
    assert out.read_text() == (tmp_path / "good-entities.jsonl").read_text() != ""


def failing_on(word: str):
    """predictor.predict_with_scores, failing on any batch that holds `word`, as a device error would."""
    predict = predictor.predict_with_scores

    def predict_or_fail(model, tokenizer, sentences, *args, **kwargs):
        if any(word in token for sentence in sentences for token in sentence):
            raise RuntimeError("CUDA error: device-side assert triggered\nCompile with TORCH_USE_CUDA_DSA")
        return predict(model, tokenizer, sentences, *args, **kwargs)
    return predict_or_fail


def test_a_document_whose_prediction_fails_costs_only_itself_or_stops_the_run_with_on_error_fail(
        run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(predictor, "predict_with_scores", failing_on("poison"))
    texts = [f"Lung cancer in patient {i}." for i in range(5)]
    texts[2] = "Asthma and poison ivy."
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": i, "text": t}) for i, t in enumerate(texts)])
    summary = annotate.annotate_file(run_dir, source, tmp_path / "entities.jsonl", progress=False, chunk_documents=2)
    failed = annotate.Problem(3, "annotation failed (RuntimeError: CUDA error: device-side assert triggered)")
    assert summary.problems == [failed] and summary.documents == 4
    assert f"{source}:3: {failed.reason}; skipped" in capsys.readouterr().err
    assert {e["id"] for e in annotate.read_entities(tmp_path / "entities.jsonl")} <= {"0", "1", "3", "4"}
    with pytest.raises(OpenMedError, match=r"in.jsonl:3: annotation failed \(RuntimeError"):
        annotate.annotate_file(run_dir, source, tmp_path / "stopped.jsonl", progress=False, on_error="fail")
    assert not (tmp_path / "stopped.jsonl").exists()


def test_on_spark_a_document_whose_annotation_fails_is_reported_and_its_partition_goes_on(annotator, monkeypatch):
    from openmed_repro.annotation import spark as spark_annotate

    monkeypatch.setattr(predictor, "predict_with_scores", failing_on("poison"))
    monkeypatch.setattr(spark_annotate, "_annotator", lambda *settings: annotator)
    documents = [annotate.Document(str(i), text, i + 1) for i, text in
                 enumerate(["Lung cancer.", "poison", "Asthma in patients.", "Colon tumor."])]
    failures = []
    partition = partial(spark_annotate._annotate_partition, "run", 32, None, 1, "fp32", 2)
    entities = list(partition("skip", "in.jsonl", SimpleNamespace(add=failures.extend), iter(documents)))
    assert failures == [annotate.Problem(2, "annotation failed (RuntimeError: CUDA error: device-side assert "
                                            "triggered)")]
    assert entities == [e for found in annotator.annotate([documents[0], *documents[2:]]) for e in found]
    with pytest.raises(OpenMedError, match=r"^in.jsonl:2: annotation failed"):
        list(partition("fail", "in.jsonl", SimpleNamespace(add=failures.extend), iter(documents)))


def test_entities_whose_text_holds_a_unicode_line_separator_are_read_back(tmp_path):
    """JSON leaves U+2028 and U+0085 unescaped; they end a line for str.splitlines, never for JSONL."""
    entities = [annotate.Entity("d", 0, 12, "Disease", "lung\u2028cancer", 0.9),
                annotate.Entity("d", 20, 26, "Disease", "a\x85sthma", 0.8)]
    (tmp_path / "entities.jsonl").write_text("".join(e.json_line() + "\n" for e in entities), encoding="utf-8")
    assert annotate.read_entities(tmp_path / "entities.jsonl") == [json.loads(e.json_line()) for e in entities]


AWKWARD = ["lung", " cancer", "\n", "\r", "\t", "\x00", "\x85", "\u2028", "\u200b", "\ufeff", "\ud800",
           "\U0001f600", "e\u0301"]
ANY_TEXT = st.lists(st.one_of(st.characters(exclude_categories=()), st.sampled_from(AWKWARD)), max_size=40) \
    .map("".join)   # st.text would never draw a lone surrogate


@settings(max_examples=25, deadline=None)
@given(texts=st.lists(ANY_TEXT, min_size=1, max_size=4))
def test_documents_of_any_text_are_annotated_or_reported_and_their_entities_read_back(annotator, tmp_path_factory,
                                                                                      texts):
    """Fuzzing the whole way from an input line to the output read back, through the model."""
    read = [annotate.document_of_line(json.dumps({"id": i, "text": t}).encode(), i + 1, "jsonl")
            for i, t in enumerate(texts)]
    documents = [d for d in read if isinstance(d, annotate.Document)]
    results = annotator.annotate_each(documents)
    assert len(results) == len(documents)
    entities = [e for found in results if not isinstance(found, annotate.Problem) for e in found]
    path = tmp_path_factory.mktemp("fuzz") / "entities.jsonl"
    path.write_text("".join(e.json_line() + "\n" for e in entities), encoding="utf-8")
    for entity in annotate.read_entities(path):
        assert texts[int(entity["id"])][entity["start"]:entity["end"]] == entity["text"] != ""


def test_the_command_writes_jsonl_entities_and_reports_skipped_lines(run_dir, tmp_path, capsys):
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": "a", "text": ABSTRACT}), "oops",
                                                 json.dumps({"id": "b", "text": "Lung cancer and asthma."})])
    out = tmp_path / "out" / "entities.jsonl"
    assert cli.main(["annotate", "--run", str(run_dir), str(source), str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{source}:2: invalid JSON" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["documents"] == 2 and summary["skipped_lines"] == [2]
    texts = {"a": ABSTRACT, "b": "Lung cancer and asthma."}
    entities = annotate.read_entities(out)
    assert len(entities) == summary["entities"] > 0
    assert all(set(e) == {"id", "start", "end", "type", "text", "score"} for e in entities)
    assert all(texts[e["id"]][e["start"]:e["end"]] == e["text"] for e in entities)
    assert cli.main(["annotate", "--run", str(run_dir), "--on-error", "fail", str(source), str(out)]) == 2
    assert "in.jsonl:2: invalid JSON" in capsys.readouterr().err


def test_an_unfinished_or_foreign_run_directory_is_refused(tmp_path):
    with pytest.raises(OpenMedError, match="holds no model/ of a fine-tuning run"):
        annotate.Annotator(tmp_path)


@pytest.mark.parametrize("name, keep", [("config.json", 100), (f"model/{saved_model.ADAPTER_WEIGHTS}", 1000),
                                        ("model/labels.json", 0)])
def test_a_damaged_run_is_refused_in_one_line_naming_the_file(run_dir, tmp_path, capsys, name, keep):
    damaged = tmp_path / "run"
    shutil.copytree(run_dir, damaged, ignore=shutil.ignore_patterns("checkpoints"))
    (damaged / name).write_bytes((damaged / name).read_bytes()[:keep])
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": "a", "text": ABSTRACT})])
    out = tmp_path / "entities.jsonl"
    assert cli.main(["annotate", "--run", str(damaged), str(source), str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"openmed-repro: error: {damaged / name}: ") and error.count("\n") == 1
    assert not out.exists()


def test_the_console_script_is_installed():
    script = shutil.which("openmed-repro", path=os.path.dirname(sys.executable))
    assert script, "pip install -e . installs the openmed-repro command"
    result = subprocess.run([script, "annotate", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--on-error" in result.stdout


def spark_available() -> bool:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return False
    return shutil.which("java") is not None


@pytest.fixture(scope="module")
def spark():
    if not spark_available():
        if os.environ.get("OPENMED_REQUIRE_SPARK"):
            pytest.fail("PySpark or Java missing: pip install '.[spark]' and a JRE (CI installs both)")
        pytest.skip("PySpark or Java missing (pip install '.[spark]'; CI installs both)")
    from openmed_repro.annotation import spark as spark_annotate

    session = spark_annotate.session("local[2]")
    yield session
    session.stop()


def test_spark_local_mode_writes_exactly_the_in_process_output(run_dir, spark, tmp_path):
    from openmed_repro.annotation import spark as spark_annotate

    lines = [json.dumps({"id": f"doc{i}", "text": f"{ABSTRACT} Case {i}: colon tumor in patients."}) for i in range(12)]
    lines.insert(5, "{broken")
    source = write_lines(tmp_path / "in.jsonl", lines)
    annotate.annotate_file(run_dir, source, tmp_path / "local.jsonl", progress=False)
    summary = spark_annotate.annotate(run_dir, str(source), str(tmp_path / "spark"), spark=spark, partitions=3,
                                      chunk_documents=4)
    assert summary.documents == 12 and [p.line for p in summary.problems] == [6]
    assert len(list((tmp_path / "spark").glob("part-*"))) >= 2
    parts = "".join(p.read_text() for p in sorted((tmp_path / "spark").glob("part-*")))
    assert parts == (tmp_path / "local.jsonl").read_text() and parts


def test_spark_skips_exactly_the_lines_in_process_annotation_skips(run_dir, spark, tmp_path):
    """One reader for both: on Spark, invalid UTF-8 was annotated with replacement characters and a bare
    carriage return cut a line in two."""
    from openmed_repro.annotation import spark as spark_annotate

    good = [json.dumps({"id": f"d{i}", "text": f"{ABSTRACT} Case {i}: colon tumor."}).encode() for i in range(6)]
    lines = [b"\xef\xbb\xbf" + good[0], good[1], b'{"id": "latin-1", "text": "caf\xe9 and lung cancer"}', good[2],
             b'{"id": "surrogate", "text": "\\ud800 asthma"}', good[3] + b"\r" + good[4], good[5] + b"\r"]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    here = annotate.annotate_file(run_dir, source, tmp_path / "local.jsonl", progress=False)
    there = spark_annotate.annotate(run_dir, str(source), str(tmp_path / "spark"), spark=spark, partitions=3)
    assert [p.line for p in here.problems] == [3, 5, 6]
    assert there.problems == here.problems and there.documents == here.documents == 4
    parts = "".join(p.read_text() for p in sorted((tmp_path / "spark").glob("part-*")))
    assert parts == (tmp_path / "local.jsonl").read_text() and parts


def test_a_failed_spark_job_leaves_nothing_behind_and_the_same_command_runs_again(run_dir, spark, tmp_path):
    """Its executors cannot load the run (an unknown backbone): the job fails with that one-line reason, and
    no half-written output directory refuses the rerun once the run is fixed."""
    from openmed_repro.annotation import spark as spark_annotate

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("checkpoints"))
    recorded = atomic_files.read_json(run / runs.CONFIG)
    atomic_files.write_json(run / runs.CONFIG, {**recorded, "backbone": "no-such-backbone"})
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": i, "text": ABSTRACT}) for i in range(3)])
    out = tmp_path / "entities"
    with pytest.raises(OpenMedError, match=r"^parameter backbone: unknown backbone 'no-such-backbone'"):
        spark_annotate.annotate(run, str(source), str(out), spark=spark)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "run"]
    atomic_files.write_json(run / runs.CONFIG, recorded)
    summary = spark_annotate.annotate(run, str(source), str(out), spark=spark)
    assert summary.documents == 3 and len(annotate.read_entities(out)) == summary.entities > 0


def test_spark_reads_and_writes_parquet_with_the_same_entities(run_dir, spark, tmp_path):
    from openmed_repro.annotation import spark as spark_annotate

    texts = [(f"p{i}", f"Lung cancer {i}. {ABSTRACT}") for i in range(5)] + [("p5", None)]
    spark.createDataFrame(texts, "id string, text string").write.parquet(str(tmp_path / "in.parquet"))
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": i, "text": t}) for i, t in texts[:5]])
    annotate.annotate_file(run_dir, source, tmp_path / "local.jsonl", progress=False)
    summary = spark_annotate.annotate(run_dir, str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), spark=spark)
    assert [p.reason for p in summary.problems] == ["no 'text' field"]
    rows = [row.asDict() for row in spark.read.parquet(str(tmp_path / "out.parquet")).collect()]
    key = lambda e: (e["id"], e["start"])  # noqa: E731
    assert sorted(rows, key=key) == sorted(annotate.read_entities(tmp_path / "local.jsonl"), key=key)
    with pytest.raises(OpenMedError, match=r"in.parquet:6: no 'text' field"):
        spark_annotate.annotate(run_dir, str(tmp_path / "in.parquet"), str(tmp_path / "again"), spark=spark,
                                on_error="fail")


def test_the_same_spark_command_run_twice_gives_the_same_output_and_a_failed_rerun_keeps_the_last(run_dir, spark,
                                                                                                 tmp_path):
    from openmed_repro.annotation import spark as spark_annotate

    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": i, "text": ABSTRACT}) for i in range(4)])
    out = tmp_path / "entities"
    spark_annotate.annotate(run_dir, str(source), str(out), spark=spark, partitions=2)
    first = {p.name: p.read_text() for p in out.glob("part-*")}
    spark_annotate.annotate(run_dir, str(source), str(out), spark=spark, partitions=2)
    assert {p.name: p.read_text() for p in out.glob("part-*")} == first and first
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("checkpoints"))
    atomic_files.write_json(run / runs.CONFIG, {**atomic_files.read_json(run / runs.CONFIG), "backbone": "no-such-backbone"})
    with pytest.raises(OpenMedError, match="unknown backbone"):
        spark_annotate.annotate(run, str(source), str(out), spark=spark)
    assert {p.name: p.read_text() for p in out.glob("part-*")} == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entities", "in.jsonl", "run"]


def test_empty_and_blank_documents_are_counted_apart_in_the_summary(run_dir, tmp_path, capsys):
    lines = [json.dumps({"id": "a", "text": ABSTRACT}), json.dumps({"id": "b", "text": ""}),
             json.dumps({"id": "c", "text": "   \t "})]
    source = write_lines(tmp_path / "in.jsonl", lines)
    summary = annotate.annotate_file(run_dir, source, tmp_path / "out.jsonl", progress=False)
    assert (summary.documents, summary.empty) == (3, 2)
    assert cli.main(["annotate", "--run", str(run_dir), str(source), str(tmp_path / "again.jsonl")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["documents"] == 3 and printed["empty_documents"] == 2
