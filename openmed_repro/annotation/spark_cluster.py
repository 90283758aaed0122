"""A standalone Spark cluster on this machine, started from the PySpark installation's own launcher
(bin/spark-class): one master and N workers on 127.0.0.1, each a child process with its own log, so that the
tests and the throughput benchmark annotate through a real `spark://` master (driver, master, workers and
executors apart, as on a cluster of machines) and leave nothing running.

    with spark_cluster.standalone(workers=2) as cluster:
        spark.annotate(run_dir, "in.jsonl", "out", master=cluster.master_url)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from openmed_repro.errors import OpenMedError

HOST = "127.0.0.1"


@dataclass
class Cluster:
    master_url: str
    workers: int
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def log_text(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.glob("*.log")))


def spark_class() -> Path:
    """bin/spark-class of the installed PySpark (which carries Spark's jars)."""
    try:
        import pyspark
    except ImportError as error:
        raise OpenMedError("a standalone Spark cluster needs PySpark: pip install '.[spark]' (and Java 17+)") from error
    launcher = Path(pyspark.__file__).parent / "bin" / "spark-class"
    if not launcher.is_file():
        raise OpenMedError(f"{launcher}: not found in the PySpark installation")
    return launcher


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@contextmanager
def standalone(workers: int = 2, cores_per_worker: int = 1, worker_memory: str = "2g",
               timeout: float = 180.0) -> Iterator[Cluster]:
    """A master and `workers` workers on 127.0.0.1 for the block; the driver of this process binds to
    127.0.0.1 too (SPARK_LOCAL_IP, restored afterwards). Every process is stopped on the way out."""
    launcher = spark_class()
    scratch = Path(tempfile.mkdtemp(prefix="spark-cluster-"))
    port = free_port()
    environment = {**os.environ, "SPARK_HOME": str(launcher.parent.parent), "SPARK_LOCAL_IP": HOST,
                   "SPARK_LOG_DIR": str(scratch), "SPARK_WORKER_DIR": str(scratch / "work"),
                   "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable)}
    cluster = Cluster(f"spark://{HOST}:{port}", workers, scratch)
    previous = os.environ.get("SPARK_LOCAL_IP")
    os.environ["SPARK_LOCAL_IP"] = HOST

    def start(name: str, *arguments: str) -> None:
        log = (scratch / f"{name}.log").open("w")
        cluster.processes.append(subprocess.Popen([str(launcher), *arguments], env=environment, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", HOST, "--port", str(port),
              "--webui-port", str(free_port()))
        _wait(cluster, lambda text: "I have been elected leader" in text, "master", timeout)
        for index in range(workers):
            start(f"worker-{index + 1}", "org.apache.spark.deploy.worker.Worker", "--host", HOST,
                  "--cores", str(cores_per_worker), "--memory", worker_memory, "--webui-port", str(free_port()),
                  "--work-dir", str(scratch / "work"), cluster.master_url)
        _wait(cluster, lambda text: len(re.findall(r"Registering worker", text)) >= workers, "master", timeout)
        yield cluster
    finally:
        for process in reversed(cluster.processes):
            _stop(process)
        if previous is None:
            os.environ.pop("SPARK_LOCAL_IP", None)
        else:
            os.environ["SPARK_LOCAL_IP"] = previous
        shutil.rmtree(scratch, ignore_errors=True)


def _wait(cluster: Cluster, ready, log_name: str, timeout: float) -> None:
    """Until `ready(log text)` holds; an error with the logs if a process exits or time runs out."""
    deadline = time.monotonic() + timeout
    log = cluster.logs / f"{log_name}.log"
    while time.monotonic() < deadline:
        if ready(log.read_text(errors="replace") if log.is_file() else ""):
            return
        if any(process.poll() is not None for process in cluster.processes):
            raise OpenMedError(f"a Spark process of the standalone cluster exited:\n{cluster.log_text()}")
        time.sleep(0.5)
    raise OpenMedError(f"the standalone Spark cluster was not ready after {timeout:.0f} s:\n{cluster.log_text()}")


def _stop(process: subprocess.Popen) -> None:
    """The process and its children (its executors), by its own process group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
