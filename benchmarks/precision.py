"""Prediction and training below fp32 on this CPU, against fp32 in the same process so that ratios hold on a
busy machine: (a) prediction of a finished run's test split in fp32, bf16 and int8, interleaved round by round
(sentences/s, strict F1, sentences whose entities equal fp32's); (b) training, the run's profile on a capped
training split in fp32 and in bf16 autocast one after the other (wall time, tokens/s, dev curve, test F1).
Records the CPU, its low-precision flags, what `auto` chooses here and why, threads and the command.

    .venv/bin/python benchmarks/precision.py --run runs/finetune/ncbi_disease-minilm-l6-cpu-fast-full-seed42 \
        [--threads 1] [--rounds 3] [--train-sentences 2000] [--out runs/bench]

--train-sentences 0 skips (b). The inference targets (issue 21): the precision `auto` chooses at least 2x fp32's
sentences/s, test strict F1 within 0.3 points, at least 98% of sentences with identical entities.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from openmed_repro.annotation import annotate
from openmed_repro.data import corpora, iob
from openmed_repro.evaluation import metrics
from openmed_repro.infra import atomic_files, devices, job_settings, run_provenance, runs
from openmed_repro.models import low_precision, predictor, token_classifier
from openmed_repro.training import finetune

PRECISIONS = ("fp32", "bf16", "int8")
TARGET_SPEEDUP, TARGET_F1_POINTS, TARGET_IDENTICAL = 2.0, 0.3, 0.98


def same_entities(reference: list[list[str]], predicted: list[list[str]]) -> float:
    """The fraction of sentences whose entity spans equal the reference's."""
    return sum(set(iob.spans_of(a)) == set(iob.spans_of(b)) for a, b in zip(reference, predicted)) / len(reference)


def inference(run_dir: Path, precisions: tuple[str, ...], rounds: int) -> dict:
    """Every precision on the run's test split, round-robin `rounds` times; the best time of each."""
    run_config = annotate.run_config_of(run_dir)
    model, tokenizer, labels = token_classifier.load(run_dir / runs.MODEL_DIR, run_config)
    exact = predictor.inference_model(model, keep_original=False)
    test = finetune.subset(corpora.load(run_config.dataset, run_config.data_dir).test, run_config.max_eval_sentences)
    words, gold = [s.tokens for s in test], [s.tags for s in test]
    models, prepare_seconds = {}, {}
    for precision in precisions:
        started = time.perf_counter()
        models[precision] = low_precision.prepare(exact, precision)
        prepare_seconds[precision] = round(time.perf_counter() - started, 1)
    best, tags = {p: float("inf") for p in precisions}, {}
    for _ in range(rounds):
        for precision, prepared in models.items():
            started = time.perf_counter()
            tags[precision] = predictor.predict(prepared, tokenizer, words, labels, run_config.max_length,
                                                run_config.overlap, run_config.eval_batch_size, progress=False)
            best[precision] = min(best[precision], time.perf_counter() - started)
    fp32_f1 = metrics.score(gold, tags["fp32"]).strict.f1
    rows = {}
    for precision in precisions:
        f1 = metrics.score(gold, tags[precision]).strict.f1
        rows[precision] = {"seconds": round(best[precision], 2),
                           "sentences_per_second": round(len(words) / best[precision], 1),
                           "speedup_vs_fp32": round(best["fp32"] / best[precision], 2),
                           "test_strict_f1": round(100 * f1, 2), "f1_difference_points": round(100 * (f1 - fp32_f1), 2),
                           "sentences_with_identical_entities": round(same_entities(tags["fp32"], tags[precision]), 4),
                           "prepare_seconds": prepare_seconds[precision]}
    return {"run": run_provenance.portable_path(run_dir), "dataset": run_config.dataset, "backbone": run_config.backbone,
            "method": run_config.method, "sentences": len(words), "rounds": rounds, "precisions": rows}


def training(run_dir: Path, sentences: int, scratch: Path) -> dict:
    """The run's profile trained on the first `sentences` training sentences for one epoch, in fp32 then in
    bf16 autocast, each scored on the dev and test splits in fp32."""
    recorded = annotate.run_config_of(run_dir)
    corpus = corpora.load(recorded.dataset, recorded.data_dir)
    rows = {}
    for precision in ("fp32", "bf16"):
        settings = job_settings.load_run_config(recorded.profile, {"dataset": recorded.dataset, "seed": recorded.seed,
                                                             "max_train_sentences": sentences, "epochs": 1,
                                                             "precision": precision})
        trained = finetune.train(settings, corpus, Path(tempfile.mkdtemp(prefix=f"{precision}-", dir=scratch)))
        scores = {}
        for split in ("devel", "test"):
            split_sentences = getattr(corpus, split)
            predicted = predictor.predict(trained.model, trained.tokenizer, [s.tokens for s in split_sentences],
                                          trained.labels, settings.max_length, settings.overlap,
                                          settings.eval_batch_size, progress=False)
            scores[split] = round(100 * metrics.score([s.tags for s in split_sentences], predicted).strict.f1, 2)
        rows[precision] = {"wall_seconds": round(trained.train_seconds, 1),
                           "train_tokens_per_second": round(trained.train_tokens / trained.train_seconds, 1),
                           "dev_strict_f1": scores["devel"], "test_strict_f1": scores["test"]}
        del trained
        gc.collect()
    rows["bf16"]["speedup_vs_fp32"] = round(rows["fp32"]["wall_seconds"] / rows["bf16"]["wall_seconds"], 2)
    return {"profile": recorded.profile, "train_sentences": sentences, "epochs": 1, "runs": rows,
            "note": "one epoch each, fp32 first; wall time includes the Trainer's dev evaluation"}


def targets(record: dict) -> dict:
    chosen = record["auto"]["prediction"]
    row = record["inference"]["precisions"].get(chosen)
    if chosen == "fp32" or row is None:
        return {"precision_auto_chose": chosen, "met": None, "why": record["auto"]["why"]}
    return {"precision_auto_chose": chosen, "speedup": row["speedup_vs_fp32"],
            "f1_difference_points": row["f1_difference_points"],
            "sentences_with_identical_entities": row["sentences_with_identical_entities"],
            "met": row["speedup_vs_fp32"] >= TARGET_SPEEDUP and abs(row["f1_difference_points"]) <= TARGET_F1_POINTS
            and row["sentences_with_identical_entities"] >= TARGET_IDENTICAL}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished fine-tuning run directory")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--train-sentences", type=int, default=2000, help="0 skips the training comparison")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    precisions = tuple(dict.fromkeys(["fp32", *args.precisions]))
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"command": " ".join([f"benchmarks/{Path(sys.argv[0]).name}",
                                   *(argv if argv is not None else sys.argv[1:])]),
              "threads": args.threads, "machine": devices.machine(), "device": devices.device_name(),
              "auto": {"training": devices.resolve_precision("auto"),
                       "prediction": devices.resolve_inference_precision("auto"), "why": devices.auto_reason()},
              "packages": {name: run_provenance.version(name) for name in ("torch", "transformers", "onnxruntime")}}
    record["inference"] = inference(args.run, precisions, args.rounds)
    print(json.dumps(record["inference"]["precisions"], indent=1), flush=True)
    if args.train_sentences:
        scratch = Path(tempfile.mkdtemp(prefix="precision-work-", dir=args.out))
        try:
            record["training"] = training(args.run, args.train_sentences, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        print(json.dumps(record["training"], indent=1), flush=True)
    record["targets"] = targets(record)
    atomic_files.write_json(args.out / "precision.json", record)
    print(json.dumps({"targets": record["targets"], "json": str(args.out / "precision.json")}, indent=2))
    return record


if __name__ == "__main__":
    main()
