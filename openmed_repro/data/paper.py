"""The paper's reported figures (parameters/paper.yaml) beside ours."""

from __future__ import annotations

import pandas as pd

from openmed_repro.infra import paths


def table4() -> dict:
    return paths.read_parameters("paper.yaml")["table4"]


def search_finding(dataset: str) -> str:
    """What the paper's search found for this corpus's kind of entities (batch size), in words."""
    preferred = paths.read_parameters("paper.yaml")["hpo"]["preferred_batch_size"].get(dataset)
    if preferred is None:
        return f"The paper reports no batch-size finding for {dataset}."
    kind = "gene/protein" if preferred == 16 else "chemical and disease"
    return f"The paper's searches favoured batch {preferred} on {kind} corpora such as {dataset}."


def comparison(metrics: dict) -> pd.DataFrame:
    """Our test strict P/R/F1 for one corpus beside the paper's F1 and its best prior system."""
    reported = table4().get(metrics["dataset"], {})
    prior = reported.get("best_prior") or {}
    test = metrics["test"]
    rows = [
        {"system": f"reproduced: {metrics['backbone']} ({metrics['method']}, profile {metrics['profile']})",
         "precision": 100 * test["strict"]["precision"], "recall": 100 * test["strict"]["recall"],
         "F1 (strict)": 100 * test["strict"]["f1"], "F1 (seqeval default)": 100 * test["default"]["f1"]},
        {"system": "paper: OpenMed NER (best backbone)", "F1 (strict)": reported.get("f1")},
        {"system": f"paper's best prior: {prior.get('system', 'none')}", "F1 (strict)": prior.get("f1")},
    ]
    return pd.DataFrame(rows).set_index("system").round(2)


def per_type_table(metrics: dict, split: str = "test") -> pd.DataFrame:
    """Strict precision, recall, F1 and support per entity type."""
    per_type = metrics[split]["per_type"]
    frame = pd.DataFrame(per_type).T[["precision", "recall", "f1", "support"]]
    frame[["precision", "recall", "f1"]] *= 100
    return frame.astype({"support": int}).round(2)
