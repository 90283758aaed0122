"""Energy and emissions of training calls: CodeCarbon offline, the paper's formula beside it, records that
survive interruptions, and totals per chapter."""

import json

import pytest

from openmed_repro.infra import footprint

PAPER_KG_PER_KWH = 0.242
PAPER_TDP_KW = 0.4


def busy(seconds: float) -> None:
    import time
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(10_000))


def test_a_tracked_block_records_energy_emissions_duration_hardware_and_the_papers_formula(tmp_path):
    with footprint.track(tmp_path, "finetune", "ncbi_disease"):
        busy(1.0)
    [record] = footprint.read(tmp_path)
    assert record["chapter"] == "finetune" and record["subject"] == "ncbi_disease" and record["outcome"] == "finished"
    assert record["duration_s"] >= 1.0
    assert record["energy_kwh"] > 0
    assert record["grid_g_co2e_per_kwh"] == pytest.approx(1000 * PAPER_KG_PER_KWH)
    assert record["emissions_kg"] == pytest.approx(record["energy_kwh"] * PAPER_KG_PER_KWH, rel=1e-6)
    assert record["hardware"]["cpu_count"] >= 1 and record["hardware"]["ram_gb"] > 0
    hours = record["duration_s"] / 3600
    assert record["paper_formula"]["energy_kwh"] == pytest.approx(PAPER_TDP_KW * hours)
    assert record["paper_formula"]["emissions_kg"] == pytest.approx(PAPER_TDP_KW * hours * PAPER_KG_PER_KWH)
    assert (tmp_path / "emissions.csv").is_file()


def test_work_that_fails_midway_still_records_the_energy_it_spent_and_a_resumed_run_adds_a_record(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with footprint.track(tmp_path, "finetune", "s800"):
            busy(0.2)
            raise KeyboardInterrupt
    with footprint.track(tmp_path, "finetune", "s800"):
        busy(0.2)
    assert [r["outcome"] for r in footprint.read(tmp_path)] == ["stopped: KeyboardInterrupt", "finished"]


def test_an_attempt_killed_outright_leaves_its_record_as_of_its_last_update(tmp_path):
    """What a SIGKILL leaves is the file as it is inside the block: the record of the last update (training
    updates at every checkpoint), which the next attempt keeps beside its own."""
    with footprint.track(tmp_path, "finetune", "s800") as attempt:
        [started] = footprint.read(tmp_path)
        busy(0.5)
        attempt.update()
        [updated] = footprint.read(tmp_path)
        busy(0.2)
    assert started["outcome"] == updated["outcome"] == "unfinished"
    assert started["duration_s"] < 0.5 <= updated["duration_s"] and updated["energy_kwh"] > started["energy_kwh"]
    [finished] = footprint.read(tmp_path)
    assert finished["outcome"] == "finished" and finished["duration_s"] >= 0.7
    (tmp_path / footprint.RECORD).write_text(json.dumps({"records": [updated]}))   # as the kill left it
    with footprint.track(tmp_path, "finetune", "s800"):
        busy(0.2)
    assert [r["outcome"] for r in footprint.read(tmp_path)] == ["unfinished", "finished"]


def test_a_named_country_uses_codecarbons_own_grid_intensity_instead_of_the_papers(tmp_path):
    with footprint.track(tmp_path, "dapt", "minilm-l6", country="FRA"):
        busy(0.5)
    [record] = footprint.read(tmp_path)
    assert record["country"] == "FRA"
    assert record["grid_g_co2e_per_kwh"] != pytest.approx(1000 * PAPER_KG_PER_KWH, rel=1e-3)


def test_totals_sum_every_record_under_the_runs_directory_per_chapter(tmp_path):
    for directory, chapter in [("a", "finetune"), ("b", "finetune"), ("c/footprint/trial-0001", "search trial")]:
        with footprint.track(tmp_path / directory, chapter, "ncbi_disease"):
            busy(0.2)
    records = footprint.gather(tmp_path)
    per_chapter = footprint.totals(records, "chapter")
    assert per_chapter.loc["finetune", "runs"] == 2 and per_chapter.loc["search trial", "runs"] == 1
    assert per_chapter["energy_kwh"].sum() == pytest.approx(records["energy_kwh"].sum())


def test_the_papers_claims_go_through_its_own_formula():
    claims = footprint.paper_claims()
    sweep = claims.loc["full search sweep (~12,000 A100-hours)"]
    assert sweep["emissions_kg"] == pytest.approx(12_000 * PAPER_TDP_KW * PAPER_KG_PER_KWH)
