"""Annotating raw text with a trained fine-tuning run: documents (one a line, or JSONL with an id and a text
field) are split into sentences and words with character offsets, predicted through the same sliding
windows as evaluation (nothing is truncated), and written as JSONL entities
`{"id", "start", "end", "type", "text", "score"}` whose offsets index the document's text.

    openmed-repro annotate --run runs/finetune/ncbi_disease-minilm-l6-cpu-lora-seed42 abstracts.jsonl entities.jsonl

Choices made here: sentences and words as data/sentences.py splits them; an I-X that does not continue an
X entity opens one (iob.spans_of, the lenient reading of seqeval's default mode); an entity's score is the
mean softmax probability of its words' predicted tags (at each word's first sub-word); scores are rounded to
4 decimals. A malformed input
line (not UTF-8, empty, invalid JSON, no id or text field, a lone surrogate) or a document whose annotation
fails is reported with its line number and skipped, the rest annotated, or it stops the run with
`on_error="fail"`: it is never dropped silently. In-process and on Spark a line is read by one function
(document_of_line), so both skip exactly the same lines."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from openmed_repro.infra import atomic_files, validation
from openmed_repro.data import iob, sentences
from openmed_repro.models import saved_model
from openmed_repro.infra import runs
from openmed_repro.infra.job_settings import RunConfig
from openmed_repro.errors import OpenMedError

INPUT_FORMATS = ("auto", "text", "jsonl", "parquet")
ON_ERROR = ("skip", "fail")


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    line: int


@dataclass(frozen=True)
class Problem:
    """A skipped input line (malformed, or its document's annotation failed): its number (1-based) and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class Entity:
    id: str
    start: int
    end: int
    type: str
    text: str
    score: float

    def json_line(self) -> str:
        return json.dumps({"id": self.id, "start": self.start, "end": self.end, "type": self.type,
                           "text": self.text, "score": self.score}, ensure_ascii=False)


@dataclass(frozen=True)
class Summary:
    documents: int
    entities: int
    problems: list[Problem]
    seconds: float                       # model loading included
    load_seconds: float | None = None    # of which loading the model (in-process only)
    precision: str = "fp32"              # what the model predicted in (`auto` resolved, by the driver on Spark)
    empty: int = 0                       # of the documents, those with no word to tag (blank text): no entity

    @property
    def documents_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0


def input_format(path: str | Path, requested: str = "auto") -> str:
    """The format of an input: as requested, else by suffix (.jsonl/.json/.ndjson, .parquet), else text."""
    if requested not in INPUT_FORMATS:
        raise OpenMedError(f"parameter format={requested!r}; valid: {', '.join(INPUT_FORMATS)}")
    if requested != "auto":
        return requested
    suffix = Path(str(path).rstrip("/")).suffix.lower()
    return {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}.get(suffix, "text")


def parse_line(line: str, number: int, fmt: str, id_field: str = "id", text_field: str = "text") -> Document | Problem:
    """One input line (without its line break) as a Document, or the Problem that makes it unusable.
    Plain-text documents take their line number as id."""
    if not line.strip():
        return Problem(number, "empty line")
    if fmt == "text":
        return Document(str(number), line, number)
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return Problem(number, f"invalid JSON ({error.msg} at column {error.colno})")
    return document_of(record, number, id_field, text_field)


def document_of(record, number: int, id_field: str = "id", text_field: str = "text") -> Document | Problem:
    """A JSON object or table row (a mapping) as a Document, or the Problem with it."""
    if not isinstance(record, dict):
        return Problem(number, f"not a JSON object but {type(record).__name__}")
    if record.get(text_field) is None:
        return Problem(number, f"no {text_field!r} field")
    if not isinstance(record[text_field], str):
        return Problem(number, f"field {text_field!r} is {type(record[text_field]).__name__}, not a string")
    if record.get(id_field) is None or isinstance(record[id_field], (dict, list, bool)):
        return Problem(number, f"no {id_field!r} field (a string or number)")
    document = Document(str(record[id_field]), record[text_field], number)
    for field, value in ((text_field, document.text), (id_field, document.id)):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:   # JSON's "\ud800": valid JSON, but no character of any text
            return Problem(number, f"field {field!r} holds a lone surrogate (\\u{ord(value[error.start]):04x} at "
                                   f"character {error.start + 1}), which is not text")
    return document


def document_of_line(raw: bytes, number: int, fmt: str, id_field: str = "id",
                     text_field: str = "text") -> Document | Problem:
    """One input line as bytes (its line break kept or not) as a Document, or the Problem that makes it
    unusable. The one reading of a line, in-process and on Spark, so that both skip exactly the same lines."""
    try:
        line = bytes(raw).rstrip(b"\r\n").decode("utf-8")
    except UnicodeDecodeError as error:
        return Problem(number, f"not UTF-8 (byte {raw[error.start]:#04x} at byte {error.start + 1} of the line)")
    if number == 1:
        line = line.removeprefix("\ufeff")   # the byte order mark some editors write
    return parse_line(line, number, fmt, id_field, text_field)


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every line: lines end at "\n" only, as Spark's reader is told to cut them."""
    with path.open("rb") as handle:
        yield from enumerate(handle, start=1)


def read_documents(path: str | Path, fmt: str = "auto", on_error: str = "skip", id_field: str = "id",
                   text_field: str = "text") -> tuple[list[Document], list[Problem]]:
    """Every usable document of a text or JSONL file and the problems of the others. With on_error="fail"
    the first malformed line is an error naming the file and line."""
    path = Path(path)
    if on_error not in ON_ERROR:
        raise OpenMedError(f"parameter on_error={on_error!r}; valid: {', '.join(ON_ERROR)}")
    fmt = input_format(path, fmt)
    if fmt == "parquet":
        raise OpenMedError(f"{path}: Parquet input is read by the Spark path (--spark); in-process annotation "
                           "reads text or JSONL")
    if not path.is_file():
        raise OpenMedError(f"{path}: input file not found")
    documents, problems = [], []
    for number, raw in read_lines(path):
        parsed = document_of_line(raw, number, fmt, id_field, text_field)
        if isinstance(parsed, Problem):
            if on_error == "fail":
                raise stopped_at(path, parsed)
            problems.append(parsed)
        else:
            documents.append(parsed)
    return documents, problems


def stopped_at(source: str | Path, problem: Problem) -> OpenMedError:
    """The error that stops a run at a skipped line (on_error="fail")."""
    return OpenMedError(f"{source}:{problem.line}: {problem.reason} (use --on-error skip to skip such lines)")


def report(problems: Sequence[Problem], source: str | Path, stream=None) -> None:
    """One line per skipped input line, `file:line: reason; skipped`, on stderr."""
    stream = stream or sys.stderr
    for problem in problems:
        print(f"{source}:{problem.line}: {problem.reason}; skipped", file=stream)


def entities_of(document: Document, spans: Sequence[tuple[int, int]], tags: Sequence[str],
                probabilities: Sequence[float]) -> list[Entity]:
    """Entities of one sentence from its words' tags (grouped by iob.spans_of), at the document's character
    offsets, each scored by the mean probability of its words' tags."""
    found = []
    for first, end, kind in iob.spans_of(tags):
        start, stop = spans[first][0], spans[end - 1][1]
        scores = probabilities[first:end]
        found.append(Entity(document.id, start, stop, kind, document.text[start:stop],
                            round(sum(scores) / len(scores), 4)))
    return found


def run_config_of(run_dir: Path) -> RunConfig:
    """The validated configuration a finished fine-tuning run recorded, once its saved model is checked whole
    (a damaged file is named here, not deep inside the model's loading)."""
    if not (run_dir / runs.MODEL_DIR / saved_model.LABELS_FILE).is_file():
        raise OpenMedError(f"parameter run: {run_dir} holds no model/ of a fine-tuning run "
                           "(give a run directory written by notebooks/finetune.ipynb)")
    if not runs.is_complete(run_dir):
        raise OpenMedError(f"parameter run: {run_dir} is an unfinished run (no metrics.json); finish it first")
    run_config = validation.validated(RunConfig, atomic_files.read_json(run_dir / runs.CONFIG), str(run_dir / runs.CONFIG))
    saved_model.check(run_dir / runs.MODEL_DIR)
    return run_config


class Annotator:
    """A run's model, loaded once (LoRA merged into the backbone for speed), annotating batches of documents
    through the predictor evaluation uses. A forward pass holds at most `batch_size` windows and
    `max_batch_tokens` padded sub-words (None: the predictor's default). `precision`: fp32 (exact, the
    default), bf16, int8, fp16 (a GPU) or auto (what this machine does fast: infra/devices.py)."""

    def __init__(self, run_dir: str | Path, batch_size: int = 32, max_batch_tokens: int | None = None,
                 precision: str = "fp32"):
        from openmed_repro.infra import devices
        from openmed_repro.models import low_precision, predictor, token_classifier

        run_dir = Path(run_dir)
        self.run_config = run_config_of(run_dir)
        self.precision = devices.resolve_inference_precision(precision)
        model, self.tokenizer, self.labels = token_classifier.load(run_dir / runs.MODEL_DIR, self.run_config)
        self.model = low_precision.prepare(predictor.inference_model(model, keep_original=False), self.precision,
                                           keep_original=False)
        self.batch_size = batch_size
        self.max_batch_tokens = predictor.MAX_BATCH_TOKENS if max_batch_tokens is None else max_batch_tokens

    def annotate(self, documents: Sequence[Document]) -> list[list[Entity]]:
        """The entities of each document, in document order."""
        from openmed_repro.models import predictor

        sentence_spans = [(d, spans) for d in documents for spans in sentences.sentence_words(d.text)]
        tokens = [[d.text[s:e] for s, e in spans] for d, spans in sentence_spans]
        tags, probabilities = predictor.predict_with_scores(
            self.model, self.tokenizer, tokens, self.labels, self.run_config.max_length, self.run_config.overlap,
            self.batch_size, self.max_batch_tokens, progress=False)
        by_document: dict[int, list[Entity]] = {id(d): [] for d in documents}
        for (document, spans), sentence_tags, sentence_probabilities in zip(sentence_spans, tags, probabilities):
            by_document[id(document)].extend(entities_of(document, spans, sentence_tags, sentence_probabilities))
        return [by_document[id(d)] for d in documents]

    def annotate_each(self, documents: Sequence[Document]) -> list[list[Entity] | Problem]:
        """The entities of each document, or the Problem of one whose tokenization or prediction failed: a
        batch that fails is annotated again document by document, so a bad document costs only itself."""
        try:
            return self.annotate(documents)
        except Exception:   # the document at fault is found by annotating each one alone
            return [self._annotate_alone(document) for document in documents]

    def _annotate_alone(self, document: Document) -> list[Entity] | Problem:
        try:
            return self.annotate([document])[0]
        except Exception as error:   # any failure of this document, reported with its line, never silently
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            return Problem(document.line, f"annotation failed ({type(error).__name__}: {first_line})")


def chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def annotate_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path, fmt: str = "auto",
                  on_error: str = "skip", batch_size: int = 32, chunk_documents: int = 256,
                  id_field: str = "id", text_field: str = "text", progress: bool = True,
                  max_batch_tokens: int | None = None, precision: str = "fp32") -> Summary:
    """Annotate every document of `input_path` into the JSONL file `output_path` (written whole or not at
    all, so a failed or interrupted run is simply run again) with the model in `precision` (Annotator).
    Malformed lines are reported on stderr and skipped, or stop the run (on_error="fail") before the model is
    loaded; so are documents whose annotation fails, as they come."""
    documents, problems = read_documents(input_path, fmt, on_error, id_field, text_field)
    report(problems, input_path)
    empty = sum(1 for document in documents if not document.text.strip())
    started = time.perf_counter()
    annotator = Annotator(run_dir, batch_size, max_batch_tokens, precision)
    loaded = time.perf_counter()
    count = annotated = 0
    atomic_files.remove_stale_temporaries(Path(output_path).parent, Path(output_path).name)   # a killed run's partial output
    with atomic_files.atomic_path(output_path) as temporary, temporary.open("w", encoding="utf-8") as out, \
            tqdm(total=len(documents), desc="annotating", unit="doc", disable=not progress) as bar:
        for chunk in chunks(documents, chunk_documents):
            for result in annotator.annotate_each(chunk):
                if isinstance(result, Problem):
                    if on_error == "fail":
                        raise stopped_at(input_path, result)
                    report([result], input_path)
                    problems.append(result)
                    continue
                out.writelines(entity.json_line() + "\n" for entity in result)
                count += len(result)
                annotated += 1
            bar.update(len(chunk))
    return Summary(annotated, count, sorted(problems, key=lambda p: p.line), time.perf_counter() - started,
                   loaded - started, annotator.precision, empty)


def read_entities(path: str | Path) -> list[dict]:
    """The entities of a JSONL output file, or of a Spark output directory (its part files in order)."""
    path = Path(path)
    files = sorted(path.glob("part-*")) if path.is_dir() else [path]
    return [json.loads(line) for file in files for line in file.read_text(encoding="utf-8").split("\n") if line]
