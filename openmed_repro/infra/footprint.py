"""Energy and emissions of every training call: CodeCarbon's offline tracker (no network) measures it, and
the paper's own formula (GPU TDP x hours x grid intensity) is written beside it for the same duration, so
the two can be compared run by run. Records accumulate in `footprint.json` of the run directory, one per
attempt (a resumed run adds a record; one killed outright keeps the record of its last update, so every attempt
counts), with CodeCarbon's `emissions.csv` next to it."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from openmed_repro.infra import atomic_files, layout, paths

RECORD = "footprint.json"
DEFAULT_COUNTRY = "DEU"   # only names the place; the intensity below is forced to the paper's EU average


def paper_constants() -> dict:
    """The paper's formula: GPU TDP (W) and grid intensity (kg CO2e/kWh)."""
    return paths.read_parameters("paper.yaml")["footprint"]


def paper_formula(seconds: float) -> dict:
    """What the paper's formula gives for `seconds` of training on one GPU at its TDP."""
    constants = paper_constants()
    kwh = constants["gpu_tdp_watts"] / 1000 * seconds / 3600
    return {"gpu_tdp_watts": constants["gpu_tdp_watts"], "energy_kwh": kwh,
            "emissions_kg": kwh * constants["grid_kg_co2e_per_kwh"]}


class Attempt:
    """One attempt's record in footprint.json, written when the work starts and rewritten in place by each
    update: what stays of an attempt killed outright (SIGKILL, a power cut) is its last update, outcome
    "unfinished"."""

    def __init__(self, directory: Path, tracker, chapter: str, subject: str, intensity: float | None):
        self.path, self.tracker, self.intensity = directory / RECORD, tracker, intensity
        self.chapter, self.subject = chapter, subject
        self.index = len(read(directory))
        self.started = datetime.now(timezone.utc)
        self.clock = time.perf_counter()

    def update(self) -> None:
        """The record as measured so far (training calls it at every checkpoint)."""
        self.write(_measured_so_far(self.tracker), "unfinished")

    def write(self, data, outcome: str) -> None:
        record = _record(data, self.chapter, self.subject, self.started, time.perf_counter() - self.clock, outcome,
                         self.intensity)
        records = read(self.path.parent)
        records[self.index:self.index + 1] = [record]
        atomic_files.write_json(self.path, {"records": records})


def _measured_so_far(tracker):
    """A running tracker's reading. CodeCarbon (pinned) has no public one: flush() would also add a row to
    emissions.csv. A failed reading leaves the update at zero energy, never stops the training."""
    try:
        tracker._measure_power_and_energy_if_stale()
        return tracker._prepare_emissions_data()
    except Exception:   # noqa: BLE001 - a measurement must never break the work it measures
        return None


@contextlib.contextmanager
def track(directory: str | Path, chapter: str, subject: str, country: str | None = None) -> Iterator[Attempt]:
    """Measure the enclosed work into `directory`. `country` None: the paper's EU average intensity
    (242 g CO2e/kWh); an ISO 3166-1 alpha-3 code: CodeCarbon's own figure for that country. The record is
    written when the work starts, at each `update()` of the Attempt handed out, and when the work ends, also
    when it fails or is interrupted, so no measured energy is lost."""
    from codecarbon import OfflineEmissionsTracker   # slow to import; only training needs it

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    intensity = None if country else 1000 * paper_constants()["grid_kg_co2e_per_kwh"]
    options = {"force_carbon_intensity_g_co2e_kwh": intensity} if intensity is not None else {}
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    tracker = OfflineEmissionsTracker(
        country_iso_code=country or DEFAULT_COUNTRY, output_dir=str(directory), project_name=f"{chapter}:{subject}",
        log_level="error", allow_multiple_runs=True, tracking_mode="process", measure_power_secs=15, **options)
    tracker.start()
    attempt = Attempt(directory, tracker, chapter, subject, intensity)
    attempt.update()
    outcome = "finished"
    try:
        yield attempt
    except BaseException as error:   # a pruned trial, Ctrl-C, an error: the energy was still spent
        outcome = f"stopped: {type(error).__name__}"
        raise
    finally:
        tracker.stop()
        attempt.write(tracker.final_emissions_data, outcome)


def _record(data, chapter: str, subject: str, started: datetime, seconds: float, outcome: str,
            forced_intensity: float | None) -> dict:
    energy = float(data.energy_consumed) if data else 0.0
    return {
        "chapter": chapter, "subject": subject, "outcome": outcome, "started": started.isoformat(),
        "duration_s": seconds, "energy_kwh": energy, "emissions_kg": float(data.emissions) if data else 0.0,
        "grid_g_co2e_per_kwh": forced_intensity if forced_intensity is not None
        else (1000 * float(data.emissions) / energy if data and energy else None),
        "country": data.country_iso_code if data else None,
        "hardware": {"cpu_model": getattr(data, "cpu_model", None), "cpu_count": getattr(data, "cpu_count", None),
                     "gpu_model": getattr(data, "gpu_model", None) or None, "gpu_count": getattr(data, "gpu_count", 0),
                     "ram_gb": getattr(data, "ram_total_size", None)},
        "power_w": {"cpu": getattr(data, "cpu_power", None), "gpu": getattr(data, "gpu_power", None),
                    "ram": getattr(data, "ram_power", None)},
        "tracker": f"codecarbon {getattr(data, 'codecarbon_version', '?')}",
        "paper_formula": paper_formula(seconds),
    }


def read(directory: str | Path) -> list[dict]:
    """The records of one directory (empty when it holds none)."""
    path = Path(directory) / RECORD
    return atomic_files.read_json(path)["records"] if path.is_file() else []


def gather(root: str | Path = layout.LAYOUT.runs) -> pd.DataFrame:
    """Every record under `root`, one row each, with the directory it came from."""
    rows = []
    for path in sorted(Path(root).rglob(RECORD)):
        for record in read(path.parent):
            rows.append({"directory": str(path.parent), "chapter": record["chapter"], "subject": record["subject"],
                         "outcome": record["outcome"], "hours": record["duration_s"] / 3600,
                         "energy_kwh": record["energy_kwh"], "emissions_kg": record["emissions_kg"],
                         "paper_formula_kwh": record["paper_formula"]["energy_kwh"],
                         "paper_formula_kg": record["paper_formula"]["emissions_kg"],
                         "hardware": _hardware_name(record["hardware"])})
    return pd.DataFrame(rows, columns=["directory", "chapter", "subject", "outcome", "hours", "energy_kwh",
                                       "emissions_kg", "paper_formula_kwh", "paper_formula_kg", "hardware"])


def _hardware_name(hardware: dict) -> str:
    if hardware.get("gpu_count"):
        return f"{hardware['gpu_count']} x {hardware['gpu_model']}"
    return f"{hardware.get('cpu_count')} x {hardware.get('cpu_model')} (CPU)"


def totals(records: pd.DataFrame, by: str) -> pd.DataFrame:
    """Hours, energy and emissions summed per `by` (chapter or subject), measured and by the paper's formula."""
    columns = ["hours", "energy_kwh", "emissions_kg", "paper_formula_kwh", "paper_formula_kg"]
    table = records.groupby(by)[columns].sum()
    table.insert(0, "runs", records.groupby(by).size())
    return table


def paper_claims() -> pd.DataFrame:
    """The paper's own footprint figures through its formula: DAPT, one 12-hour DAPT + fine-tuning run,
    fine-tuning one corpus, the full search sweep."""
    reported = paths.read_parameters("paper.yaml")
    minutes = reported["fine_tuning"]["minutes_per_corpus_a100"]
    rows = {"DAPT (paper: ~4 A100-hours)": reported["dapt"]["hours_a100"],
            "DAPT + fine-tuning, one 12-hour run": 12.0,
            f"fine-tuning one corpus ({minutes[0]}-{minutes[1]} min, upper end)": minutes[1] / 60,
            "full search sweep (~12,000 A100-hours)": reported["hpo"]["a100_hours"]}
    return pd.DataFrame([{"claim": claim, "hours": hours, **{key: value for key, value in
                                                             paper_formula(hours * 3600).items()}}
                         for claim, hours in rows.items()]).set_index("claim")
