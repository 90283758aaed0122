"""Annotation on a real standalone Spark cluster: a master and two workers started from the PySpark
installation on 127.0.0.1, the job submitted through `--master spark://127.0.0.1:PORT` as on a cluster of
machines. Mandatory where OPENMED_REQUIRE_SPARK is set (CI), else skipped without PySpark or Java."""

import json
import os
import shutil

import pytest

from openmed_repro import cli
from openmed_repro.annotation import annotate
from openmed_repro.infra import job_settings
from openmed_repro.training import finetune

ABSTRACT = ("Many patients with lung cancer were treated in the study. Asthma and diabetes, e.g. in "
            "cells of patients with breast cancer, were often treated with aspirin!")


def require_spark() -> None:
    try:
        import pyspark  # noqa: F401
        missing = shutil.which("java") is None
    except ImportError:
        missing = True
    if missing:
        if os.environ.get("OPENMED_REQUIRE_SPARK"):
            pytest.fail("PySpark or Java missing: pip install '.[spark]' and a JRE (CI installs both)")
        pytest.skip("PySpark or Java missing (pip install '.[spark]'; CI installs both)")


@pytest.fixture(scope="module")
def cluster():
    """A standalone master and two one-core workers, stopped (with their executors) after the module."""
    require_spark()
    from openmed_repro.annotation import spark_cluster

    with spark_cluster.standalone(workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def run_dir(synthetic_corpus, tmp_path_factory):
    directory = tmp_path_factory.mktemp("cluster") / "run"
    finetune.run(job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "epochs": 4}), directory)
    return directory


def test_annotating_through_a_standalone_master_writes_exactly_the_in_process_output(cluster, run_dir, tmp_path,
                                                                                     capsys):
    from pyspark.sql import SparkSession

    lines = [json.dumps({"id": f"doc{i}", "text": f"{ABSTRACT} Case {i}: colon tumor in patients."}) for i in range(16)]
    lines.insert(3, "{broken")
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    annotate.annotate_file(run_dir, source, tmp_path / "local.jsonl", progress=False)
    try:
        assert cli.main(["annotate", "--spark", "--master", cluster.master_url, "--partitions", "4",
                         "--chunk-documents", "3", "--run", str(run_dir), str(source), str(tmp_path / "cluster")]) == 0
        assert SparkSession.getActiveSession().sparkContext.master == cluster.master_url
    finally:
        SparkSession.getActiveSession().stop()
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["documents"] == 16 and summary["skipped_lines"] == [4] and summary["entities"] > 0
    parts = "".join(p.read_text() for p in sorted((tmp_path / "cluster").glob("part-*")))
    assert parts == (tmp_path / "local.jsonl").read_text()
    assert all("Asked to launch executor" in (cluster.logs / f"worker-{i}.log").read_text() for i in (1, 2))
