"""Where a command's runs execute: one after another in this process, or as Ray tasks spread over a cluster
(`--ray [ADDRESS]`, the optional extra `pip install '.[ray]'`).

Each run is one task with its resources: CPU threads (torch's and OpenMP's thread count in the worker) and a share
of a GPU, so that several small runs share one. The driver (the command) hands each finished run to `on_finish`
as it arrives, which records it. A task whose worker dies (a killed process, a lost node) is retried by Ray on
another worker: the run directory lies on storage every node sees, so the retry resumes from the run's last
complete checkpoint instead of starting over. Ray workers run the same code and write the same files as a serial
run; the records are the same."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import run_provenance

LOCAL = "local"          # --ray without an address: a Ray instance on this machine, for this command alone
RETRIES = 3              # a task whose worker dies runs again, on another worker, up to this many times
GPU_SHARE = 0.25         # on a cluster with GPUs, each run takes a quarter of one unless told otherwise


@dataclass(frozen=True)
class Job:
    """One run: `function(*args)`, named for messages (its run directory, say)."""

    name: str
    function: Callable[..., Any]
    args: tuple = ()


@dataclass(frozen=True)
class Placement:
    """Where the jobs run: `address` None runs them here, one after another; else the Ray cluster to join (LOCAL
    starts one on this machine, "auto" joins the one `ray start` runs here). Each run gets `threads` CPU threads
    and `gpu` of a GPU (None: GPU_SHARE where the cluster has GPUs, else none)."""

    address: str | None = None
    threads: int = 1
    gpu: float | None = None

    def __post_init__(self):
        if self.threads < 1:
            raise OpenMedError(f"--ray-threads {self.threads}: a run needs at least one thread")
        if self.gpu is not None and not 0 <= self.gpu <= 1:
            raise OpenMedError(f"--ray-gpu {self.gpu}: the share of one GPU a run takes, between 0 and 1")


SERIAL = Placement()


def run_each(jobs: Sequence[Job], placement: Placement = SERIAL,
             on_finish: Callable[[Job, Any], None] | None = None) -> list:
    """Every job's result, in the jobs' order; `on_finish(job, result)` runs in this process as each finishes. On
    Ray, a job that fails does not stop the others: each finished one is handed over, then the first failure is
    raised (an OpenMedError as its own one line)."""
    if placement.address is None:
        results = []
        for job in jobs:
            results.append(job.function(*job.args))
            if on_finish:
                on_finish(job, results[-1])
        return results
    return _on_ray(list(jobs), placement, on_finish)


def _in_worker(function: Callable, args: tuple, threads: int, directory: str):
    """A job inside a Ray worker: in the driver's working directory where this node has it (relative paths, the
    corpora's among them, mean the same), torch on the run's threads, then the job itself."""
    if os.path.isdir(directory):
        os.chdir(directory)
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass
    return function(*args)


def connect(address: str):
    """The ray module, connected to the cluster at `address` (LOCAL: a new instance on this machine)."""
    try:
        import ray
    except ImportError as error:
        raise OpenMedError("--ray needs Ray on this machine: pip install '.[ray]'") from error
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == LOCAL else address, include_dashboard=False, log_to_driver=True,
                     configure_logging=False)
        except ConnectionError as error:
            raise OpenMedError(f"--ray {address}: no Ray cluster answers there ({error}); start one with "
                               "`ray start --head` or give its address") from error
    return ray


def worker_environment(threads: int) -> dict[str, str]:
    """The variables a worker runs a job with: its thread count, and the command and commit the driver runs (a
    worker's own argv is Ray's, and a node may hold a copy of the tree without git)."""
    environment = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = run_provenance.command()
    if command:
        environment[run_provenance.COMMAND_ENV] = command
    commit = os.environ.get(run_provenance.COMMIT_ENV) or run_provenance.code_state().get("commit")
    if commit:
        environment[run_provenance.COMMIT_ENV] = commit
    return environment


def _on_ray(jobs: list[Job], placement: Placement, on_finish) -> list:
    ray = connect(placement.address)
    gpu = placement.gpu
    if gpu is None:
        gpu = GPU_SHARE if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    task = ray.remote(_in_worker).options(
        num_cpus=placement.threads, num_gpus=gpu, max_retries=RETRIES, retry_exceptions=False,
        runtime_env={"env_vars": worker_environment(placement.threads)})
    pending = {task.remote(job.function, job.args, placement.threads, os.getcwd()): index for index, job in enumerate(jobs)}
    results: list = [None] * len(jobs)
    failures = []
    started = time.perf_counter()
    while pending:
        finished, _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(finished[0])
        try:
            results[index] = ray.get(finished[0])
        except ray.exceptions.RayTaskError as error:
            failures.append(_failure(jobs[index], error.cause if error.cause is not None else error))
            continue
        except ray.exceptions.RayError as error:   # the worker died RETRIES + 1 times, or its node left
            failures.append(OpenMedError(f"{jobs[index].name}: its Ray worker died {RETRIES + 1} times "
                                         f"({type(error).__name__}); run the same command again to resume it"))
            continue
        print(f"ray: {jobs[index].name} finished ({len(jobs) - len(pending)} of {len(jobs)}, "
              f"{time.perf_counter() - started:.0f} s)", flush=True)
        if on_finish:
            on_finish(jobs[index], results[index])
    if failures:
        raise failures[0]
    return results


def _failure(job: Job, cause: BaseException) -> BaseException:
    if isinstance(cause, OpenMedError):
        return OpenMedError(str(cause))
    return OpenMedError(f"{job.name}: failed on its Ray worker: {type(cause).__name__}: {cause}")
