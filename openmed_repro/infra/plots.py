"""Every figure the notebooks and the book show."""

from __future__ import annotations

import matplotlib.pyplot as plt


def learning_curve(log_history: list[dict], title: str = ""):
    """Training loss (left axis) and dev strict F1 per epoch (right axis) against epochs."""
    losses = [(e["epoch"], e["loss"]) for e in log_history if "loss" in e and "epoch" in e]
    dev = [(e["epoch"], 100 * e["eval_strict_f1"]) for e in log_history if "eval_strict_f1" in e]
    figure, loss_axis = plt.subplots(figsize=(7, 3.5))
    if losses:
        loss_axis.plot(*zip(*losses), color="tab:blue", label="training loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    f1_axis = loss_axis.twinx()
    if dev:
        f1_axis.plot(*zip(*dev), color="tab:red", marker="o", label="dev strict F1")
    f1_axis.set_ylabel("dev strict F1 (%)", color="tab:red")
    loss_axis.set_title(title or "Learning curve")
    figure.tight_layout()
    return figure


def training_loss(log_history: list[dict], title: str = ""):
    """Training loss against optimizer steps (the DAPT curve)."""
    points = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    figure, axis = plt.subplots(figsize=(7, 3.5))
    if points:
        axis.plot(*zip(*points), color="tab:blue")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("masked-LM training loss")
    axis.set_title(title or "DAPT training loss")
    figure.tight_layout()
    return figure


def perplexity_curve(curve: list[dict], title: str = ""):
    """Held-out perplexity against optimizer steps, from the calibrated head's (step 0) to the adapter's last."""
    figure, axis = plt.subplots(figsize=(7, 3.5))
    steps = [point["step"] for point in curve]
    values = [point["held_out_perplexity"] for point in curve]
    axis.plot(steps, values, color="tab:green", marker="o")
    for step, value in zip(steps[:1] + steps[-1:], values[:1] + values[-1:]):
        axis.annotate(f"{value:.2f}", (step, value), textcoords="offset points", xytext=(0, 6), ha="center")
    axis.set_xlabel("optimizer step of DAPT (0: the calibrated head on the base encoder)")
    axis.set_ylabel("held-out perplexity")
    axis.set_title(title or "Held-out perplexity during DAPT")
    figure.tight_layout()
    return figure


def perplexity_before_after(before: float, after: float, title: str = ""):
    """Held-out perplexity of the (calibrated-head) base model and of the DAPT model, side by side."""
    figure, axis = plt.subplots(figsize=(4.5, 3.5))
    bars = axis.bar(["before DAPT", "after DAPT"], [before, after], color=["tab:gray", "tab:green"])
    axis.bar_label(bars, fmt="%.2f")
    axis.set_ylabel("held-out perplexity")
    axis.set_title(title or f"Perplexity: {100 * (before - after) / before:.1f}% lower")
    figure.tight_layout()
    return figure


def ablation(table, title: str = ""):
    """Test strict F1 per corpus and method, without and with DAPT, as grouped bars (`ablation.table`)."""
    wide = table.set_index(["corpus", "method"])[["without", "with"]]
    figure, axis = plt.subplots(figsize=(7, 3.5))
    positions = range(len(wide))
    for offset, (column, colour) in zip((-0.2, 0.2), (("without", "tab:gray"), ("with", "tab:green"))):
        bars = axis.bar([p + offset for p in positions], wide[column], width=0.4, color=colour,
                        label=f"{column} DAPT")
        axis.bar_label(bars, fmt="%.1f", fontsize=8)
    axis.set_xticks(list(positions), [f"{corpus}\n{method}" for corpus, method in wide.index])
    axis.set_ylabel("test strict F1 (%)")
    axis.set_ylim(0, 1.25 * max(wide.max().max(), 1))   # room above the bars for the legend
    axis.set_title(title or "DAPT ablation")
    axis.legend(loc="upper right", ncols=2)
    figure.tight_layout()
    return figure


def gap_to_baseline(gaps, title: str = ""):
    """Points each system stays behind the BiLSTM-CNN-Char per corpus (`gap_to_baseline.table`): bars left of
    zero are behind it, right of zero ahead; a corpus has a bar for every system run on it."""
    wide = gaps.pivot(index="corpus", columns="system", values="behind BiLSTM")
    wide = wide[[system for system in dict.fromkeys(gaps["system"]) if system in wide.columns]]
    figure, axis = plt.subplots(figsize=(8, 1.6 + 0.55 * len(wide)))
    height = 0.8 / max(len(wide.columns), 1)
    for number, system in enumerate(wide.columns):
        positions = [row + (number - (len(wide.columns) - 1) / 2) * height for row in range(len(wide))]
        axis.barh(positions, -wide[system], height=height, label=system)
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_yticks(list(range(len(wide))), list(wide.index))
    axis.invert_yaxis()
    axis.set_xlabel("test strict F1 minus the BiLSTM-CNN-Char's (points)")
    axis.set_title(title or "Distance to the BiLSTM-CNN-Char, by system")
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=3)
    figure.tight_layout()
    return figure


def paper_vs_reproduced(table, title: str = ""):
    """Test F1 per corpus: the paper's beside ours (`results.table`); corpora not run have no orange bar."""
    figure, axis = plt.subplots(figsize=(9, 3.8))
    positions = range(len(table))
    paper_bars = axis.bar([p - 0.2 for p in positions], table["paper F1"].astype(float), width=0.4,
                          color="tab:gray", label="paper (OpenMed NER)")
    ours = table["reproduced F1"].astype(float)
    our_bars = axis.bar([p + 0.2 for p in positions], ours.fillna(0), width=0.4, color="tab:orange",
                        label="reproduced (this package)")
    axis.bar_label(our_bars, labels=[f"{v:.1f}" if v == v else "not run" for v in ours], fontsize=7, rotation=90,
                   padding=2)
    axis.bar_label(paper_bars, fmt="%.1f", fontsize=7, rotation=90, padding=2)
    axis.set_xticks(list(positions), list(table.index), rotation=30, ha="right")
    axis.set_ylabel("test strict F1 (%)")
    axis.set_ylim(0, 125)
    axis.set_title(title or "Paper vs reproduced, per corpus")
    axis.legend(loc="upper left", ncols=2, fontsize=8)
    figure.tight_layout()
    return figure


def footprint(per_chapter, title: str = ""):
    """Energy per chapter: measured by CodeCarbon beside the paper's TDP formula for the same hours."""
    figure, axis = plt.subplots(figsize=(7, 3.5))
    positions = range(len(per_chapter))
    for offset, column, colour, label in ((-0.2, "energy_kwh", "tab:green", "measured (CodeCarbon)"),
                                          (0.2, "paper_formula_kwh", "tab:gray", "paper's formula (400 W GPU)")):
        bars = axis.bar([p + offset for p in positions], 1000 * per_chapter[column], width=0.4, color=colour, label=label)
        axis.bar_label(bars, fmt="%.2f", fontsize=8)
    axis.set_xticks(list(positions), list(per_chapter.index))
    axis.set_ylabel("energy (Wh)")
    axis.set_title(title or "Energy per chapter")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def f1_intervals(scores, title: str = ""):
    """Each run's test strict F1 with its bootstrap 95% interval (`evaluation.scores`)."""
    figure, axis = plt.subplots(figsize=(7, 0.6 * len(scores) + 1.5))
    positions = list(range(len(scores)))
    errors = [scores["F1"] - scores["F1 95% low"], scores["F1 95% high"] - scores["F1"]]
    axis.errorbar(scores["F1"], positions, xerr=errors, fmt="o", color="tab:blue", capsize=4)
    for position, value in zip(positions, scores["F1"]):
        axis.annotate(f"{value:.1f}", (value, position), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    axis.set_yticks(positions, list(scores.index), fontsize=8)
    axis.set_xlabel("test strict F1 (%) with 95% bootstrap interval")
    axis.set_title(title or "Runs compared")
    figure.tight_layout()
    return figure


def performance(record: dict):
    """The Performance chapter's four panels from benchmarks/performance.py's JSON: dev strict F1 against
    training wall time (time to quality), training tokens/s, inference sentences/s, fraction of matmul peak."""
    figure, ((curve, training, inference, utilisation)) = plt.subplots(1, 4, figsize=(16, 3.8))
    runs = record["training"]
    colours = {"ours": "tab:green", "ours_low_precision": "tab:olive", "standard": "tab:gray"}
    names = {name: name if name == "standard" else f"ours {run['settings'].get('precision', 'fp32')}"
             for name, run in runs.items()}
    for name, run in runs.items():
        points = [(0.0, 0.0)] + [(p["seconds"], 100 * p["dev_strict_f1"]) for p in run["dev_curve"]]
        curve.plot(*zip(*points), marker="o", color=colours[name], label=names[name])
    final = runs["standard"]["final_dev_strict_f1"]
    if final is not None:
        curve.axhline(100 * final, color="tab:gray", linestyle=":", linewidth=1)
        curve.axvline(runs["standard"]["wall_seconds"] / 2, color="tab:red", linestyle=":", linewidth=1,
                      label="half the standard wall time")
        if "ours_low_precision" in runs:
            curve.axvline(0.3 * runs["standard"]["wall_seconds"], color="tab:olive", linestyle=":", linewidth=1,
                          label="0.3 of it (the bf16 target)")
    curve.set_xlabel("training wall time (s, dev evaluations included)")
    curve.set_ylabel("dev strict F1 (%)")
    curve.set_title("Time to quality")
    curve.legend(fontsize=8)
    bars = training.bar([names[n] for n in runs], [r["train_tokens_per_second"] for r in runs.values()],
                        color=[colours[n] for n in runs])
    training.bar_label(bars, labels=[f"{r['train_tokens_per_second']:.0f}\ntest F1 {100 * r['test']['strict_f1']:.1f}"
                                     for r in runs.values()], fontsize=8)
    training.set_ylabel("training tokens / s")
    training.set_ylim(0, 1.3 * max(r["train_tokens_per_second"] for r in runs.values()))
    training.set_title("Training throughput")
    runners = record["inference"]["runners"]
    names = [n.replace(", its default)", ", default").replace(" (batch_size ", "\nbatch ").rstrip(")") for n in runners]
    bars = inference.bar(names, [r["sentences_per_second"] for r in runners.values()],
                         color=["tab:green"] + ["tab:gray"] * (len(runners) - 1))
    inference.bar_label(bars, fmt="%.0f", fontsize=8)
    inference.tick_params(axis="x", labelsize=7)
    inference.set_ylabel("test sentences / s")
    inference.set_title("Inference")
    rows = record["utilisation"]["rows"]
    utilisation.barh([n.replace(" (", "\n(") for n in rows], [100 * r["fraction_of_peak"] for r in rows.values()],
                     color="tab:blue")
    utilisation.tick_params(axis="y", labelsize=7)
    utilisation.set_xlabel("% of measured fp32 matmul peak")
    utilisation.set_title(f"Utilisation (peak {record['utilisation']['matmul_peak_flops'] / 1e9:.0f} GFLOP/s)")
    figure.tight_layout()
    return figure


def dev_f1_by_seed(curves, title: str = ""):
    """Dev strict F1 against epochs, one line per seed (a table of results.dev_f1_by_epoch)."""
    figure, axis = plt.subplots(figsize=(7, 3.5))
    for seed in curves.columns:
        axis.plot(curves.index, curves[seed], marker="o", label=seed)
    axis.set_xlabel("epoch")
    axis.set_ylabel("dev strict F1 (%)")
    axis.legend()
    axis.set_title(title or "Dev strict F1 per seed")
    figure.tight_layout()
    return figure
