"""The `openmed-repro` command: one sub-command for every job that runs outside a notebook.

    openmed-repro search --dataset ncbi_disease --out runs/hpo/ncbi --set max_train_sentences=500 epochs=3
    openmed-repro baseline --profile cpu --corpora ncbi_disease s800
    openmed-repro baseline --profile cpu --corpora ncbi_disease --word-embeddings learned minilm-l6 word2vec-dapt
    openmed-repro sweep --profile cpu --max-train-sentences 5000 --epochs 2 --out runs/all-corpora
    openmed-repro sweep --profile cpu --seeds 42 1 2 --corpora ncbi_disease s800 --dapt-adapter runs/dapt/minilm-l6-cpu-seed42/adapter
    openmed-repro book --profile cpu [--no-execute] [--check]
    openmed-repro annotate --run RUN_DIR INPUT OUTPUT [--on-error skip|fail] [--precision fp32|auto|bf16|int8]
                           [--spark [--master URL]]
    openmed-repro corpus-stats
    openmed-repro summary RUN_DIR [EXECUTED_NOTEBOOK]
    openmed-repro run-dir finetune|dapt|baseline|hpo [KEY=VALUE ...]
    openmed-repro record RUN_DIR... | --all [--results results] [--replace] [--command TEXT]
    openmed-repro verify CHAPTER [--results results] [--runs runs] [--threads N] [--run NAME ...]
    openmed-repro released [--corpora KEY ...] [--record]

Each sub-command is a pair here: `add_<name>(commands)` declares its arguments and `<name>_command(args)` calls
the library. Job modules are imported inside the handlers, so `--help` answers without loading torch, and
nothing in the library imports this module. A project error is one line, `openmed-repro: error: ...`, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, job_settings, layout, run_provenance, validation

if typing.TYPE_CHECKING:
    from openmed_repro.infra.cluster import Placement
    from openmed_repro.report.verify import RunVerdict


def _add(commands, name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command whose one-line `summary` is listed by `openmed-repro --help` and heads its own --help."""
    return commands.add_parser(name, help=summary, description=description or summary,
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def _set_option(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help=f"run parameters as YAML values, e.g. {example}")


# search: one Optuna worker


def add_search(commands) -> None:
    from openmed_repro.infra.job_settings import SearchConfig

    parser = _add(commands, "search", "run one hyper-parameter search worker (an Optuna TPE study over fine-tuning runs)",
                  "Run one search worker: trials until the study has --n-trials finished ones, then best.yaml, "
                  "trials.csv\nand summary.json in --out. Start it on as many processes or machines as you like with "
                  "the same\n--storage, --study-name and --out (or --out on each machine's own disk).")
    parser.add_argument("--dataset", required=True, help="corpus key or directory")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--out", type=Path, required=True, help="run directory (SQLite study, best.yaml, trials.csv)")
    _set_option(parser, "max_train_sentences=500 epochs=3")
    for name, hint in typing.get_type_hints(SearchConfig).items():   # names and URLs stay strings
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                            type=str if hint is str or str in typing.get_args(hint) else _yaml_value,
                            help=f"search parameter {name} (default {getattr(SearchConfig, name)!r})")
    _add_ray(parser, "search workers (Optuna workers on the study's shared storage)")
    parser.add_argument("--ray-workers", type=int, default=2, help="with --ray: how many search workers (default 2)")
    parser.set_defaults(handler=search_command)


def _yaml_value(text: str):
    import yaml

    return yaml.safe_load(text)


def search_command(args: argparse.Namespace) -> None:
    from openmed_repro.infra.job_settings import SearchConfig
    from openmed_repro.search import hpo

    run_config = job_settings.load_run_config(args.profile, {**validation.key_values(args.set), "dataset": args.dataset})
    search = job_settings.load_search_config({name: getattr(args, name) for name in typing.get_type_hints(SearchConfig)
                                        if getattr(args, name) is not None})
    if args.ray:   # Optuna workers on the study's storage, started by Ray: the same study as workers started by hand
        from openmed_repro.infra import cluster

        if args.ray_workers < 1:
            raise OpenMedError(f"--ray-workers {args.ray_workers}: at least one worker")
        out = args.out.resolve()
        workers = [cluster.Job(f"{args.out} (worker {i + 1})", hpo.work, (run_config, search, out))
                   for i in range(args.ray_workers)]
        result = cluster.run_each(workers, _placement(args))[-1]
    else:
        result = hpo.work(run_config, search, args.out)
    print(f"best dev strict F1 {result.best_dev_f1:.4f} (default configuration: {result.default_dev_f1}); "
          f"parameters in {args.out / layout.LAYOUT.best_parameters}")


# baseline: the BiLSTM-CNN-Char comparator


def add_baseline(commands) -> None:
    parser = _add(commands, "baseline", "train the BiLSTM-CNN-Char baseline on corpora, one run directory each",
                  "Train the BiLSTM-CNN-Char baseline on corpora, one run directory each, and print its test strict "
                  "F1\nbeside the Spark NLP paper's; results-<profile>.json in --out. Resumable.\nWith "
                  "--word-embeddings: one run per corpus and word-vector start, the start with the best dev\n"
                  "strict F1 chosen (word-embeddings-<profile>.json in --out).")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--corpora", nargs="+", required=True, help="corpus keys or directories")
    parser.add_argument("--out", type=Path, default=layout.LAYOUT.folder("baseline"))
    parser.add_argument("--record", action="store_true", help="record each finished run in results/")
    parser.add_argument("--word-embeddings", nargs="+", metavar="START",
                        help="choose the words' start on dev: one run per corpus and start (learned, word2vec-dapt "
                             "or a backbone), the best dev strict F1 chosen; word-embeddings-<profile>.json in --out")
    _set_option(parser, "epochs=5 output=softmax (BaselineConfig fields)")
    parser.set_defaults(handler=baseline_command)


def baseline_command(args: argparse.Namespace) -> None:
    from openmed_repro.training import baseline_sweep

    overrides = validation.key_values(args.set)
    after_each = _recorder() if args.record else None
    if args.word_embeddings is None:
        baseline_sweep.run_all(args.profile, overrides, args.corpora, args.out, after_each=after_each,
                               recorded=_recorded_metrics if args.record else None)
        return
    if "word_embeddings" in overrides:
        raise OpenMedError("--set word_embeddings and --word-embeddings: give the starts once, with --word-embeddings")
    baseline_sweep.choose_word_embeddings(args.profile, overrides, args.corpora, args.word_embeddings, args.out,
                                          after_each=after_each)


def _add_ray(parser, what: str = "each run") -> None:
    """--ray [ADDRESS] and the resources each task takes (the optional extra: pip install '.[ray]')."""
    group = parser.add_argument_group("Ray (pip install '.[ray]')")
    group.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help=f"{what} as a task on a Ray cluster: ADDRESS of its head (auto: the one `ray start` runs "
                            "here), none to start one on this machine; run directories on storage every node sees")
    group.add_argument("--ray-threads", type=int, default=1, help="CPU threads of each task (default 1)")
    group.add_argument("--ray-gpu", type=float, default=None,
                       help="share of one GPU each task takes (default: 0.25 on a cluster with GPUs, else 0)")


def _placement(args: argparse.Namespace):
    from openmed_repro.infra import cluster

    return cluster.Placement(args.ray, args.ray_threads, args.ray_gpu)


# sweep: one configuration on every corpus


def add_sweep(commands) -> None:
    parser = _add(commands, "sweep", "fine-tune one configuration on every corpus found here, beside the paper's Table 4",
                  "Fine-tune one configuration on every corpus that loads here (for each of --seeds), each run in "
                  "its\ndefault directory runs/finetune/<name> (or under --runs-root), and gather test strict F1, "
                  "epochs and\nwall time into results.md/results.json in --out. A rerun reads finished runs back; "
                  "--record copies\neach run into the record as it finishes.")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the profile's seed")
    parser.add_argument("--max-train-sentences", type=int, default=None)
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--corpora", nargs="*", default=None, help="keys (default: every corpus found locally)")
    parser.add_argument("--runs-root", type=Path, default=None,
                        help="run directories under this folder instead of their default place (a study of its own)")
    parser.add_argument("--out", type=Path, default=None, help="the table's folder (default: runs/sweep/<profile>)")
    parser.add_argument("--dapt-adapter", default=None,
                        help="start every run from this DAPT adapter (the adapter/ of a DAPT run or of its record)")
    parser.add_argument("--record", action="store_true", help="record each finished run in results/")
    parser.add_argument("--replace", action="store_true",
                        help="with --record: a run whose recipe changed replaces its record of the same name")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="with --record: record a run of uncommitted code, marked so in the index")
    parser.add_argument("--allow-env", action="store_true",
                        help="with --record: record a run made with other package versions than constraints.txt's, "
                             "marked so")
    _add_ray(parser)
    parser.set_defaults(handler=sweep_command)


def sweep_command(args: argparse.Namespace) -> None:
    from openmed_repro.data import corpora
    from openmed_repro.training import sweep

    overrides = {"max_train_sentences": args.max_train_sentences, "epochs": args.epochs, "data_dir": args.data_dir,
                 "dapt_adapter": args.dapt_adapter}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    out = args.out or layout.LAYOUT.folder(layout.LAYOUT.sweep) / (args.profile + ("-dapt" if args.dapt_adapter else ""))
    sweep.run_all(args.profile, overrides, out, args.corpora or corpora.available(args.data_dir),
                  seeds=args.seeds or (None,), runs_root=args.runs_root,
                  after_each=_recorder(args.replace, args.allow_dirty, args.allow_env) if args.record else None,
                  recorded=_current_record if args.record else None, placement=_placement(args))
    print(f"\nTable: {out / 'results.md'}")


def _recorded_metrics(run_dir: Path) -> dict | None:
    """The metrics of the record of `run_dir`, if the record holds it (with --record, a recorded run is done)."""
    path = layout.LAYOUT.record / layout.LAYOUT.record_name(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _current_record(run_dir: Path, run_config) -> dict | None:
    """The metrics of the record of `run_dir` if it holds a run of exactly `run_config` (a record of an older
    recipe, a profile since changed, is trained again; with --replace its rerun replaces it)."""
    from openmed_repro.infra import runs

    recorded = layout.LAYOUT.record / layout.LAYOUT.record_name(run_dir)
    return _recorded_metrics(run_dir) if runs.recorded_with(recorded, run_config) else None


def _recorder(replace: bool = False, allow_dirty: bool = False, allow_env: bool = False):
    """What --record does after each run: copy it into results/ and say so (a refusal stops the job: the
    record and runs/ disagree, and someone must look)."""
    from openmed_repro.report import record

    def record_run(run_dir: Path) -> None:
        outcome = record.record([run_dir], replace=replace, allow_dirty=allow_dirty, allow_env=allow_env)
        if outcome.refused:
            raise OpenMedError("; ".join(outcome.refused))
        for recorded in outcome.recorded:
            print(f"record: {run_provenance.portable_path(recorded.path)}: {recorded.outcome}", flush=True)
    return record_run


# book: execute the chapters and build the Jupyter Book


def add_book(commands) -> None:
    parser = _add(commands, "book", "execute every chapter on one profile and build the Jupyter Book",
                  "Execute every chapter notebook with papermill on one profile into runs/book/<profile>/ and build "
                  "HTML\nfrom those executed copies. With --no-execute the book is rebuilt from the chapters executed "
                  "last time.")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="default runs/book/<profile>")
    parser.add_argument("--no-execute", action="store_true", help="rebuild from the chapters executed last time")
    parser.add_argument("--check", action="store_true",
                        help="open every page in headless Chromium; screenshots into <out>/screenshots")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="a parameter for every chapter that has it, e.g. dataset=DIR dapt_dir=DIR")
    parser.set_defaults(handler=book_command)


def book_command(args: argparse.Namespace) -> None:
    from openmed_repro.report import book

    out_dir = args.out or layout.LAYOUT.folder(layout.LAYOUT.book) / args.profile
    if not args.no_execute:
        book.execute(args.profile, out_dir, validation.key_values(args.set))
    index = book.build(args.profile, out_dir)
    print(f"book: {index}")
    if args.check:
        stubs = json.loads((out_dir / "chapters" / book.NOT_RECORDED).read_text()) \
            if (out_dir / "chapters" / book.NOT_RECORDED).is_file() else {}
        seen = book.check_in_browser(index.parent, out_dir / "screenshots", without_results=stubs,
                                     measured_corpora=book.recorded_corpora() if book.reads_record(args.profile) else ())
        if stubs:
            print(f"not in the record yet, shown without results: {', '.join(stubs)}")
        print(f"Chromium: {len(seen)} pages, {sum(len(p['images']) for p in seen.values())} figures loaded; "
              f"screenshots in {out_dir / 'screenshots'}")


# annotate: entities of raw text with a trained model


def add_annotate(commands) -> None:
    parser = _add(commands, "annotate", "write the entities of raw text found by a fine-tuning run",
                  "Write the entities of raw text found by a finished fine-tuning run, in-process or as a PySpark "
                  "job;\nprints a one-line JSON summary (documents, entities, skipped lines, throughput).")
    parser.add_argument("--run", required=True, help="a finished fine-tuning run directory (holding model/)")
    parser.add_argument("input", help="text (one document a line), JSONL (id and text fields) or, with --spark, Parquet")
    parser.add_argument("output", help="JSONL file; with --spark a directory of JSONL part files, or Parquet (*.parquet)")
    parser.add_argument("--format", default="auto", choices=("auto", "text", "jsonl", "parquet"),
                        help="input format (auto: by suffix, .jsonl/.json/.ndjson, .parquet, else text)")
    parser.add_argument("--output-format", default="auto", choices=("auto", "jsonl", "parquet"))
    parser.add_argument("--on-error", default="skip", choices=("skip", "fail"),
                        help="a malformed input line or a document that cannot be annotated is reported and "
                             "skipped, or stops the run")
    parser.add_argument("--id-field", default="id")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass")
    parser.add_argument("--max-batch-tokens", type=int, default=None,
                        help="padded sub-words per forward pass (default: the predictor's, sized for a CPU)")
    parser.add_argument("--chunk-documents", type=int, default=256, help="documents sorted by length together")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "auto", "bf16", "int8", "fp16"),
                        help="fp32 (exact, as evaluation); auto: bf16 where the CPU has bf16 units (AMX, AVX-512 "
                             "BF16), else int8 where it has VNNI (ONNX Runtime: pip install .[int8]), else fp32")
    parser.add_argument("--spark", action="store_true", help="run as a PySpark job (pip install .[spark])")
    parser.add_argument("--master", default="local[*]", help="Spark master URL (with --spark)")
    parser.add_argument("--partitions", type=int, default=None, help="minimum input partitions (with --spark)")
    parser.add_argument("--threads-per-task", type=int, default=1, help="torch threads per Spark task")
    parser.set_defaults(handler=annotate_command)


def annotate_command(args: argparse.Namespace) -> None:
    from openmed_repro.annotation import annotate

    common = dict(fmt=args.format, on_error=args.on_error, batch_size=args.batch_size,
                  max_batch_tokens=args.max_batch_tokens, precision=args.precision,
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
    print(json.dumps({"documents": summary.documents, "empty_documents": summary.empty, "entities": summary.entities,
                      "skipped_lines": [p.line for p in summary.problems], "seconds": round(summary.seconds, 2),
                      "documents_per_second": round(summary.documents_per_second, 2), "precision": summary.precision,
                      "output": str(args.output)}))


# corpus-stats: the statistics table of the corpora found here


def add_corpus_stats(commands) -> None:
    parser = _add(commands, "corpus-stats", "print the statistics of every registered corpus that loads here",
                  "Print sentences, mentions and tokens per split of every registered corpus that loads here, beside "
                  "the\npaper's split sizes, and why each of the others does not load.")
    parser.set_defaults(handler=corpus_stats_command)


def corpus_stats_command(args: argparse.Namespace) -> None:
    import pandas as pd

    from openmed_repro.data import corpora

    loaded, unavailable = [], {}
    for key in corpora.registry():
        try:
            loaded.append(corpora.load(key))
        except OpenMedError as error:
            unavailable[key] = str(error)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(corpora.statistics_table(loaded).to_string())
    for key, reason in unavailable.items():
        print(f"\n{key}: not loaded: {reason}")


# summary: what a finished run produced and where


def add_summary(commands) -> None:
    parser = _add(commands, "summary", "say what a finished run produced and where (make reproduce prints it)")
    parser.add_argument("run_dir", type=Path, help="a run directory")
    parser.add_argument("notebook", type=Path, nargs="?", default=None, help="the notebook executed for it")
    parser.set_defaults(handler=summary_command)


def summary_command(args: argparse.Namespace) -> None:
    from openmed_repro.report import run_summary

    print(run_summary.summary(args.run_dir, args.notebook))


# run-dir: the directory a chapter's run writes to


RUN_DIR_DEFAULTS = {"profile": "cpu", "dataset": "ncbi_disease"}   # the chapter notebooks' parameters cells


def add_run_dir(commands) -> None:
    parser = _add(commands, "run-dir", "print the directory a chapter's notebook writes to with these parameters",
                  "Print the directory a chapter's notebook writes to with these parameters (its -p KEY VALUE pairs):\n"
                  "output_dir if given, else the default run directory of the configuration it loads. Defaults as in "
                  "the\nnotebooks: profile=cpu dataset=ncbi_disease.")
    parser.add_argument("chapter", nargs="?", choices=layout.CHAPTERS)
    parser.add_argument("parameters", nargs="*", metavar="KEY=VALUE", help="the notebook's parameters, YAML values")
    parser.add_argument("--tuned", action="store_true", help="the tuned twin of the run directory (make tuned's)")
    parser.add_argument("--folder", choices=layout.FOLDERS,
                        help="instead of a run directory, this folder of the runs root (runs/<folder>)")
    parser.set_defaults(handler=run_dir_command)



def run_dir_command(args: argparse.Namespace) -> int:
    if args.folder:
        if args.chapter or args.parameters or args.tuned:
            print("run-dir --folder takes no chapter, parameter or --tuned", file=sys.stderr)
            return 2
        print(layout.LAYOUT.folder(getattr(layout.LAYOUT, args.folder)))
        return 0
    if not args.chapter:
        print(f"run-dir: give a chapter ({', '.join(layout.CHAPTERS)}) or --folder", file=sys.stderr)
        return 2
    defaults = {key: value for key, value in RUN_DIR_DEFAULTS.items()
                if not (key == "dataset" and args.chapter == "dapt")}
    directory = layout.run_directory(args.chapter, {**defaults, **validation.key_values(args.parameters, "run-dir")})
    print(layout.LAYOUT.tuned(directory) if args.tuned else directory)
    return 0


# record: finished runs into the record (results/)


def add_record(commands) -> None:
    parser = _add(commands, "record", "copy finished runs into the record (results/) and rewrite its index",
                  "Copy finished runs into the record: results/<chapter>/<name> for runs/<chapter>/<name>, small files\n"
                  "only (metrics, configuration, provenance, log history, footprint, compressed predicted tags; no\n"
                  "weights), no absolute path of this machine; then rewrite results/README.md. Recording an unchanged\n"
                  "run again does nothing; a different record of the same name is kept unless --replace.")
    parser.add_argument("run_dirs", type=Path, nargs="*", metavar="RUN_DIR",
                        help="finished run directories (or runs/bench/*.json benchmark files)")
    parser.add_argument("--all", action="store_true",
                        help="every finished run under --runs: finetune, dapt, baseline, hpo, bench, released")
    parser.add_argument("--runs", type=Path, default=layout.LAYOUT.runs, help="where --all looks (default runs)")
    parser.add_argument("--results", type=Path, default=None, help="the record (default: results/, or $OPENMED_RECORD_DIR)")
    parser.add_argument("--replace", action="store_true", help="overwrite a different record of the same name")
    parser.add_argument("--command", default=None,
                        help="the command that produced runs whose provenance names none (runs made before it did)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="record a run made from code with uncommitted changes (the index marks it)")
    parser.add_argument("--allow-env", action="store_true",
                        help="record a run made with other package versions than constraints.txt's (marked)")
    parser.set_defaults(handler=record_command)


def record_command(args: argparse.Namespace) -> None:
    from openmed_repro.report import record

    sources = list(args.run_dirs) + (record.finished(args.runs) if args.all else [])
    if not sources and not args.all:
        raise OpenMedError("record: name finished run directories (RUN_DIR ...) or give --all")
    results = args.results or layout.LAYOUT.record
    outcome = record.record(sources, results, args.replace, args.command, args.allow_dirty, args.allow_env)
    for recorded in outcome.recorded:
        print(f"{run_provenance.portable_path(recorded.path)}: {recorded.outcome} ({recorded.size:,} bytes)")
    for warning in outcome.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"index: {results / record.INDEX} ({len(record.listing(results))} records)")
    if outcome.refused:
        raise OpenMedError(f"{len(outcome.refused)} of {len(sources)} not recorded:\n  " + "\n  ".join(outcome.refused))


# notebook: one chapter through papermill, its error as one line


def add_notebook(commands) -> None:
    parser = _add(commands, "notebook", "run one chapter notebook (papermill); a failure ends in its one-line reason",
                  "Execute a chapter notebook into OUTPUT with papermill (its parameters as -p KEY VALUE or -f YAML,\n"
                  "values read as YAML). A failed cell ends the command with the chapter's own one-line message, the\n"
                  "executed notebook kept for the full story.")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    parser.add_argument("-f", "--parameters-file", action="append", default=[], type=Path, metavar="YAML")
    parser.add_argument("-k", "--kernel", default="openmed-repro")
    parser.set_defaults(handler=notebook_command)


def notebook_command(args: argparse.Namespace) -> None:
    import yaml

    from openmed_repro.report import book

    parameters = {}
    for path in args.parameters_file:
        if not path.is_file():
            raise OpenMedError(f"{path}: parameter file not found")
        parameters.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    parameters.update({key: yaml.safe_load(value) for key, value in args.parameter})
    book.execute_chapter(args.notebook, args.output, parameters, args.kernel, log_output=True)


# audit: the record against its manifest, its figures against its predictions


def add_audit(commands) -> None:
    parser = _add(commands, "audit", "check the record: its files against the manifest, its figures against its "
                  "predictions",
                  "Check results/ without training: every file against results/SHA256SUMS (written by `record`), and\n"
                  "every recorded run's dev and test strict and default precision, recall and F1, per type, recomputed\n"
                  "from its predicted tags and the gold corpus files it names by sha256. Exit 1 naming each problem.")
    parser.add_argument("--results", type=Path, default=None, help="the record (default: results/, or $OPENMED_RECORD_DIR)")
    parser.add_argument("--data-dir", default=None, help="the corpora (default: $OPENMED_DATA_DIR, ../shared/data)")
    parser.set_defaults(handler=audit_command)


def audit_command(args: argparse.Namespace) -> int:
    from openmed_repro.report import audit

    results = args.results or layout.LAYOUT.record
    report = audit.audit(results, args.data_dir)
    for problem in report.problems:
        print(f"audit: {problem}", file=sys.stderr)
    print(f"audit of {run_provenance.portable_path(results)}: {report.verdict()}")
    return 0 if report.passed else 1


# verify: a reviewer's rerun of the record


def add_verify(commands) -> None:
    parser = _add(commands, "verify", "rerun what a chapter's page shows and judge each headline figure",
                  "Rerun the run a chapter's page shows (or the --run ones, or --all of results/<chapter>/) into\n"
                  "runs/verify/<chapter>/<name>: the recorded configuration, seed and thread count (a finished rerun\n"
                  "is read back; --fresh trains it again). The record must pass its audit. Then print each\n"
                  "headline figure, recorded and rerun, with its tolerance and verdict (identical, reproduced, differs),\n"
                  "and write runs/verify/<chapter>/verdict.json. Tolerances: openmed_repro/report/verify.py.")
    parser.add_argument("chapter", help="finetune, baseline or dapt")
    parser.add_argument("--results", type=Path, default=None, help="the record (default: results/, or $OPENMED_RECORD_DIR)")
    parser.add_argument("--runs", type=Path, default=layout.LAYOUT.runs, help="where reruns go: <runs>/verify (default runs)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the recorded run's)")
    parser.add_argument("--run", nargs="+", default=[], metavar="NAME", dest="names",
                        help="these records (NAME under results/<chapter>/) instead of the page's run")
    parser.add_argument("--all", action="store_true", dest="every", help="every recorded run of the chapter")
    parser.add_argument("--fresh", action="store_true", help="train finished reruns again instead of reading them back")
    parser.add_argument("--trials", type=int, default=10_000, help="approximate randomization trials")
    parser.add_argument("--samples", type=int, default=10_000, help="bootstrap samples of the recorded F1")
    _set_option(parser, "dataset=DIR (a corpus directory for a run whose corpus was one)")
    _add_ray(parser, "each rerun")
    parser.set_defaults(handler=verify_command)


def verify_command(args: argparse.Namespace) -> None:
    import pandas as pd

    from openmed_repro.report import verify

    verify.chapter_of(args.chapter)   # refused before anything loads
    verdicts = verify_chapter(args.chapter, args.results, args.runs, args.names, args.threads,
                              validation.key_values(args.set), args.trials, args.samples, args.every, args.fresh,
                              lambda line: print(line, flush=True), _placement(args))
    with pd.option_context("display.width", 250, "display.max_colwidth", 120):
        print(verify.table(verdicts).to_string(index=False))
    print(f"verdict: {args.runs / layout.LAYOUT.verify / args.chapter / verify.VERDICT}")


def verify_chapter(chapter: str, results: Path | None = None, runs_root: Path = layout.LAYOUT.runs,
                   names: Sequence[str] = (), threads: int | None = None, overrides: dict | None = None,
                   trials: int = 10_000, samples: int = 10_000, every: bool = False, fresh: bool = False,
                   say: Callable[[str], None] = print, placement: Placement | None = None) -> list[RunVerdict]:
    """Rerun the chapter's page run (or the named ones, or `every` recorded run) into runs/verify/<chapter>/<name>
    and judge it: report/verify.py chooses the runs (the record audited, the plan said) and judges them, reading
    only; the training chapters' runner (training/rerun.py) trains them, here or on a Ray cluster (`placement`)."""
    results = layout.LAYOUT.record if results is None else Path(results)
    from openmed_repro.infra import cluster
    from openmed_repro.report import verify
    from openmed_repro.training import rerun

    reruns = verify.prepare(chapter, results, runs_root, names, every, overrides, say)
    used = rerun.rerun_each(chapter, reruns, overrides, threads, fresh, placement or cluster.SERIAL)
    return verify.judge(chapter, reruns, used, runs_root, (overrides or {}).get("dataset"), trials, samples)


# released: the paper's checkpoints scored on our test splits


def add_released(commands) -> None:
    parser = _add(commands, "released", "score the paper's released checkpoints on our test splits (no training)",
                  "Score the paper's released checkpoints (parameters/released.yaml) on our test splits: Table 4 "
                  "checked\nwithout training, each into runs/released/<corpus>-<checkpoint>, one line per corpus "
                  "and checkpoint.\nA finished run is read back; a checkpoint the hub cannot give is one line and "
                  "the others go on.")
    parser.add_argument("--corpora", nargs="+", default=None, help="corpus keys (default: every paired corpus)")
    parser.add_argument("--record", action="store_true",
                        help="record each finished run in results/ (a recorded one is not scored again)")
    parser.set_defaults(handler=released_command)


def released_command(args: argparse.Namespace) -> None:
    from openmed_repro.released import checkpoints, scoring

    paired = checkpoints.catalogue()
    pairs = [entry for entry in paired if args.corpora is None or entry.corpus in args.corpora]
    unknown = sorted(set(args.corpora or ()) - {entry.corpus for entry in pairs})
    if unknown:
        raise OpenMedError(f"--corpora {' '.join(unknown)}: no released checkpoint paired in parameters/released.yaml; "
                           f"paired: {', '.join(dict.fromkeys(entry.corpus for entry in paired))}")
    failed = scoring.score_all(pairs, lambda line: print(line, flush=True), _recorder() if args.record else None,
                               _recorded_metrics if args.record else None)
    if failed:
        raise OpenMedError(f"{failed} of {len(pairs)} released checkpoints not scored (one line each above)")


# parameter-cells: the notebooks' parameters cells written from the settings


def add_parameter_cells(commands) -> None:
    parser = _add(commands, "parameter-cells", "write the chapter notebooks' parameters cells from the settings",
                  "Write the last lines of the parameters cell of finetune, dapt, baseline and hpo from their settings\n"
                  "(openmed_repro/infra/job_settings.py): every field the hand-kept lines above them do not assign.\n"
                  "Run it after adding a field; --check only says which notebooks are out of date (exit 1).")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 naming the out-of-date notebooks")
    parser.set_defaults(handler=parameter_cells_command)


def parameter_cells_command(args: argparse.Namespace) -> int:
    from openmed_repro.report import book, notebook_parameters

    stale = []
    for name in notebook_parameters.GENERATED_CELLS:
        path = book.NOTEBOOKS / f"{name}.ipynb"
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cell = next(cell for cell in notebook["cells"] if "parameters" in cell["metadata"].get("tags", []))
        source = "".join(cell["source"])
        written = notebook_parameters.parameters_cell(name, source)
        if written != source:
            stale.append(path)
            cell["source"] = written.splitlines(keepends=True)
            if not args.check:
                atomic_files.write_text(path, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    for path in stale:
        print(f"{path}: {'out of date' if args.check else 'parameters cell written'}")
    return 1 if args.check and stale else 0


# The sub-commands in the order `openmed-repro --help` lists them.
COMMANDS = (add_search, add_baseline, add_sweep, add_notebook, add_audit, add_book, add_annotate, add_corpus_stats, add_summary,
            add_run_dir, add_record, add_verify, add_released, add_parameter_cells)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="openmed-repro", description=__doc__.splitlines()[0])
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        status = args.handler(args)
    except OpenMedError as error:
        print(f"openmed-repro: error: {error}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
