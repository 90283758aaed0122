"""One job of the fault-injection suite (tests/test_fault_injection.py) in a fresh process, optionally killed.

    python tests/fault_injection_job.py JOB INPUT OUTPUT [POINT NTH]

JOB is finetune, dapt, baseline, trial or annotate on the smoke profile; INPUT is its corpus (the DAPT text for dapt,
for annotate a text file of documents whose folder holds the finished run `run/`), OUTPUT its run directory (the
entities file for annotate). With POINT and NTH the process
SIGKILLs itself at the NTH call of that kill point (POINTS), as abruptly as a power cut or an OOM kill. Without them
it runs to the end and prints, as its last line, the JSON count of every kill point's calls: the range the suite
draws its seeded kills from.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from openmed_repro.infra import job_settings

# A kill point: the callable whose call the kill lands at, and whether the kill comes before or after its work.
POINTS = {
    "training step": ("transformers:Trainer.training_step", "before"),
    # Trainer writes a checkpoint's weights, optimizer, scheduler and RNG state, then trainer_state.json last.
    "checkpoint write": ("transformers.trainer_callback:TrainerState.save_to_json", "before"),
    "between evaluation and checkpoint": ("transformers:Trainer._evaluate", "after"),
    "baseline step": ("openmed_repro.models.bilstm_crf:Tagger.loss", "before"),
    "baseline evaluation": ("openmed_repro.training.baseline:predict", "before"),
    "final evaluation": ("openmed_repro.models.predictor:predict", "before"),
    "held-out perplexity": ("openmed_repro.training.dapt:perplexity", "before"),
    "annotation": ("openmed_repro.models.predictor:predict_with_scores", "before"),
    # Every file the project writes goes through atomic_files.atomic_path: the temporary is whole, the rename not done.
    "output write": ("os:replace", "before"),
}


def _owner_and_name(target: str):
    module_name, attribute = target.split(":")
    owner = importlib.import_module(module_name)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def wrap(point: str, calls: dict, kill_at: int | None = None) -> None:
    """Count the calls of `point`; with `kill_at`, SIGKILL this process at that call."""
    target, when = POINTS[point]
    owner, name = _owner_and_name(target)
    original = getattr(owner, name)
    calls[point] = 0

    def counted(*args, **kwargs):
        calls[point] += 1
        if calls[point] == kill_at and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls[point] == kill_at and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, counted)


def run(job: str, source: str, output: str) -> None:
    """The job's one command, the same whether it is the first attempt or the one after a kill."""

    if job == "finetune":
        from openmed_repro.training import finetune
        finetune.run(job_settings.load_run_config("smoke", {"dataset": source, "epochs": 3}), output)
    elif job == "dapt":
        from openmed_repro.training import dapt
        dapt.evaluation_sentences = lambda data_dir=None: []   # no local corpus to hold out in a test
        dapt.run(job_settings.load_dapt_config("smoke", {"dapt_dir": source}), output)
    elif job == "baseline":
        from openmed_repro.training import baseline
        baseline.run(job_settings.load_baseline_config("smoke", {"dataset": source, "epochs": 3}), output)
    elif job == "trial":
        from openmed_repro.search import hpo
        space = output + ".space.yaml"
        with open(space, "w", encoding="utf-8") as handle:
            handle.write("space:\n  learning_rate: {low: 1.0e-3, high: 1.0e-1, log: true}\n")
        search = job_settings.load_search_config({"space": space, "n_trials": 2, "heartbeat_interval": 1,
                                            "grace_period": 2})
        hpo.work(job_settings.load_run_config("smoke", {"dataset": source, "epochs": 2}), search, output)
    elif job == "annotate":
        from openmed_repro.annotation import annotate
        annotate.annotate_file(os.path.join(os.path.dirname(source), "run"), source, output, fmt="text",
                               progress=False, chunk_documents=4, batch_size=4)
    else:
        raise SystemExit(f"unknown job {job!r}")


if __name__ == "__main__":
    job, source, output, *kill = sys.argv[1:]
    calls: dict[str, int] = {}
    if kill:
        wrap(kill[0], calls, int(kill[1]))
    else:
        for point in POINTS:
            wrap(point, calls)
    run(job, source, output)
    print(json.dumps(calls))
