"""Fault injection, DAPT, the BiLSTM-CNN-Char and annotation: each job killed at seeded points, then run again with
the same command, ends with the results of an uninterrupted run; a damaged file of a finished run is refused in one
line naming it, never read as a success (cases and helpers: fault_cases.py)."""

from __future__ import annotations

import pytest

from fault_cases import case_id, cases, damaged_runs_refused, killed_and_run_again
from fault_cases import inputs, uninterrupted  # noqa: F401 (the module-scoped fixtures)

JOBS = ("dapt", "baseline", "annotate")


@pytest.mark.parametrize("job,point", cases(JOBS), ids=map(case_id, cases(JOBS)))
def test_a_job_killed_at_a_seeded_point_and_run_again_ends_as_if_never_killed(job, point, inputs, uninterrupted,
                                                                               tmp_path):
    killed_and_run_again(job, point, inputs, uninterrupted, tmp_path)


@pytest.mark.parametrize("job", ["dapt", "baseline"])
def test_a_finished_run_with_a_damaged_file_is_refused_in_one_line_naming_it(job, inputs, uninterrupted, tmp_path):
    damaged_runs_refused(job, inputs, uninterrupted, tmp_path)
