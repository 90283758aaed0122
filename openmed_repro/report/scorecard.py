"""The scorecard on the book's first page: each claim of the paper (arXiv 2508.01630) judged at two scales from
the record (results/): at the paper's (testable here or not, and why) and at laptop scale, where the claim has a
stated analogue that the offline backbone on this hardware can test. Every figure is computed here from the
recorded runs, so the card changes when the record does.

Laptop-scale verdicts:
  supported        the record's runs agree with the analogue, by the rule stated beside the figure
  contradicted     they disagree, by the same rule
  not significant  the runs point one way, but the tests per corpus or seed do not decide
  measured         a cost the paper reports, measured here (no rule decides a cost at another scale)
  not measured yet the runs that would test it are not in the record; the command that makes them
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd

from openmed_repro.data import paper
from openmed_repro.errors import OpenMedError
from openmed_repro.evaluation import comparison
from openmed_repro.infra import atomic_files, footprint, job_settings, layout, paths, runs
from openmed_repro.report import ablation, gap_to_baseline, levers
from openmed_repro.report import results as results_table

LORA_MATCH_POINTS = 1.0   # LoRA "matches" full fine-tuning when its mean test F1 is at most this far below
COLUMNS = ["claim", "at the paper's scale", "laptop-scale analogue", "measured here", "verdict", "chapter"]
NOT_HERE = "not testable here"
BASELINE_PROFILE = "cpu"


def recorded_metrics(results: Path, chapter: str, profile_loader=None) -> list[dict]:
    """metrics.json of every recorded run of a chapter, each with its directory under "run_dir" and whether it
    started from DAPT under "from_dapt"; with the chapter's `profile_loader`, only the runs that follow their
    profile's recipe (the search's tuned runs are its chapter's, not more seeds of the profile)."""
    found = []
    for path in sorted((Path(results) / chapter).glob(f"*/{runs.METRICS}")):
        if profile_loader is None or runs.follows_its_profile(path.parent, profile_loader):
            found.append({**atomic_files.read_json(path), "run_dir": str(path.parent),
                          "from_dapt": runs.started_from_dapt(path.parent)})
    return found


def claims(results: Path | None = None, trials: int = 10_000) -> pd.DataFrame:
    """One row per claim: the claim, its verdict at the paper's scale, the laptop-scale analogue, what the record
    measured, the laptop-scale verdict and the chapter that shows it."""
    results = layout.LAYOUT.record if results is None else Path(results)
    finetuned = [m for m in recorded_metrics(results, "finetune", job_settings.load_run_config) if "test" in m]
    # each method's own recipe: no DAPT start, no lever of LoRA (those are their claims' and chapter's)
    plain = [m for m in finetuned if not m["from_dapt"] and m.get("profile") not in levers.LEVERS]
    reported = paths.read_parameters("paper.yaml")
    rows = [_dapt_perplexity(recorded_metrics(results, "dapt"), reported),
            _dapt_ner(results, trials),
            _lora_versus_full(plain),
            _state_of_the_art(results, finetuned, trials),
            _minutes_per_corpus(finetuned, reported),
            _adapter_size(plain, reported),
            _footprint(results)]
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown(results: Path | None = None) -> str:
    """The scorecard as the first page shows it: a short lead and the table, chapters linked."""
    results = layout.LAYOUT.record if results is None else Path(results)
    table = claims(results)
    table["chapter"] = [f"[{name}]({name}.ipynb)" for name in table["chapter"]]
    table = table.rename(columns={"verdict": "verdict at laptop scale"})
    return ("## The paper's claims, checked against the record\n\n"
            "Computed from the recorded runs in `results/` when the book was built. Each claim is judged twice: at "
            "the paper's scale (its large backbones and 350k passages, which cannot be had offline) and at laptop "
            "scale, through a stated analogue on the offline backbone (all-MiniLM-L6-v2, 22M parameters) and "
            "the machines of the record.\n\n" + table.to_markdown(index=False) + "\n")


def _dapt_perplexity(recorded: list[dict], reported: dict) -> list:
    claim = ("DAPT lowers the perplexity of held-out PubMed text (22.5% for DeBERTa-v3, "
             f"{reported['dapt']['perplexity_reduction_percent']['pubmedbert-large']}% for PubMedBERT)")
    paper_scale = (f"{NOT_HERE}: the paper's backbones and its {reported['dapt']['passages']:,} passages are not "
                   "available offline")
    analogue = "DAPT of the offline backbone on the local DAPT text lowers its held-out perplexity"
    if not recorded:
        return [claim, paper_scale, analogue, "no DAPT run in the record",
                "not measured yet (`make dapt`, `make record`)", "dapt"]
    parts, lower, higher = [], True, False
    for m in recorded:
        interval = m.get("perplexity_reduction_interval")
        span = f", 95% interval {interval['low']:.1f}-{interval['high']:.1f}%" if interval else ""
        parts.append(f"{m['perplexity_reduction_percent']:.1f}% lower on {m['backbone']} "
                     f"({m['perplexity_before']:.2f} -> {m['perplexity_after']:.2f}{span})")
        low = interval["low"] if interval else m["perplexity_reduction_percent"]
        high = interval["high"] if interval else m["perplexity_reduction_percent"]
        lower &= low > 0
        higher |= high < 0
    verdict = ("supported (the interval lies above 0)" if lower else
               "contradicted (perplexity rose)" if higher else "not significant (the interval holds 0)")
    return [claim, paper_scale, analogue, "; ".join(parts), verdict, "dapt"]


def _dapt_ner(results: Path, trials: int) -> list:
    claim = "DAPT improves NER (the paper's ablation)"
    paper_scale = f"{NOT_HERE}: it needs the paper's DAPT of its large backbones"
    analogue = ("fine-tuning from the DAPT adapter beats fine-tuning from the plain backbone, seed by seed on "
                f"{' and '.join(ablation.CORPORA)} (full splits), for LoRA and for full fine-tuning")
    try:
        seeds = ablation.by_seed(results, trials=trials)
    except OpenMedError as error:
        return [claim, paper_scale, analogue, f"the ablation's predictions cannot be scored here: {error}",
                "not measured yet", "dapt"]
    if seeds.empty:
        return [claim, paper_scale, analogue, "no DAPT-started fine-tuning run beside a plain one in the record",
                "not measured yet (`make dapt`, `make ablation`, `make record`)", "dapt"]
    parts = [f"{row['corpus']} {row['method']}: {row['DAPT gain']:+.2f} points over {row['seeds']} seed(s) "
             f"(DAPT wins {row['DAPT wins']}, loses {row['DAPT loses']}, ties {row['ties']})"
             for row in ablation.summary(seeds).to_dict("records")]
    wins, losses = int((seeds["winner"] == "with DAPT").sum()), int((seeds["winner"] == "without DAPT").sum())
    verdict = _majority(wins, losses, len(seeds), "pairs")
    return [claim, paper_scale, analogue, "; ".join(parts) + f" (AR p < {comparison.ALPHA} decides a pair)",
            verdict, "dapt"]


def _majority(wins: int, losses: int, tests: int, what: str) -> str:
    """supported when significant wins are more than half the tests, contradicted when losses are, else not
    significant."""
    counted = f"{wins} of {tests} {what} won, {losses} lost significantly"
    if wins > tests / 2:
        return f"supported ({counted})"
    if losses > tests / 2:
        return f"contradicted ({counted})"
    return f"not significant ({counted})"


def _f1s(runs_of: list[dict]) -> list[float]:
    return [100 * m["test"]["strict"]["f1"] for m in runs_of]


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} (1 seed)"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} ({len(values)} seeds)"


def _lora_versus_full(finetuned: list[dict]) -> list:
    claim = "LoRA matches full fine-tuning while training about 1.4% of the parameters"
    paper_scale = f"{NOT_HERE}: both on the paper's large backbones"
    analogue = (f"LoRA (profile cpu) within {LORA_MATCH_POINTS:g} point of full fine-tuning (cpu-fast), means "
                "over seeds, on every corpus with both")
    corpora = sorted({m["dataset"] for m in finetuned if m["method"] == "lora"}
                     & {m["dataset"] for m in finetuned if m["method"] == "full"})
    if not corpora:
        return [claim, paper_scale, analogue, "no corpus with both a LoRA and a full fine-tuning run in the record",
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
    verdict = "supported" if matched else "contradicted"
    return [claim, paper_scale, analogue, "; ".join(parts), verdict, "evaluate"]


def _state_of_the_art(results: Path, finetuned: list[dict], trials: int) -> list:
    claim = "State of the art on 10 of 12 corpora"
    paper_scale = f"{NOT_HERE}: the claim is about the paper's large backbones, which are not available offline"
    analogue = ("the paper's recipe (the offline backbone with or without DAPT, chosen on dev) beats the best prior "
                "architecture trained here on the same splits, the BiLSTM-CNN-Char, on most corpora; an approximate "
                "randomization test per corpus (seed 42 against seed 42)")
    try:
        tested = results_table.against_baseline(results, trials=trials, baseline_profile=BASELINE_PROFILE)
    except OpenMedError as error:
        return [claim, paper_scale, analogue, f"the predictions cannot be scored here: {error}", "not measured yet",
                "results"]
    if tested.empty:
        return [claim, paper_scale, analogue, "no corpus with both a LoRA run and a BiLSTM-CNN-Char run in the record",
                "not measured yet (`make table4`, `make record`)", "results"]
    parts = [f"{row['corpus']} {row['ours']} {row['ours F1']:.1f} vs {row['BiLSTM F1']:.1f} (p {row['p (AR)']:.3f})"
             for row in tested.to_dict("records")]
    wins = int((tested["winner"] == "paper's recipe").sum())
    losses = int((tested["winner"] == "BiLSTM-CNN-Char").sum())
    lora = [m for m in finetuned if m["method"] == "lora" and m.get("profile") == "cpu"]
    verdict = _majority(wins, losses, len(parts), "corpora")
    reported = paper.table4()
    gaps = [100 * m["test"]["strict"]["f1"] - reported[Path(m["dataset"]).name]["f1"] for m in lora
            if m["seed"] == 42 and not m["from_dapt"] and (reported.get(Path(m["dataset"]).name) or {}).get("f1")]
    below = f"; the offline backbone is {-statistics.mean(gaps):.1f} points below the paper's F1 on average" if gaps else ""
    return [claim, paper_scale, analogue, "; ".join(parts) + below + _best_lever(results), verdict, "results"]


def _best_lever(results: Path) -> str:
    """How far the levers (DAPT, full fine-tuning, LoRA's targets and rank) carry the recipe: the corpora where the
    best of them on test draws level with the BiLSTM's mean (an upper bound, since test chooses it)."""
    gaps = gap_to_baseline.table(results)
    if gaps.empty or gaps["system"].nunique() < 2:
        return ""
    return (f"; with every lever measured, the best system on test (an upper bound) is level with or ahead of the "
            f"BiLSTM's mean on {gap_to_baseline.level_or_ahead(gaps)} of {gaps['corpus'].nunique()} corpora")


def _minutes_per_corpus(finetuned: list[dict], reported: dict) -> list:
    low, high = reported["fine_tuning"]["minutes_per_corpus_a100"]
    claim = f"{low}-{high} minutes of fine-tuning a corpus on one A100"
    analogue = "minutes of fine-tuning a corpus with the offline backbone, on each machine of the record"
    gpu = [m for m in finetuned if not str(m.get("device") or "cpu").startswith("cpu")]   # a GPU's name
    paper_scale_runs = [m for m in gpu if m.get("profile") == "paper"]
    if paper_scale_runs:
        minutes = [m["train_seconds"] / 60 for m in paper_scale_runs]
        inside = all(low <= value <= high for value in minutes)
        paper_scale = (f"{'supported' if inside else 'contradicted'}: {min(minutes):.1f}-{max(minutes):.1f} min on "
                       f"{paper_scale_runs[0]['device']} ({len(paper_scale_runs)} runs of the paper's profile)")
    else:
        paper_scale = f"{NOT_HERE}: no run of the paper's profile (its backbones are not available offline) on a GPU"
    per_machine = {}
    for m in finetuned:
        per_machine.setdefault(str(m.get("device") or "cpu"), []).append(m["train_seconds"] / 60)
    if not per_machine:
        return [claim, paper_scale, analogue, "no recorded run", "not measured yet (`make table4`, `make record`)",
                "finetune"]
    measured = "; ".join(f"{min(v):.1f}-{max(v):.1f} min a run (median {statistics.median(v):.1f}) on {device} "
                         f"({len(v)} runs)" for device, v in sorted(per_machine.items()))
    return [claim, paper_scale, analogue, measured, "measured", "finetune"]


def _adapter_size(finetuned: list[dict], reported: dict) -> list:
    low, high = reported["fine_tuning"]["adapter_mb"]
    claim = f"Adapters of {low}-{high} MB"
    analogue = "the saved LoRA adapter and head of the offline backbone, beside its fully fine-tuned model"
    lora = [m for m in finetuned if m["method"] == "lora" and m.get("model_mb") and m.get("profile") == "cpu"]
    if not lora:
        return [claim, f"{NOT_HERE}: no recorded LoRA run to measure the size per parameter", analogue,
                "no recorded LoRA run", "not measured yet (`make reproduce`, `make record`)", "finetune"]
    bytes_per_parameter = statistics.mean(1e6 * m["model_mb"] / m["trainable_parameters"] for m in lora)
    counts = reported["fine_tuning"]["trainable_parameters"]
    predicted = {name: count * bytes_per_parameter / 1e6 for name, count in counts.items()}
    inside = all(low <= size <= high for size in predicted.values())
    paper_scale = (f"{'supported' if inside else 'contradicted'} by the measured size per parameter at the paper's "
                   "counts: " + ", ".join(f"{name} {size:.1f} MB" for name, size in predicted.items()))
    full = [m["model_mb"] for m in finetuned if m["method"] == "full" and m.get("model_mb")]
    beside = f", {100 * lora[0]['model_mb'] / statistics.mean(full):.1f}% of the full model's {statistics.mean(full):.0f} MB" \
        if full else ""
    measured = (f"{lora[0]['model_mb']:.1f} MB for {lora[0]['trainable_parameters']:,} trainable parameters "
                f"({bytes_per_parameter:.2f} bytes each){beside}")
    return [claim, paper_scale, analogue, measured, "measured", "finetune"]


def _footprint(results: Path) -> list:
    constants = footprint.paper_constants()
    claim = (f"A small footprint, by the paper's formula ({constants['gpu_tdp_watts']} W x hours x "
             f"{constants['grid_kg_co2e_per_kwh']} kg CO2e/kWh)")
    paper_scale = f"{NOT_HERE}: the formula is for A100 hours, and none is in the record"
    analogue = "every recorded training's energy and emissions, measured by CodeCarbon on its own machine"
    records = footprint.gather(results)
    if records.empty:
        return [claim, paper_scale, analogue, "no footprint in the record", "not measured yet", "footprint"]
    measured = (f"{len(records)} recorded trainings: {records['hours'].sum():.1f} hours, "
                f"{1000 * records['energy_kwh'].sum():.0f} Wh, {1000 * records['emissions_kg'].sum():.0f} g CO2e")
    return [claim, paper_scale, analogue, measured, "measured", "footprint"]
