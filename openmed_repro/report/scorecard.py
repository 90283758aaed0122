"""The scorecard on the book's first page: each claim of the paper (arXiv 2508.01630), what the record
(results/) measured for it, a verdict and the chapter that shows it. Every figure is computed here from
the recorded runs, so the card changes when the record does.

Verdicts:
  supported at this scale   the record's runs agree with the claim on our backbone and hardware
  contradicted              they disagree (the rule that decides is stated beside the figure)
  not testable here         the claim concerns something the record cannot hold (the paper's large
                            backbones, an A100); what was measured instead is stated
  not measured yet          the runs that would test it are not in the record; the command that makes them
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd

from openmed_repro.data import paper
from openmed_repro.infra import config, footprint, runs

LORA_MATCH_POINTS = 1.0   # LoRA "matches" full fine-tuning when its mean test F1 is at most this far below


def recorded_metrics(results: Path, chapter: str, profile_loader=None) -> list[dict]:
    """metrics.json of every recorded run of a chapter; with the chapter's `profile_loader`, only the runs that
    follow their profile's recipe (the search's tuned runs are its chapter's, not more seeds of the profile)."""
    return [runs.read_json(path) for path in sorted((Path(results) / chapter).glob(f"*/{runs.METRICS}"))
            if profile_loader is None or runs.follows_its_profile(path.parent, profile_loader)]


def claims(results: Path = runs.RECORD) -> pd.DataFrame:
    """One row per claim: claim, measured here, verdict, chapter."""
    finetuned = [m for m in recorded_metrics(results, "finetune", config.load_run_config) if "test" in m]
    reported = config.read_parameters("paper.yaml")
    rows = [_dapt(recorded_metrics(results, "dapt"), reported),
            _lora_versus_full(finetuned),
            _state_of_the_art(finetuned),
            _minutes_per_corpus(finetuned, reported),
            _adapter_size(finetuned, reported),
            _footprint(results)]
    return pd.DataFrame(rows, columns=["claim", "measured here", "verdict", "chapter"])


def markdown(results: Path = runs.RECORD) -> str:
    """The scorecard as the first page shows it: a short lead and the table, chapters linked."""
    table = claims(results)
    table["chapter"] = [f"[{name}]({name}.ipynb)" for name in table["chapter"]]
    return ("## The paper's claims, checked against the record\n\n"
            "Computed from the recorded runs in `results/` when the book was built (the offline backbone, "
            "all-MiniLM-L6-v2 with 22M parameters, on a CPU): what each claim predicts, what was measured "
            "here, and whether it holds at this scale.\n\n" + table.to_markdown(index=False) + "\n")


def _dapt(recorded: list[dict], reported: dict) -> list:
    claim = ("DAPT lowers the perplexity of held-out PubMed text (22.5% for DeBERTa-v3, "
             f"{reported['dapt']['perplexity_reduction_percent']['pubmedbert-large']}% for PubMedBERT)")
    if not recorded:
        return [claim, "no DAPT run in the record", "not measured yet (`make dapt`, `make record`)", "dapt"]
    measured = "; ".join(f"{m['perplexity_reduction_percent']:.1f}% lower on {m['backbone']} "
                         f"({m['perplexity_before']:.2f} -> {m['perplexity_after']:.2f})" for m in recorded)
    lower = all(m["perplexity_reduction_percent"] > 0 for m in recorded)
    return [claim, measured, "supported at this scale" if lower else "contradicted (perplexity did not fall)", "dapt"]


def _f1s(runs_of: list[dict]) -> list[float]:
    return [100 * m["test"]["strict"]["f1"] for m in runs_of]


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} (1 seed)"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} ({len(values)} seeds)"


def _lora_versus_full(finetuned: list[dict]) -> list:
    claim = "LoRA matches full fine-tuning while training about 1.4% of the parameters"
    corpora = sorted({m["dataset"] for m in finetuned if m["method"] == "lora"}
                     & {m["dataset"] for m in finetuned if m["method"] == "full"})
    if not corpora:
        return [claim, "no corpus with both a LoRA and a full fine-tuning run in the record",
                "not measured yet (`make table4`, `make record`)", "evaluate"]
    parts, matched = [], True
    for corpus in corpora:
        lora = [m for m in finetuned if m["dataset"] == corpus and m["method"] == "lora"]
        full = [m for m in finetuned if m["dataset"] == corpus and m["method"] == "full"]
        gap = statistics.mean(_f1s(lora)) - statistics.mean(_f1s(full))
        matched &= gap >= -LORA_MATCH_POINTS
        share = 100 * lora[0]["trainable_parameters"] / lora[0]["total_parameters"]
        parts.append(f"{Path(corpus).name}: LoRA {_spread(_f1s(lora))}, full {_spread(_f1s(full))} test strict F1 "
                     f"({gap:+.1f} points), LoRA training {share:.2f}% of the parameters")
    rule = f"LoRA's mean at most {LORA_MATCH_POINTS:g} point below full fine-tuning's on every corpus"
    verdict = "supported at this scale" if matched else "contradicted"
    return [claim, "; ".join(parts) + f" (rule: {rule})", verdict, "evaluate"]


def _state_of_the_art(finetuned: list[dict]) -> list:
    claim = "State of the art on 10 of 12 corpora"
    reported = paper.table4()
    gaps = {}
    for m in finetuned:
        key = Path(m["dataset"]).name
        if reported.get(key, {}).get("f1") and m["seed"] == 42 and m["method"] == "lora":
            gaps[key] = 100 * m["test"]["strict"]["f1"] - reported[key]["f1"]
    measured = ("no recorded LoRA run" if not gaps else
                f"the 22M offline backbone is {-statistics.mean(gaps.values()):.1f} points below the paper's F1 "
                f"on average over {len(gaps)} corpora ({', '.join(sorted(gaps))})")
    return [claim, measured, "not testable here: the claim is about the paper's large backbones, which are not "
            "available offline", "results"]


def _minutes_per_corpus(finetuned: list[dict], reported: dict) -> list:
    low, high = reported["fine_tuning"]["minutes_per_corpus_a100"]
    claim = f"{low}-{high} minutes of fine-tuning a corpus on one A100"
    gpu = [m for m in finetuned if not str(m.get("device") or "cpu").startswith("cpu")]   # a GPU's name
    cpu = [m for m in finetuned if m not in gpu]
    paper_scale = [m for m in gpu if m.get("profile") == "paper"]
    if paper_scale:
        minutes = [m["train_seconds"] / 60 for m in paper_scale]
        inside = all(low <= value <= high for value in minutes)
        return [claim, f"{min(minutes):.1f}-{max(minutes):.1f} min on {paper_scale[0]['device']} ({len(paper_scale)} runs)",
                "supported at this scale" if inside else "contradicted", "finetune"]
    if gpu:   # the offline backbone on a GPU says nothing about the paper's large ones
        minutes = [m["train_seconds"] / 60 for m in gpu]
        return [claim, f"{min(minutes):.1f}-{max(minutes):.1f} min a run on {gpu[0]['device']} with the offline backbone "
                f"({len(gpu)} runs)", "not testable here: no GPU run of the paper's profile (its backbones are not "
                "available offline)", "finetune"]
    minutes = [m["train_seconds"] / 60 for m in cpu]
    measured = ("no recorded run" if not minutes else
                f"{min(minutes):.0f}-{max(minutes):.0f} min a run on {cpu[0]['device']} ({len(cpu)} runs)")
    return [claim, measured, "not testable here: no GPU run in the record", "finetune"]


def _adapter_size(finetuned: list[dict], reported: dict) -> list:
    low, high = reported["fine_tuning"]["adapter_mb"]
    claim = f"Adapters of {low}-{high} MB"
    lora = [m for m in finetuned if m["method"] == "lora" and m.get("model_mb")]
    if not lora:
        return [claim, "no recorded LoRA run", "not measured yet (`make reproduce`, `make record`)", "finetune"]
    bytes_per_parameter = statistics.mean(1e6 * m["model_mb"] / m["trainable_parameters"] for m in lora)
    counts = reported["fine_tuning"]["trainable_parameters"]
    predicted = {name: count * bytes_per_parameter / 1e6 for name, count in counts.items()}
    inside = all(low <= size <= high for size in predicted.values())
    measured = (f"the saved adapter and head weigh {bytes_per_parameter:.2f} bytes a trainable parameter "
                f"({lora[0]['model_mb']:.1f} MB for {lora[0]['trainable_parameters']:,}); at the paper's counts "
                + ", ".join(f"{name} {size:.1f} MB" for name, size in predicted.items()))
    return [claim, measured, "supported at this scale (by the measured size per parameter)" if inside else
            "contradicted (by the measured size per parameter)", "finetune"]


def _footprint(results: Path) -> list:
    constants = footprint.paper_constants()
    claim = (f"A small footprint, by the paper's formula ({constants['gpu_tdp_watts']} W x hours x "
             f"{constants['grid_kg_co2e_per_kwh']} kg CO2e/kWh)")
    records = footprint.gather(results)
    if records.empty:
        return [claim, "no footprint in the record", "not measured yet", "footprint"]
    measured = (f"{len(records)} recorded trainings: {records['hours'].sum():.1f} hours, "
                f"{1000 * records['energy_kwh'].sum():.0f} Wh, {1000 * records['emissions_kg'].sum():.0f} g CO2e "
                "measured by CodeCarbon")
    return [claim, measured, "not testable here: the formula is for A100 hours; the CPU's own is measured instead",
            "footprint"]
