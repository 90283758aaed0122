"""The released-checkpoint chapter's tables: the checkpoint's test scores beside the paper's figure, what its label
map removed, and the approximate randomization test against our best recorded run on the same corpus. Each takes
the chapter's Attempt and shows nothing (None) when the checkpoint was not run here."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from IPython.display import Markdown

from openmed_repro.data import paper, saved_predictions
from openmed_repro.evaluation import comparison, metrics, significance
from openmed_repro.infra import layout
from openmed_repro.released import checkpoints
from openmed_repro.released.scoring import SPLIT, Attempt
from openmed_repro.report import results
from openmed_repro.report.results import RELEASED


def headline(attempt: Attempt) -> Markdown:
    """One line: why it was not run here, or what was scored and its strict F1 beside the paper's."""
    if attempt.result is None:
        return Markdown(attempt.not_run)
    record = attempt.result.metrics
    corpus = Path(record["dataset"]).name
    claimed = (paper.table4().get(corpus) or {}).get("f1")
    how = "read back from" if attempt.result.reused else "scored into"
    return Markdown(f"**{record['checkpoint']}** on the {SPLIT} split of **{corpus}** "
                    f"({record['sentences'][SPLIT]:,} sentences, {how} `{attempt.result.run_dir}`): strict F1 "
                    f"**{100 * record[SPLIT]['strict']['f1']:.2f}**"
                    f"{f', paper {claimed:.2f}' if claimed is not None else ''}; {record['words_per_second']:,} "
                    f"words/s on {record['device']}, windows of {record['max_length']} sub-words.")


def scores(attempt: Attempt, samples: int = 10_000, seed: int = 0, data_dir: str | Path | None = None
           ) -> pd.DataFrame | None:
    """Strict precision, recall and F1 with its bootstrap 95% interval, seqeval's default-mode F1, and beside
    them the paper's Table 4 figure and the one the pairing's source gives (percent)."""
    if attempt.result is None:
        return None
    record, run_dir = attempt.result.metrics, attempt.result.run_dir
    _, gold, predicted = saved_predictions.read(run_dir, SPLIT, data_dir=data_dir)
    interval = significance.bootstrap_interval(metrics.sentence_counts(gold, predicted), samples, seed=seed)
    strict = record[SPLIT]["strict"]
    corpus = Path(record["dataset"]).name
    paired = checkpoints.find(record["dataset"], record["checkpoint"])
    rows = [{"source": RELEASED, "precision": 100 * strict["precision"], "recall": 100 * strict["recall"],
             "F1 (strict)": 100 * strict["f1"], "95% CI": f"{100 * interval.low:.1f}-{100 * interval.high:.1f}",
             "F1 (seqeval default)": 100 * record[SPLIT]["default"]["f1"]},
            {"source": "paper, Table 4", "F1 (strict)": (paper.table4().get(corpus) or {}).get("f1")},
            {"source": f"as paired ({paired.pairing})" if paired else "as paired (not in released.yaml)",
             "F1 (strict)": paired.reported_f1 if paired else None}]
    return pd.DataFrame(rows).set_index("source").round(2)


def label_map(attempt: Attempt) -> Markdown | None:
    """What the label map did: the checkpoint's types, those mapped and those set to O with what they removed."""
    if attempt.result is None:
        return None
    mapped = attempt.result.metrics["labels"]
    unmapped = mapped["unmapped_types"]
    text = (f"The checkpoint's labels: {', '.join(f'`{label}`' for label in mapped['checkpoint'])}. Mapped onto the "
            f"corpus's types: {', '.join(f'{source} → {target}' for source, target in mapped['map'].items())}. ")
    if not unmapped:
        return Markdown(text + "Every type of the checkpoint is mapped: nothing was removed.")
    by_type = ", ".join(f"{kind} {count:,}" for kind, count in mapped["removed_by_type"].items()) or "none"
    return Markdown(text + f"Types the corpus lacks, set to O: {', '.join(unmapped)}, which removed predicted "
                           f"entities: {mapped['removed_entities']:,} (words: {mapped['removed_words']:,}; by type: "
                           f"{by_type}).")


def per_type(attempt: Attempt) -> pd.DataFrame | None:
    """Strict precision, recall, F1 and support per entity type of the corpus."""
    return None if attempt.result is None else paper.per_type_table(attempt.result.metrics, SPLIT)


def against_ours(attempt: Attempt, root: str | Path | None = None, profiles: list[str] | None = None,
                 trials: int = 10_000, seed: int = 0, data_dir: str | Path | None = None
                 ) -> pd.DataFrame | Markdown | None:
    """The approximate randomization test of the F1 difference between the checkpoint and our best run on the
    corpus under `root` (the record, or runs/), chosen on dev as Table 4 chooses; a sentence when there is none."""
    root = layout.LAYOUT.record if root is None else Path(root)
    if attempt.result is None:
        return None
    corpus = Path(attempt.result.metrics["dataset"]).name
    ours = results.best_run(results.finished_runs(root, profiles), corpus)
    if ours is None:
        return Markdown(f"No fine-tuning run of ours on {corpus} under `{root}` to test against (`make table4` makes them).")
    name = f"ours: {ours['backbone']}, {ours['method']}, profile {ours['profile']}, seed {ours['seed']}"
    loaded = comparison.load([attempt.result.run_dir, ours["run_dir"]], SPLIT, [RELEASED, name], data_dir)
    return comparison.pairwise_tests(loaded, trials, seed)
