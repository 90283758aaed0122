"""Fault injection, fine-tuning and the search's trials: each job killed at seeded points, then run again with the
same command, ends with the results of an uninterrupted run; a damaged file of a finished run, or of the run that
annotation reads, is refused in one line naming it, never read as a success (cases and helpers: fault_cases.py)."""

from __future__ import annotations

import pytest

from fault_cases import case_id, cases, damaged_copies, damaged_runs_refused, killed_and_run_again, refusal
from fault_cases import inputs, uninterrupted  # noqa: F401 (the module-scoped fixtures)
from openmed_repro.annotation import annotate

JOBS = ("finetune", "trial")


@pytest.mark.parametrize("job,point", cases(JOBS), ids=map(case_id, cases(JOBS)))
def test_a_job_killed_at_a_seeded_point_and_run_again_ends_as_if_never_killed(job, point, inputs, uninterrupted,
                                                                               tmp_path):
    killed_and_run_again(job, point, inputs, uninterrupted, tmp_path)


def test_a_finished_run_with_a_damaged_file_is_refused_in_one_line_naming_it(inputs, uninterrupted, tmp_path):
    damaged_runs_refused("finetune", inputs, uninterrupted, tmp_path)


def test_annotation_from_a_run_with_a_damaged_file_is_refused_in_one_line_naming_it(inputs, uninterrupted,
                                                                                     tmp_path):
    reference, _ = uninterrupted["finetune"]
    for name, copy in damaged_copies(reference, tmp_path):
        output = copy.parent / "entities.jsonl"
        message = refusal(lambda: annotate.annotate_file(copy, inputs["annotate"], output, fmt="text",
                                                         progress=False))
        assert f"{copy / name}:" in message, (name, message)
        assert not output.exists(), name
        print(f"annotate {name}: {message.replace(str(copy), '<run>')}")
