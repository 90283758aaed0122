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
