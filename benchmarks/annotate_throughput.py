"""Annotation throughput (documents/s) of a trained fine-tuning run on PubMed abstracts: in-process and as a
Spark local-mode job on the same input, in the same run, and whether the two outputs are identical; with
--precision, in-process fp32 against that precision (words/s, interleaved round by round on loaded models,
sentences with the same entities); with --cluster-workers, a standalone Spark cluster on 127.0.0.1 with that
many one-core workers (documents/s, output identical to in-process).

    .venv/bin/python benchmarks/annotate_throughput.py --run runs/finetune/ncbi_disease-minilm-l6-cpu-lora-seed42 \
        [--documents 1000] [--master 'local[*]'] [--precision auto] [--cluster-workers 1 2] [--out runs/bench]

The abstracts are the first N lines of ../shared/data/dapt/pubmed_genia_jnlpba_train.txt (GENIA titles and
abstracts; $OPENMED_DAPT_DIR or --text elsewhere). Times include loading the model (once in-process, once
per Spark Python worker) but not starting the Spark session, which is timed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from openmed_repro.annotation import annotate
from openmed_repro.data import sentences
from openmed_repro.infra import atomic_files, devices, paths
from openmed_repro.infra.devices import device_name


def sentence_entities(documents: list[annotate.Document], found: list[list[annotate.Entity]]) -> list[set]:
    """The entities of every sentence of every document, as sets of (start, end, type)."""
    rows = []
    for document, entities in zip(documents, found):
        for spans in sentences.sentence_words(document.text):
            if spans:
                low, high = spans[0][0], spans[-1][1]
                rows.append({(e.start, e.end, e.type) for e in entities if low <= e.start < high})
    return rows


def precision_comparison(run: Path, documents: list[annotate.Document], words: int, precision: str,
                         batch_size: int, rounds: int) -> dict:
    """In-process fp32 against `precision` on the same documents, round-robin on loaded models."""
    annotators = {"fp32": annotate.Annotator(run, batch_size), precision: annotate.Annotator(run, batch_size,
                                                                                            precision=precision)}
    best, found = {name: float("inf") for name in annotators}, {}
    for _ in range(rounds):
        for name, annotator in annotators.items():
            started = time.perf_counter()
            found[name] = annotator.annotate(documents)
            best[name] = min(best[name], time.perf_counter() - started)
    exact = sentence_entities(documents, found["fp32"])
    fast = sentence_entities(documents, found[precision])
    return {"asked": precision, "resolved": annotators[precision].precision, "rounds": rounds,
            "sentences": len(exact), "why": devices.auto_reason(),
            "words_per_second": {name: round(words / best[name], 1) for name in annotators},
            "speedup_vs_fp32": round(best["fp32"] / best[precision], 2),
            "sentences_with_same_entities": round(sum(a == b for a, b in zip(exact, fast)) / len(exact), 4),
            "entities": {name: sum(map(len, entities)) for name, entities in found.items()}}


def cluster_throughput(run: Path, source: Path, work: Path, workers: int, batch_size: int) -> dict:
    """Documents/s on a standalone cluster of `workers` one-core workers (session start and model loading in)."""
    from openmed_repro.annotation import spark as spark_annotate
    from openmed_repro.annotation import spark_cluster

    with spark_cluster.standalone(workers=workers) as cluster:
        spark = spark_annotate.session(cluster.master_url)
        output = work / f"cluster-{workers}"
        summary = spark_annotate.annotate(run, str(source), str(output), spark=spark, batch_size=batch_size,
                                          partitions=2 * workers)
        spark.stop()
    parts = "".join(p.read_text(encoding="utf-8") for p in sorted(output.glob("part-*")))
    return {"workers": workers, "cores_per_worker": 1, "torch_threads_per_task": 1,
            "seconds": round(summary.seconds, 1), "documents_per_second": round(summary.documents_per_second, 2),
            "identical_to_in_process": parts == (work / "local.jsonl").read_text(encoding="utf-8")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished fine-tuning run directory")
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--text", type=Path, default=None, help="one abstract a line (default: the DAPT PubMed file)")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--precision", default=None, help="compare in-process fp32 with this precision (auto, bf16, int8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the precision comparison")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in-process (default: torch's)")
    parser.add_argument("--cluster-workers", type=int, nargs="*", default=[],
                        help="standalone Spark clusters to time, by number of one-core workers (e.g. 1 2)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    text = args.text or paths.dapt_dir() / "pubmed_genia_jnlpba_train.txt"
    abstracts = [line for line in text.read_text(encoding="utf-8").splitlines() if line.strip()][:args.documents]
    work = Path(tempfile.mkdtemp(prefix="annotate-bench-"))
    source = work / "abstracts.jsonl"
    source.write_text("".join(json.dumps({"id": f"pm{i}", "text": t}) + "\n" for i, t in enumerate(abstracts)),
                      encoding="utf-8")
    result = {
        "run": str(args.run), "backbone": atomic_files.read_json(args.run / "config.json")["backbone"],
        "documents": len(abstracts), "words": sum(len(sentences.words(t)) for t in abstracts), "source": str(text),
        "cores": os.cpu_count(), "torch_threads_in_process": torch.get_num_threads(), "device": device_name(),
        "batch_size": args.batch_size, "machine": devices.machine(),
        "command": " ".join(["benchmarks/annotate_throughput.py", *sys.argv[1:]]),
    }

    local = annotate.annotate_file(args.run, source, work / "local.jsonl", batch_size=args.batch_size)
    result["in_process"] = {"seconds": round(local.seconds, 1), "model_load_seconds": round(local.load_seconds, 1),
                            "entities": local.entities, "documents_per_second": round(local.documents_per_second, 2),
                            "documents_per_second_after_load": round(
                                local.documents / (local.seconds - local.load_seconds), 2)}
    print(json.dumps(result["in_process"]), flush=True)

    if args.precision:
        documents, _ = annotate.read_documents(source)
        result["precision"] = precision_comparison(args.run, documents, result["words"], args.precision,
                                                   args.batch_size, args.rounds)
        print(json.dumps(result["precision"]), flush=True)

    if args.cluster_workers:
        result["standalone_cluster"] = [cluster_throughput(args.run, source, work, workers, args.batch_size)
                                        for workers in args.cluster_workers]
        print(json.dumps(result["standalone_cluster"]), flush=True)

    if not args.skip_spark:
        from openmed_repro.annotation import spark as spark_annotate

        started = time.perf_counter()
        spark = spark_annotate.session(args.master)
        session_seconds = time.perf_counter() - started
        parallelism = spark.sparkContext.defaultParallelism
        summary = spark_annotate.annotate(args.run, str(source), str(work / "spark"), spark=spark,
                                          batch_size=args.batch_size, partitions=parallelism)
        spark.stop()
        parts = "".join(p.read_text(encoding="utf-8") for p in sorted((work / "spark").glob("part-*")))
        result["spark"] = {"master": args.master, "parallelism": parallelism, "torch_threads_per_task": 1,
                           "session_start_seconds": round(session_seconds, 1), "seconds": round(summary.seconds, 1),
                           "entities": summary.entities,
                           "documents_per_second": round(summary.documents_per_second, 2),
                           "identical_to_in_process": parts == (work / "local.jsonl").read_text(encoding="utf-8")}
        print(json.dumps(result["spark"]), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_files.write_json(args.out / "annotate_throughput.json", result)
    shutil.rmtree(work)
    print(f"wrote {args.out / 'annotate_throughput.json'}")


if __name__ == "__main__":
    main()
