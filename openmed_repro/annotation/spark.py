"""Annotation as a PySpark job, for collections larger than one machine handles: the same parsing,
sentence and word splitting, windows and entity extraction as `annotate`, run in `mapPartitions` with the
model loaded once per Python worker (Spark reuses its Python workers, so one load per executor core).

    openmed-repro annotate --spark --master spark://host:7077 --run RUN_DIR abstracts.jsonl entities/

Input: text or JSONL (line numbers are kept for problem reports), or Parquet with id and text columns
(problems name the row, 1-based). Output: a directory of JSONL part files whose concatenation in name
order is, line for line, what in-process annotation writes; or Parquet (`*.parquet`, columns id, start, end,
type, text, score). On a cluster, RUN_DIR, the input and the output must be paths every executor can read
(a shared file system or HDFS/S3 URLs for the data) and every executor needs this package installed."""

from __future__ import annotations

import os
import sys
import time
from functools import partial
from pathlib import Path

from openmed_repro.annotation import annotate as local
from openmed_repro.errors import OpenMedError

OUTPUT_FORMATS = ("auto", "jsonl", "parquet")
_ANNOTATORS: dict[tuple[str, int, int | None, int, str], local.Annotator] = {}


def _pyspark():
    try:
        import pyspark  # noqa: F401
        from pyspark.sql import SparkSession, types
    except ImportError as error:
        raise OpenMedError("--spark needs PySpark: pip install '.[spark]' (and a Java runtime, 17 or newer)") from error
    return SparkSession, types


def session(master: str = "local[*]"):
    """A Spark session whose Python workers run this interpreter and, where they share its file system (local
    mode, a standalone cluster on this machine), import this package from the same directory as the driver."""
    SparkSession, _ = _pyspark()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    package_root = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return (SparkSession.builder.master(master).appName("openmed-repro annotate")
            .config("spark.executorEnv.PYTHONPATH", python_path)
            .config("spark.ui.enabled", "false").config("spark.python.worker.reuse", "true")
            .config("spark.sql.session.timeZone", "UTC").getOrCreate())


def output_kind(path: str, requested: str = "auto") -> str:
    if requested not in OUTPUT_FORMATS:
        raise OpenMedError(f"parameter output_format={requested!r}; valid: {', '.join(OUTPUT_FORMATS)}")
    if requested != "auto":
        return requested
    return "parquet" if str(path).rstrip("/").lower().endswith(".parquet") else "jsonl"


def _annotator(run_dir: str, batch_size: int, max_batch_tokens: int | None, threads: int,
               precision: str) -> local.Annotator:
    """The worker's model: loaded on first use, kept for every later partition this worker runs; `auto`
    resolves on the executor's own CPU."""
    key = (run_dir, batch_size, max_batch_tokens, threads, precision)
    if key not in _ANNOTATORS:
        import torch

        torch.set_num_threads(threads)
        _ANNOTATORS[key] = local.Annotator(run_dir, batch_size, max_batch_tokens, precision)
    return _ANNOTATORS[key]


def _annotate_partition(run_dir: str, batch_size: int, max_batch_tokens: int | None, threads: int,
                        precision: str, chunk_documents: int, documents):
    """Entities of one partition's documents, in input order."""
    documents = iter(documents)
    first = next(documents, None)
    if first is None:
        return
    annotator = _annotator(run_dir, batch_size, max_batch_tokens, threads, precision)
    pending = [first]
    for document in documents:
        pending.append(document)
        if len(pending) == chunk_documents:
            for entities in annotator.annotate(pending):
                yield from entities
            pending = []
    for entities in annotator.annotate(pending):
        yield from entities


def _counted(counter, entity: local.Entity) -> local.Entity:
    counter.add(1)
    return entity


def _parse_text_line(fmt: str, id_field: str, text_field: str, numbered):
    line, index = numbered
    return local.parse_line(line, index + 1, fmt, id_field, text_field)


def _parse_row(id_field: str, text_field: str, numbered):
    row, index = numbered
    return local.document_of(row.asDict(), index + 1, id_field, text_field)


def annotate(run_dir: str | Path, input_path: str, output_path: str, master: str = "local[*]", fmt: str = "auto",
             output_format: str = "auto", on_error: str = "skip", batch_size: int = 32,
             chunk_documents: int = 256, id_field: str = "id", text_field: str = "text",
             partitions: int | None = None, threads_per_task: int = 1, spark=None,
             max_batch_tokens: int | None = None, precision: str = "fp32") -> local.Summary:
    """Annotate `input_path` into `output_path` on Spark with the model in `precision` (local.Annotator);
    malformed lines are reported (driver's stderr) and skipped, or stop the job (on_error="fail") before any
    model is loaded."""
    from openmed_repro.infra import devices

    if on_error not in local.ON_ERROR:
        raise OpenMedError(f"parameter on_error={on_error!r}; valid: {', '.join(local.ON_ERROR)}")
    resolved = devices.resolve_inference_precision(precision)   # an invalid value fails here, not in executors
    run_dir = str(Path(run_dir).resolve())
    local.run_config_of(Path(run_dir))       # a bad run directory fails here, not in every executor
    fmt = local.input_format(input_path, fmt)
    out_format = output_kind(output_path, output_format)
    if Path(output_path).exists():
        raise OpenMedError(f"{output_path}: output already exists; Spark writes a new directory (remove it first)")
    spark = spark or session(master)
    _, types = _pyspark()
    started = time.perf_counter()
    if fmt == "parquet":
        frame = spark.read.parquet(str(input_path))
        missing = [c for c in (id_field, text_field) if c not in frame.columns]
        if missing:
            raise OpenMedError(f"{input_path}: no column(s) {', '.join(missing)}; columns: {', '.join(frame.columns)}")
        rows = frame.select(id_field, text_field).rdd
        rows = rows.repartition(partitions) if partitions else rows
        parsed = rows.zipWithIndex().map(partial(_parse_row, id_field, text_field))
    else:
        if not Path(input_path).exists() and "://" not in str(input_path):
            raise OpenMedError(f"{input_path}: input file not found")
        lines = spark.sparkContext.textFile(str(input_path), minPartitions=partitions or 2)
        parsed = lines.zipWithIndex().map(partial(_parse_text_line, fmt, id_field, text_field))
    parsed = parsed.persist()
    problems = sorted(parsed.filter(lambda item: isinstance(item, local.Problem)).collect(), key=lambda p: p.line)
    if problems and on_error == "fail":
        parsed.unpersist()
        first = problems[0]
        raise OpenMedError(f"{input_path}:{first.line}: {first.reason} (use on_error=skip to skip such lines; "
                           f"{len(problems)} malformed line(s) in all)")
    local.report(problems, input_path)
    documents = parsed.filter(lambda item: isinstance(item, local.Document))
    document_count = documents.count()
    counter = spark.sparkContext.accumulator(0)
    entities = documents.mapPartitions(partial(_annotate_partition, run_dir, batch_size, max_batch_tokens,
                                               threads_per_task, precision, chunk_documents)) \
        .map(partial(_counted, counter))
    if out_format == "parquet":
        schema = types.StructType([
            types.StructField("id", types.StringType(), False), types.StructField("start", types.IntegerType(), False),
            types.StructField("end", types.IntegerType(), False), types.StructField("type", types.StringType(), False),
            types.StructField("text", types.StringType(), False), types.StructField("score", types.DoubleType(), False)])
        spark.createDataFrame(entities.map(lambda e: (e.id, e.start, e.end, e.type, e.text, e.score)), schema) \
            .write.parquet(str(output_path))
    else:
        entities.map(local.Entity.json_line).saveAsTextFile(str(output_path))
    parsed.unpersist()
    return local.Summary(document_count, counter.value, problems, time.perf_counter() - started,
                         precision=resolved)
