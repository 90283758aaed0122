"""The `openmed-repro` command: subcommands that apply or train what the notebooks describe.

    openmed-repro annotate --run RUN_DIR INPUT OUTPUT [--on-error skip|fail] [--spark [--master URL]]
    openmed-repro baseline --profile cpu --corpora ncbi_disease s800
"""

from __future__ import annotations

import argparse
import json
import sys

from openmed_repro.errors import OpenMedError


def annotate_command(args: argparse.Namespace) -> None:
    from openmed_repro.annotation import annotate

    common = dict(fmt=args.format, on_error=args.on_error, batch_size=args.batch_size,
                  chunk_documents=args.chunk_documents, id_field=args.id_field, text_field=args.text_field)
    if args.spark:
        from openmed_repro.annotation import spark as spark_annotate

        summary = spark_annotate.annotate(args.run, args.input, args.output, master=args.master,
                                          output_format=args.output_format, partitions=args.partitions,
                                          threads_per_task=args.threads_per_task, **common)
    else:
        if args.output_format not in {"auto", "jsonl"}:
            raise OpenMedError("parameter --output-format: in-process annotation writes JSONL; use --spark for Parquet")
        summary = annotate.annotate_file(args.run, args.input, args.output, **common)
    print(json.dumps({"documents": summary.documents, "entities": summary.entities,
                      "skipped_lines": [p.line for p in summary.problems], "seconds": round(summary.seconds, 2),
                      "documents_per_second": round(summary.documents_per_second, 2), "output": str(args.output)}))


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="openmed-repro", description=__doc__.splitlines()[0])
    commands = main.add_subparsers(dest="command", required=True)
    annotate = commands.add_parser("annotate", help="write the entities of raw text found by a fine-tuning run")
    annotate.add_argument("--run", required=True, help="a finished fine-tuning run directory (holding model/)")
    annotate.add_argument("input", help="text (one document a line), JSONL (id and text fields) or, with --spark, Parquet")
    annotate.add_argument("output", help="JSONL file; with --spark a directory of JSONL part files, or Parquet (*.parquet)")
    annotate.add_argument("--format", default="auto", choices=("auto", "text", "jsonl", "parquet"),
                          help="input format (auto: by suffix, .jsonl/.json/.ndjson, .parquet, else text)")
    annotate.add_argument("--output-format", default="auto", choices=("auto", "jsonl", "parquet"))
    annotate.add_argument("--on-error", default="skip", choices=("skip", "fail"),
                          help="a malformed input line is reported and skipped, or stops the run")
    annotate.add_argument("--id-field", default="id")
    annotate.add_argument("--text-field", default="text")
    annotate.add_argument("--batch-size", type=int, default=32, help="windows per forward pass")
    annotate.add_argument("--chunk-documents", type=int, default=256, help="documents sorted by length together")
    annotate.add_argument("--spark", action="store_true", help="run as a PySpark job (pip install .[spark])")
    annotate.add_argument("--master", default="local[*]", help="Spark master URL (with --spark)")
    annotate.add_argument("--partitions", type=int, default=None, help="minimum input partitions (with --spark)")
    annotate.add_argument("--threads-per-task", type=int, default=1, help="torch threads per Spark task")
    annotate.set_defaults(handler=annotate_command)
    baseline = commands.add_parser("baseline", help="train the BiLSTM-CNN-Char baseline (see openmed_repro.training.baseline)",
                                   add_help=False)
    baseline.set_defaults(handler=None)
    return main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["baseline"]:
            from openmed_repro.training import baseline

            baseline.main(argv[1:])
            return 0
        args = parser().parse_args(argv)
        args.handler(args)
    except OpenMedError as error:
        print(f"openmed-repro: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
