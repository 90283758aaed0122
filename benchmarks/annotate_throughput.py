"""Annotation throughput (documents/s) of a trained fine-tuning run on PubMed abstracts: in-process and as a
Spark local-mode job on the same input, in the same run, and whether the two outputs are identical.

    .venv/bin/python benchmarks/annotate_throughput.py --run runs/finetune/ncbi_disease-minilm-l6-cpu-lora-seed42 \
        [--documents 1000] [--master 'local[*]'] [--out runs/bench]

The abstracts are the first N lines of ../shared/data/dapt/pubmed_genia_jnlpba_train.txt (GENIA titles and
abstracts; $OPENMED_DAPT_DIR or --text elsewhere). Times include loading the model (once in-process, once
per Spark Python worker) but not starting the Spark session, which is timed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from openmed_repro.annotation import annotate
from openmed_repro.data import sentences
from openmed_repro.infra import config
from openmed_repro.infra import runs
from openmed_repro.infra.devices import device_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished fine-tuning run directory")
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--text", type=Path, default=None, help="one abstract a line (default: the DAPT PubMed file)")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()

    text = args.text or config.dapt_dir() / "pubmed_genia_jnlpba_train.txt"
    abstracts = [line for line in text.read_text(encoding="utf-8").splitlines() if line.strip()][:args.documents]
    work = Path(tempfile.mkdtemp(prefix="annotate-bench-"))
    source = work / "abstracts.jsonl"
    source.write_text("".join(json.dumps({"id": f"pm{i}", "text": t}) + "\n" for i, t in enumerate(abstracts)),
                      encoding="utf-8")
    result = {
        "run": str(args.run), "backbone": runs.read_json(args.run / "config.json")["backbone"],
        "documents": len(abstracts), "words": sum(len(sentences.words(t)) for t in abstracts), "source": str(text),
        "cores": os.cpu_count(), "torch_threads_in_process": torch.get_num_threads(), "device": device_name(),
        "batch_size": args.batch_size,
    }

    local = annotate.annotate_file(args.run, source, work / "local.jsonl", batch_size=args.batch_size)
    result["in_process"] = {"seconds": round(local.seconds, 1), "model_load_seconds": round(local.load_seconds, 1),
                            "entities": local.entities, "documents_per_second": round(local.documents_per_second, 2),
                            "documents_per_second_after_load": round(
                                local.documents / (local.seconds - local.load_seconds), 2)}
    print(json.dumps(result["in_process"]), flush=True)

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
    runs.write_json(args.out / "annotate_throughput.json", result)
    shutil.rmtree(work)
    print(f"wrote {args.out / 'annotate_throughput.json'}")


if __name__ == "__main__":
    main()
