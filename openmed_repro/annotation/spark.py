"""Annotation as a PySpark job, for collections larger than one machine handles: the same parsing,
sentence and word splitting, windows and entity extraction as `annotate`, run in `mapPartitions` with the
model loaded once per Python worker (Spark reuses its Python workers, so one load per executor core).

    openmed-repro annotate --spark --master spark://host:7077 --run RUN_DIR abstracts.jsonl entities/

Input: text or JSONL, read as bytes and cut at "\n" only, each line through the in-process reader
(annotate.document_of_line), so both paths skip exactly the same lines, by the same line numbers; or Parquet
with id and text columns (problems name the row, 1-based). A document whose annotation fails is skipped and
reported like a malformed line. Output: a directory of JSONL part files whose concatenation in name order is,
line for line, what in-process annotation writes; or Parquet (`*.parquet`, columns id, start, end, type, text,
score). The job writes into a hidden directory beside the output that becomes the output when it succeeds and
is removed when it fails, so a failed or interrupted job is simply run again. On a cluster, RUN_DIR, the input
and the output must be paths every executor can read (a shared file system or HDFS/S3 URLs for the data) and
every executor needs this package installed."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
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
                        precision: str, chunk_documents: int, on_error: str, source: str, failures, documents):
    """Entities of one partition's documents, in input order. A document whose annotation fails goes to the
    `failures` accumulator, or stops the job (on_error="fail") with the error the driver reports."""
    for chunk in local.chunks(documents, chunk_documents):
        annotator = _annotator(run_dir, batch_size, max_batch_tokens, threads, precision)
        for result in annotator.annotate_each(chunk):
            if isinstance(result, local.Problem):
                if on_error == "fail":
                    raise local.stopped_at(source, result)
                failures.add([result])
            else:
                yield from result


class _ProblemList:
    """The AccumulatorParam of the problems gathered from the executors (a task run twice reports its problems
    twice: the driver keeps one per line)."""

    def zero(self, value):
        return []

    def addInPlace(self, problems, more):
        problems.extend(more)
        return problems


def _counted(counter, entity: local.Entity) -> local.Entity:
    counter.add(1)
    return entity


def _parse_text_line(fmt: str, id_field: str, text_field: str, numbered):
    line, index = numbered
    return local.document_of_line(line, index + 1, fmt, id_field, text_field)


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
    model is loaded; so are documents whose annotation fails, once the job is done (or at the first, which
    stops it)."""
    from openmed_repro.infra import devices

    if on_error not in local.ON_ERROR:
        raise OpenMedError(f"parameter on_error={on_error!r}; valid: {', '.join(local.ON_ERROR)}")
    resolved = devices.resolve_inference_precision(precision)   # an invalid value fails here, not in executors
    run_dir = str(Path(run_dir).resolve())
    local.run_config_of(Path(run_dir))       # a bad run directory fails here, not in every executor
    fmt = local.input_format(input_path, fmt)
    out_format = output_kind(output_path, output_format)
    spark = spark or session(master)
    started = time.perf_counter()
    if fmt == "parquet":
        frame = spark.read.parquet(str(input_path))
        missing = [c for c in (id_field, text_field) if c not in frame.columns]
        if missing:
            raise OpenMedError(f"{input_path}: no column(s) {', '.join(missing)}; columns: {', '.join(frame.columns)}")
        rows = frame.select(id_field, text_field).rdd
        parsed = rows.zipWithIndex().map(partial(_parse_row, id_field, text_field))
    else:
        if not Path(input_path).exists() and "://" not in str(input_path):
            raise OpenMedError(f"{input_path}: input file not found")
        lines = spark.read.option("lineSep", "\n").text(str(input_path))   # bytes kept as they are: cast below
        lines = lines.select(lines.value.cast("binary")).rdd.map(lambda row: bytes(row[0]))
        parsed = lines.zipWithIndex().map(partial(_parse_text_line, fmt, id_field, text_field))
    parsed = parsed.persist()
    problems = sorted(parsed.filter(lambda item: isinstance(item, local.Problem)).collect(), key=lambda p: p.line)
    if problems and on_error == "fail":
        parsed.unpersist()
        first = problems[0]
        raise OpenMedError(f"{input_path}:{first.line}: {first.reason} (use --on-error skip to skip such lines; "
                           f"{len(problems)} malformed line(s) in all)")
    local.report(problems, input_path)
    documents = parsed.filter(lambda item: isinstance(item, local.Document))
    documents = _in_input_order(documents, parsed.count(), partitions or spark.sparkContext.defaultParallelism)
    document_count = documents.count()
    empty = parsed.filter(lambda item: isinstance(item, local.Document) and not item.text.strip()).count()
    counter = spark.sparkContext.accumulator(0)
    failures = spark.sparkContext.accumulator([], _ProblemList())
    entities = documents.mapPartitions(partial(_annotate_partition, run_dir, batch_size, max_batch_tokens,
                                               threads_per_task, precision, chunk_documents, on_error, str(input_path),
                                               failures)).map(partial(_counted, counter))
    try:
        with _written_whole(spark, str(output_path)) as temporary:
            _write(spark, entities, out_format, temporary)
    except Exception as error:
        reported = _project_error(error)
        if reported is None:
            raise
        raise reported from None
    finally:
        parsed.unpersist()
    failed = sorted({problem.line: problem for problem in failures.value}.values(), key=lambda p: p.line)
    local.report(failed, input_path)
    return local.Summary(document_count - len(failed), counter.value, sorted(problems + failed, key=lambda p: p.line),
                         time.perf_counter() - started, precision=resolved, empty=empty)


def _write(spark, entities, out_format: str, path: str) -> None:
    _, types = _pyspark()
    if out_format == "parquet":
        schema = types.StructType([
            types.StructField("id", types.StringType(), False), types.StructField("start", types.IntegerType(), False),
            types.StructField("end", types.IntegerType(), False), types.StructField("type", types.StringType(), False),
            types.StructField("text", types.StringType(), False), types.StructField("score", types.DoubleType(), False)])
        spark.createDataFrame(entities.map(lambda e: (e.id, e.start, e.end, e.type, e.text, e.score)), schema) \
            .write.parquet(path)
    else:
        entities.map(local.Entity.json_line).saveAsTextFile(path)


def _in_input_order(documents, lines: int, partitions: int):
    """`documents` over at least `partitions` partitions, each a run of consecutive lines in input order, so
    that the part files, read in name order, follow the input as in-process output does."""
    if documents.getNumPartitions() >= partitions:
        return documents
    return documents.keyBy(lambda document: document.line) \
        .repartitionAndSortWithinPartitions(partitions, partial(_block_of, lines, partitions)).values()


def _block_of(lines: int, partitions: int, line: int) -> int:
    return (line - 1) * partitions // max(lines, 1)


@contextlib.contextmanager
def _written_whole(spark, output_path: str) -> Iterator[str]:
    """A hidden directory beside `output_path` for the job to write into: it becomes `output_path` (one rename,
    the previous output of the same command moved aside first and removed after) when the job succeeds and is
    removed when it fails, leaving the previous output untouched: the same command can always run again. Through Hadoop's file system, so an HDFS or S3 output works the same as a local one."""
    location = output_path.rstrip("/") if "://" in output_path else str(Path(output_path).absolute())
    parent, _, name = location.rpartition("/")
    hadoop = spark.sparkContext._jvm.org.apache.hadoop.fs
    target, temporary = hadoop.Path(location), hadoop.Path(f"{parent}/.{name}.{secrets.token_hex(4)}.tmp")
    file_system = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    previous = hadoop.Path(f"{parent}/.{name}.{secrets.token_hex(4)}.previous")
    try:
        yield temporary.toString()
        replaced = file_system.exists(target)
        if replaced and not file_system.rename(target, previous):   # a rerun's output replaces the last one whole
            raise OpenMedError(f"{output_path}: the previous output could not be moved aside to {previous}")
        if not file_system.rename(temporary, target):
            if replaced:
                file_system.rename(previous, target)
            raise OpenMedError(f"{output_path}: the finished output could not be moved there from {temporary}")
        if replaced:
            file_system.delete(previous, True)
    except BaseException:
        with contextlib.suppress(Exception):   # the job's own error is the one to report
            file_system.delete(temporary, True)
        raise


def _project_error(error: Exception) -> OpenMedError | None:
    """The OpenMedError an executor raised (on_error="fail", a run its executors cannot load), out of the
    Spark exception that carries its traceback as text; None for any other failure."""
    found = re.search(r"OpenMedError: (.+)", str(error))
    return OpenMedError(found.group(1).strip()) if found else None
