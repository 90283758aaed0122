"""A reviewer's verdict on the record: which recorded runs to rerun (the run a chapter's page shows, or named ones,
or all of the chapter's) and where, into runs/verify/<chapter>/<name>; then, once the training chapters' runner
(training/rerun.py) has trained them again with the recorded configuration, seed and thread count, each headline
figure of a rerun held against the record within a stated tolerance, and the verdict written as JSON beside the
reruns. This module only reads: it trains nothing. A record that fails its audit is not used to judge anything.

Tolerances, per figure:
  test strict F1 (finetune, baseline): "identical" when the rerun predicts the recorded test tags tag for tag;
      else "reproduced" when an approximate randomization test of the two systems on the same test sentences
      gives p >= ALPHA and the rerun's F1 lies inside the recorded run's bootstrap 95% interval; else "differs".
  perplexity reduction (dapt): within PERPLEXITY_POINTS percentage points absolute.
  energy (footprint.json, both sides): within ENERGY_FACTORS[hardware class]; informational, not part of the
      run's verdict (energy depends on the machine's load and its power model, not on the code).
A run is "reproduced" when every figure that counts is identical or reproduced, else "differs"."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from openmed_repro.data import saved_predictions
from openmed_repro.errors import OpenMedError
from openmed_repro.evaluation import metrics, significance
from openmed_repro.infra import atomic_files, footprint, layout, paths, runs

ALPHA = 0.05                 # the randomization test's level: p below it says the two systems differ
CONFIDENCE = 0.95            # the recorded run's bootstrap interval
PERPLEXITY_POINTS = 2.0      # DAPT: the perplexity reduction (a percentage) within 2 points absolute
# Energy is measured by CodeCarbon from the machine's power model and load, not from the code: on the same CPU
# (and GPU) model a rerun's measured energy varies with background load and clock boost, up to about twice; across
# machines the power models and the hardware's efficiency differ too, so only a factor of 5 says anything.
ENERGY_FACTORS = {"same hardware": 2.0, "other hardware": 5.0}
VERDICT = "verdict.json"


@dataclass
class Figure:
    """One headline figure of one run: its recorded and rerun values, the tolerance that applied, the verdict
    (identical, reproduced, differs; or within/outside for an informational figure) and the test's numbers."""

    name: str
    recorded: float | None
    rerun: float | None
    tolerance: str
    verdict: str
    counts: bool = True              # False: informational, not part of the run's verdict
    p_value: float | None = None
    interval: list[float] | None = None


@dataclass
class RunVerdict:
    """One recorded run held against its rerun."""

    name: str
    record_dir: str
    rerun_dir: str
    threads: int
    figures: list[Figure] = field(default_factory=list)
    machines: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        counted = [f.verdict for f in self.figures if f.counts]
        return "reproduced" if counted and all(v in ("identical", "reproduced") for v in counted) else "differs"


class Rerun(NamedTuple):
    """One recorded run to rerun: its name (<chapter>/<name under the chapter>), its record and the directory the
    runner trains it into."""

    name: str
    record_dir: Path
    rerun_dir: Path


@dataclass(frozen=True)
class Chapter:
    """How a chapter's rerun is judged: the figures it is compared by."""

    compare: Callable[..., list[Figure]]


def strict_f1_figure(record_dir: Path, rerun_dir: Path, dataset: str | Path | None = None, trials: int = 10_000,
            samples: int = 10_000, seed: int = 0) -> Figure:
    """The test strict F1 of a tagger's rerun against its record (the module's docstring says the tolerance)."""
    tokens, gold, recorded = saved_predictions.read(record_dir, "test", dataset=dataset)
    rerun_tokens, rerun_gold, rerun = saved_predictions.read(rerun_dir, "test")
    if rerun_tokens != tokens or rerun_gold != gold:
        raise OpenMedError(f"{rerun_dir}: its test sentences are not the recorded run's ({record_dir}); the rerun "
                           "must predict the same corpus version")
    counts_recorded, counts_rerun = metrics.sentence_counts(gold, recorded), metrics.sentence_counts(gold, rerun)
    test = significance.approximate_randomization(counts_recorded, counts_rerun, trials=trials, seed=seed)
    interval = significance.bootstrap_interval(counts_recorded, samples=samples, confidence=CONFIDENCE, seed=seed)
    inside = interval.low <= test.f1_b <= interval.high
    if rerun == recorded:
        tolerance, verdict = "identical test tags", "identical"
    else:
        tolerance = (f"AR test p={test.p_value:.3f} (>= {ALPHA} needed, {trials} trials) and inside the recorded "
                     f"bootstrap {CONFIDENCE:.0%} interval [{100 * interval.low:.2f}, {100 * interval.high:.2f}]")
        verdict = "reproduced" if test.p_value >= ALPHA and inside else "differs"
    return Figure("test strict F1", test.f1_a, test.f1_b, tolerance, verdict, p_value=test.p_value,
                  interval=[interval.low, interval.high])


def perplexity_reduction(record_dir: Path, rerun_dir: Path) -> Figure:
    """DAPT's perplexity reduction (percent) of the rerun against the record, within PERPLEXITY_POINTS."""
    key = "perplexity_reduction_percent"
    recorded = atomic_files.read_json(record_dir / runs.METRICS)[key]
    rerun = atomic_files.read_json(rerun_dir / runs.METRICS)[key]
    verdict = ("identical" if rerun == recorded else "reproduced" if abs(rerun - recorded) <= PERPLEXITY_POINTS
               else "differs")
    return Figure("perplexity reduction %", recorded, rerun, f"within {PERPLEXITY_POINTS:g} points absolute",
                  verdict)


def energy(record_dir: Path, rerun_dir: Path, machines: dict) -> Figure | None:
    """Measured training energy (kWh, every footprint record summed) within the factor of the hardware class;
    None when either side has no footprint."""
    recorded, rerun = footprint.read(record_dir), footprint.read(rerun_dir)
    if not recorded or not rerun:
        return None
    recorded_kwh = sum(r.get("energy_kwh") or 0.0 for r in recorded)
    rerun_kwh = sum(r.get("energy_kwh") or 0.0 for r in rerun)
    here, there = machines.get("rerun") or {}, machines.get("recorded") or {}
    same = (here.get("cpu"), here.get("gpu")) == (there.get("cpu"), there.get("gpu"))
    hardware = "same hardware" if same else "other hardware"
    factor = ENERGY_FACTORS[hardware]
    ratio = max(recorded_kwh, rerun_kwh) / min(recorded_kwh, rerun_kwh) if min(recorded_kwh, rerun_kwh) > 0 else None
    within = ratio is not None and ratio <= factor
    return Figure("energy kWh", recorded_kwh, rerun_kwh, f"within {factor:g}x ({hardware}; informational)",
                  "within" if within else "outside", counts=False)


def _tagger_figures(record_dir: Path, rerun_dir: Path, dataset, trials: int, samples: int) -> list[Figure]:
    return [strict_f1_figure(record_dir, rerun_dir, dataset, trials, samples)]


def _dapt_figures(record_dir: Path, rerun_dir: Path, dataset, trials: int, samples: int) -> list[Figure]:
    return [perplexity_reduction(record_dir, rerun_dir)]


CHAPTERS = {
    "finetune": Chapter(_tagger_figures),
    "baseline": Chapter(_tagger_figures),
    "dapt": Chapter(_dapt_figures),
}


def chapter_of(name: str) -> Chapter:
    if name not in CHAPTERS:
        raise OpenMedError(f"chapter {name!r}: no verifier; chapters that can be verified: {', '.join(CHAPTERS)}")
    return CHAPTERS[name]


def recorded_runs(chapter: str, results: Path | None = None, names: Sequence[str] = (),
                  every: bool = False) -> list[Path]:
    """The record directories to rerun: the ones `names` names (by name under the chapter or as <chapter>/<name>),
    every run of the chapter with `every`, else the run the chapter's page in the book shows."""
    results = layout.LAYOUT.record if results is None else Path(results)
    chapter_of(chapter)
    root = Path(results) / chapter
    found = sorted(path.parent for path in root.rglob(runs.METRICS)) if root.is_dir() else []
    if not found:
        raise OpenMedError(f"{root}: no recorded {chapter} run to verify (record one with openmed-repro record)")
    if every:
        return found
    by_name = {path.relative_to(root).as_posix(): path for path in found}
    chosen = []
    for name in names or [page_run(chapter)]:
        key = name.removeprefix(f"{chapter}/")
        if key not in by_name:
            raise OpenMedError(f"--run {name}: not recorded under {root}; recorded: {', '.join(by_name) or 'none'}")
        chosen.append(by_name[key])
    return chosen


def page_run(chapter: str) -> str:
    """The name of the run the chapter's page shows in the recorded book (parameters/book.yaml, profile cpu)."""
    output_dir = (paths.read_parameters("book.yaml")["profiles"]["cpu"].get(chapter) or {}).get("output_dir")
    if not isinstance(output_dir, dict) or "record" not in output_dir:
        raise OpenMedError(f"chapter {chapter!r}: its page names no recorded run; give --run NAME or --all")
    parameters = {key: value for key, value in output_dir.items() if key != "record"}
    return layout.run_directory(output_dir["record"], parameters).name


def plan(chapter: str, record_dirs: list[Path]) -> str:
    """What verify is about to do, before it starts: each run with its recorded training time and machine, and
    this machine, so that a reviewer knows what the afternoon holds."""
    from openmed_repro.infra.devices import machine

    here = machine()
    lines = [f"verify {chapter}: {len(record_dirs)} run(s) to rerun on {here.get('cpu')} "
             f"({here.get('threads')} thread(s){', GPU ' + str(here.get('gpu')) if here.get('gpu') else ''}):"]
    total = 0.0
    for record_dir in record_dirs:
        recorded = atomic_files.read_json(record_dir / runs.METRICS)
        seconds = float(recorded.get("train_seconds") or recorded.get("calibration_seconds") or 0.0)
        total += seconds
        there = _provenance(record_dir).get("machine") or {}
        device = recorded.get("device") or "?"
        lines.append(f"  {record_dir.name}: trained {seconds / 60:.0f} min on {device} ({there.get('cpu') or '?'})")
    lines.append(f"  recorded training time in all: {total / 3600:.1f} h (on the recorded machines; a rerun already "
                 "finished in runs/verify is read back, not trained again)")
    return "\n".join(lines)


def audited(results: Path, record_dirs: list[Path], data_dir=None) -> None:
    """Refuse to judge reruns against a record that fails its audit (a changed file, a figure its predictions do
    not give): the verdict would blame the rerun for the record's fault."""
    from openmed_repro.report import audit

    report = audit.audit(results, data_dir, record_dirs)
    mine = [problem for problem in report.problems
            if any(str(record_dir) in problem for record_dir in record_dirs) or audit.MANIFEST in problem.split(":")[0]]
    if mine:
        raise OpenMedError(f"the record fails its audit, so no rerun is judged against it: {mine[0]}"
                           + (f" (and {len(mine) - 1} more; run openmed-repro audit)" if len(mine) > 1 else ""))


def _provenance(directory: Path) -> dict:
    path = directory / runs.PROVENANCE
    return atomic_files.read_json(path) if path.is_file() else {}


def compare(chapter: str, record_dir: Path, rerun_dir: Path, name: str, threads: int, dataset=None,
            trials: int = 10_000, samples: int = 10_000) -> RunVerdict:
    """A finished rerun held against its record: every headline figure of the chapter, and the energy."""
    machines = {"recorded": _provenance(record_dir).get("machine"), "rerun": _provenance(rerun_dir).get("machine")}
    figures = chapter_of(chapter).compare(record_dir, rerun_dir, dataset, trials, samples)
    spent = energy(record_dir, rerun_dir, machines)
    return RunVerdict(name, str(record_dir), str(rerun_dir), threads, figures + ([spent] if spent else []), machines)


def prepare(chapter: str, results: Path | None = None, runs_root: Path = layout.LAYOUT.runs, names: Sequence[str] = (),
            every: bool = False, overrides: dict | None = None, say: Callable[[str], None] = print) -> list[Rerun]:
    """The reruns to make of the chapter's page run (or the named ones, or `every` recorded run), each into
    runs/verify/<chapter>/<name>. The record must pass its audit first; the plan (runs, recorded times and
    machines) is said before anything trains."""
    results = layout.LAYOUT.record if results is None else Path(results)
    root = Path(results) / chapter
    chosen = recorded_runs(chapter, results, names, every)
    given = overrides or {}
    audited(Path(results), chosen, given.get("data_dir") or (Path(given["dataset"]).parent if given.get("dataset") else None))
    say(plan(chapter, chosen))
    record_names = [record_dir.relative_to(root).as_posix() for record_dir in chosen]
    return [Rerun(f"{chapter}/{name}", record_dir, Path(runs_root) / layout.LAYOUT.verify / chapter / name)
            for name, record_dir in zip(record_names, chosen)]


def judge(chapter: str, reruns: Sequence[Rerun], threads: Sequence[int], runs_root: Path = layout.LAYOUT.runs,
          dataset=None, trials: int = 10_000, samples: int = 10_000) -> list[RunVerdict]:
    """Every finished rerun compared with its record (`threads`: the threads each trained with), and the verdict
    written to runs/verify/<chapter>/verdict.json."""
    verdicts = [compare(chapter, planned.record_dir, planned.rerun_dir, planned.name, used, dataset, trials, samples)
                for planned, used in zip(reruns, threads)]
    write_verdict(verdicts, Path(runs_root) / layout.LAYOUT.verify / chapter / VERDICT)
    return verdicts


def write_verdict(verdicts: list[RunVerdict], path: Path) -> Path:
    """The verdict as JSON: per run its verdict, threads and the machines of both sides, per figure its recorded
    and rerun values, tolerance, verdict, p-value and interval."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_files.write_json(path, _payload(verdicts))
    return path


def _payload(verdicts: list[RunVerdict]) -> dict:
    return {"tolerances": {"alpha": ALPHA, "confidence": CONFIDENCE, "perplexity_points": PERPLEXITY_POINTS,
                           "energy_factors": ENERGY_FACTORS},
            "runs": [{"name": v.name, "verdict": v.verdict, "record_dir": v.record_dir, "rerun_dir": v.rerun_dir,
                      "threads": v.threads, "machines": v.machines,
                      "figures": [asdict(figure) for figure in v.figures]} for v in verdicts]}


def table(verdicts: list[RunVerdict] | dict) -> pd.DataFrame:
    """One row per figure: run, figure, recorded, rerun, tolerance (which test applied), verdict; of verdicts
    just made or of a verdict.json read back (the book's "Your rerun" section)."""
    payload = verdicts if isinstance(verdicts, dict) else _payload(verdicts)
    rows = [{"run": run["name"], "figure": f["name"], "recorded": _shown(f["name"], f["recorded"]),
             "rerun": _shown(f["name"], f["rerun"]), "tolerance": f["tolerance"], "verdict": f["verdict"]}
            for run in payload["runs"] for f in run["figures"]]
    rows += [{"run": run["name"], "figure": "run", "recorded": "", "rerun": "", "tolerance": "every figure that counts",
              "verdict": run["verdict"]} for run in payload["runs"]]
    return pd.DataFrame(rows, columns=["run", "figure", "recorded", "rerun", "tolerance", "verdict"])


def _shown(name: str, value: float | None) -> str:
    if value is None:
        return ""
    if name == "test strict F1":
        return f"{100 * value:.2f}"
    if name == "energy kWh":
        return f"{value:.3g}"
    return f"{value:.2f}"
