"""Runs spread over a Ray cluster: a head and two worker nodes on 127.0.0.1 (ray.cluster_utils.Cluster, each node its
own raylet and processes, as `ray start --head` and two `ray start --address` would give). The sweep over it makes
the same records as a serial sweep; a run whose worker is killed resumes from its checkpoint on another worker and
ends as if never killed; a search's workers started by Ray share one study. Mandatory where OPENMED_REQUIRE_RAY is set
(CI), else skipped without Ray."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import pytest

from openmed_repro import cli
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, cluster, job_settings, layout, runs
from openmed_repro.search import hpo
from openmed_repro.training import finetune

if not os.environ.get("OPENMED_REQUIRE_RAY"):
    pytest.importorskip("ray", reason="needs Ray (pip install '.[ray]'); .ci/run installs it")
import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import fault_injection_job  # noqa: E402
import optuna  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the killed job below runs on the workers
ray.cloudpickle.register_pickle_by_value(fault_injection_job)


@pytest.fixture(scope="module")
def ray_cluster():
    """A head that runs no task and two worker nodes of one CPU each. Ray starts its workers at niceness 15, which
    on a machine busy with other jobs starves them (a 3-second run took minutes): these run at the tests' own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_worker_niceness", "0")
        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        for _ in range(2):
            nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
        yield nodes
        ray.shutdown()
        nodes.shutdown()


def sweep(corpus: Path, *more: str) -> list[str]:
    return ["sweep", "--profile", "smoke", "--corpora", str(corpus), "--epochs", "1", "--seeds", "42", "1",
            "--out", "runs/sweep", "--record", "--allow-dirty", *more]


def record_contents(results: Path) -> dict[str, dict]:
    """What a record says, run by run: configuration, metrics (but the seconds and the sha256 of files the record
    does not keep) and predicted tags."""
    contents = {}
    for run_dir in sorted((results / "finetune").iterdir()):
        metrics = atomic_files.read_json(run_dir / runs.METRICS)
        contents[run_dir.name] = {
            "config": atomic_files.read_json(run_dir / runs.CONFIG),
            "test": metrics["test"], "devel": metrics["devel"], "epochs": metrics["epochs_run"],
            "predictions": json.loads(gzip.decompress((run_dir / "predictions.json.gz").read_bytes())),
        }
    return contents


def test_a_sweep_over_a_ray_cluster_makes_the_records_of_a_serial_sweep(ray_cluster, synthetic_corpus, tmp_path,
                                                                        monkeypatch, capsys):
    serial, spread = tmp_path / "serial", tmp_path / "ray"
    for place, more in ((serial, ()), (spread, ("--ray", ray_cluster.address))):
        place.mkdir()
        monkeypatch.chdir(place)
        monkeypatch.setenv(layout.RECORD_DIR_ENV, str(place / "results"))
        assert cli.main(sweep(synthetic_corpus, *more)) == 0
    assert "ray: " in capsys.readouterr().out, "the driver says each run as it finishes"
    assert record_contents(spread / "results") == record_contents(serial / "results")
    assert len(record_contents(spread / "results")) == 2


def killed_in_its_second_epoch(marker: str, run_config: job_settings.RunConfig, run_dir: Path):
    """Fine-tuning whose first attempt SIGKILLs its own worker at a training step of the second epoch (the first
    epoch's checkpoint complete: 6 steps an epoch); the attempt Ray retries runs to the end."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        fault_injection_job.wrap("training step", {}, kill_at=9)
    return finetune.run(run_config, run_dir)


def test_a_run_whose_ray_worker_is_killed_resumes_from_its_checkpoint_and_ends_as_if_never_killed(
        ray_cluster, synthetic_corpus, tmp_path):
    run_config = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "epochs": 2})
    whole = finetune.run(run_config, tmp_path / "whole")
    marker = tmp_path / "killed-once"
    [resumed] = cluster.run_each([cluster.Job("killed", killed_in_its_second_epoch,
                                              (str(marker), run_config, tmp_path / "resumed"))],
                                 cluster.Placement(ray_cluster.address))
    assert marker.exists(), "the first attempt never ran"
    assert resumed.metrics["test"] == whole.metrics["test"]
    assert resumed.metrics[runs.FILES_SHA256] == whole.metrics[runs.FILES_SHA256]
    for name in ("predictions_devel.tsv", "predictions_test.tsv"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert resumed.metrics["train_attempts"] == 2, "the retry resumed the killed attempt's run"


def test_search_workers_started_by_ray_share_one_study(ray_cluster, synthetic_corpus, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  learning_rate: {low: 1.0e-3, high: 1.0e-1, log: true}\n", encoding="utf-8")
    out = tmp_path / "search"
    assert cli.main(["search", "--dataset", str(synthetic_corpus), "--profile", "smoke", "--out", str(out),
                     "--set", "epochs=1", "--space", str(space), "--n-trials", "3", "--ray", ray_cluster.address,
                     "--ray-workers", "2"]) == 0
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'study.db'}")
    finished = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) >= 3 and (out / "best.yaml").is_file()
    joined = {key.removeprefix(hpo.WORKER_JOINED) for key in study.user_attrs if key.startswith(hpo.WORKER_JOINED)}
    assert len(joined) == 2, joined   # who ran which trial is the scheduler's: a free worker takes the next one
    assert {t.user_attrs.get("worker") for t in study.get_trials()} <= joined


def test_a_failed_run_on_ray_reaches_the_terminal_as_its_one_line(ray_cluster, tmp_path):
    def refused():
        raise OpenMedError(f"{tmp_path}: refused for a reason")
    with pytest.raises(OpenMedError) as failure:
        cluster.run_each([cluster.Job("refused", refused)], cluster.Placement(ray_cluster.address))
    assert str(failure.value) == f"{tmp_path}: refused for a reason"


def test_a_task_asks_for_at_least_one_thread_and_at_most_one_gpu():
    with pytest.raises(OpenMedError, match="--ray-threads 0"):
        cluster.Placement("local", threads=0)
    with pytest.raises(OpenMedError, match="--ray-gpu 2"):
        cluster.Placement("local", gpu=2)
