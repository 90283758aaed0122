"""Fault injection's cases and helpers, shared by the two test modules that split the jobs between them (so that
`pytest -n 2 --dist loadfile` runs them side by side): every job killed at seeded points, then run again with the
same command, ends with the results of an uninterrupted run.

Each job runs once uninterrupted in a fresh process (tests/fault_injection_job.py), which counts the calls of every
kill point. A kill lands at a call drawn from that count by a generator seeded with the job's and the point's names,
in a fresh process that SIGKILLs itself there; the same command then runs again (in this process) and its results
are compared with the uninterrupted run's.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import fault_injection_job as job_runner
from conftest import write_dapt_text
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, layout, runs
from openmed_repro.search import hpo

JOB_SCRIPT = Path(job_runner.__file__)
KILL_POINTS = {
    "finetune": ["training step", "checkpoint write", "between evaluation and checkpoint", "final evaluation",
                 "output write"],
    "dapt": ["training step", "checkpoint write", "held-out perplexity", "output write"],
    "baseline": ["baseline step", "baseline evaluation", "output write"],
    "trial": ["training step", "checkpoint write", "between evaluation and checkpoint"],
    "annotate": ["annotation", "output write"],
}


def cases(jobs: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(job, point) for job in jobs for point in KILL_POINTS[job]]


def case_id(case: tuple[str, str]) -> str:
    return f"{case[0]}-{case[1].replace(' ', '-')}"


def in_fresh_process(job: str, source: Path, output: Path, *kill) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(JOB_SCRIPT), job, str(source), str(output), *map(str, kill)],
                          capture_output=True, text=True, timeout=600, cwd=JOB_SCRIPT.parent)


@pytest.fixture(scope="module")
def inputs(synthetic_corpus, tmp_path_factory, request):
    """Each job's input: the synthetic corpus, the DAPT text, and documents beside a finished run to annotate."""
    root = tmp_path_factory.mktemp("fault-inputs")
    (root / "dapt").mkdir()
    dapt_text = write_dapt_text(root / "dapt")
    documents = root / "annotate" / "documents.txt"
    documents.parent.mkdir()
    words = [line.split("\t")[0] for line in (synthetic_corpus / "test.tsv").read_text().splitlines() if line]
    documents.write_text("\n".join(" ".join(words[i:i + 40]) for i in range(0, 600, 40)) + "\n", encoding="utf-8")
    if "annotate" in request.module.JOBS:   # annotation reads a finished fine-tuning run
        job_runner.run("finetune", str(synthetic_corpus), str(documents.parent / "run"))
    return {"finetune": synthetic_corpus, "baseline": synthetic_corpus, "trial": synthetic_corpus,
            "dapt": dapt_text, "annotate": documents}


@pytest.fixture(scope="module")
def uninterrupted(inputs, tmp_path_factory, request):
    """Each of the module's jobs (its JOBS) run to its end in a fresh process: its output and how often it passed
    every kill point."""
    root = tmp_path_factory.mktemp("uninterrupted")
    done = {}
    for job in request.module.JOBS:
        output = root / (f"{job}.jsonl" if job == "annotate" else job)
        finished = in_fresh_process(job, inputs[job], output)
        assert finished.returncode == 0, finished.stderr[-3000:]
        done[job] = (output, json.loads(finished.stdout.strip().splitlines()[-1]))
    return done


def kill_call(job: str, point: str, calls: int) -> int:
    """The call the kill lands at: seeded by the job's and the point's names, so a failure reruns the same."""
    return random.Random(f"{job}/{point}").randint(1, calls)


def finished(job: str, output: Path) -> bool:
    if job == "annotate":
        return output.exists()
    if job == "trial":
        return (output / layout.LAYOUT.best_parameters).exists()
    return runs.is_complete(output)


def assert_same_results(job: str, output: Path, reference: Path) -> None:
    """The results a reader uses: scores, saved weights and predictions (byte for byte), the search's trials, the
    entities; and no temporary file left behind."""
    if job == "annotate":
        assert output.read_bytes() == reference.read_bytes()
        assert not [p.name for p in output.parent.iterdir() if p.name.endswith(".tmp")]
        return
    if job == "trial":
        assert trials(output) == trials(reference)
        return
    resumed, whole = atomic_files.read_json(output / runs.METRICS), atomic_files.read_json(reference / runs.METRICS)
    if job == "dapt":
        for key in ("perplexity_before", "perplexity_after", "perplexity_curve", "held_out", runs.FILES_SHA256):
            assert resumed.get(key) == whole.get(key), key
    else:
        for key in ("devel", "test", runs.FILES_SHA256):
            assert resumed.get(key) == whole.get(key), key
        for split in ("devel", "test"):
            name = f"predictions_{split}.tsv"
            assert (output / name).read_bytes() == (reference / name).read_bytes(), name
    assert sorted(files(output)) == sorted(files(reference))


def files(run_dir: Path) -> list[str]:
    return [str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()]


def trials(search_dir: Path) -> list[tuple]:
    """The finished trials' parameters and dev F1, in the order of their parameters (a killed trial is retried
    after the others)."""
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{search_dir / 'study.db'}")
    return sorted((tuple(sorted(t.params.items())), t.value) for t in study.get_trials() if t.state in hpo.FINISHED)


def damaged_copies(run_dir: Path, tmp_path: Path):
    """A copy of a finished run for each damage: every saved model file cut to half its length, every JSON file of
    the run made invalid. Yields (the damaged file's path in the run, the copy)."""
    saved = sorted(atomic_files.read_json(run_dir / runs.METRICS)[runs.FILES_SHA256])
    documents = sorted(p.name for p in run_dir.glob("*.json"))
    for index, name in enumerate(saved + documents):
        copy = tmp_path / f"damage-{index}" / run_dir.name
        shutil.copytree(run_dir, copy)
        path = copy / name
        if name in saved:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        else:
            path.write_text('{"cut": ', encoding="utf-8")
        yield name, copy


def refusal(action) -> str:
    """The one-line message `action` fails with; a success or a traceback from elsewhere fails the test."""
    with pytest.raises(OpenMedError) as refused:
        action()
    message = str(refused.value)
    assert "\n" not in message, message
    return message


def killed_and_run_again(job: str, point: str, inputs: dict, uninterrupted: dict, tmp_path: Path) -> None:
    """Kill the job at its seeded call of `point`, run the same command again, compare with the uninterrupted run."""
    reference, calls = uninterrupted[job]
    assert calls[point] > 0, f"{job} never reaches the kill point {point!r}"
    output = tmp_path / reference.name
    nth = kill_call(job, point, calls[point])
    killed = in_fresh_process(job, inputs[job], output, point, nth)
    assert killed.returncode == -signal.SIGKILL, f"not killed at call {nth} of {point}: {killed.stderr[-3000:]}"
    assert not finished(job, output), "a killed job left output that reads as finished"

    job_runner.run(job, str(inputs[job]), str(output))   # the same command, again
    assert_same_results(job, output, reference)


def damaged_runs_refused(job: str, inputs: dict, uninterrupted: dict, tmp_path: Path) -> None:
    """Rerun the job's command on a copy of its finished run for each damaged file: refused in one line naming it."""
    reference, _ = uninterrupted[job]
    damaged = list(damaged_copies(reference, tmp_path))
    assert len(damaged) >= 5, [name for name, _ in damaged]
    for name, copy in damaged:
        message = refusal(lambda: job_runner.run(job, str(inputs[job]), str(copy)))   # the same command, again
        assert f"{copy / name}:" in message, (name, message)
        print(f"{job} {name}: {message.replace(str(copy), '<run>')}")   # shown with -s: the closing note's table
