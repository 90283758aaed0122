"""The paper's Table 4 with our numbers beside it: every finished fine-tuning run under a directory (runs/ or
the record, results/), the best one per corpus chosen on dev strict F1 (as the paper selects), its test F1 with
a bootstrap interval; beside it each profile's test F1 over its seeds (mean ± standard deviation), the
BiLSTM-CNN-Char baseline's, the Spark NLP paper's, and the paper's released checkpoint scored here (make released);
a row for every registered corpus, saying so when nothing was run for it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, job_settings, layout, paths, runs

from openmed_repro.data import corpora, saved_predictions
from openmed_repro.evaluation import comparison, metrics
from openmed_repro.data import paper
from openmed_repro.evaluation import significance
from openmed_repro.released import checkpoints

TRANSFORMER_METHODS = ("lora", "full")
RELEASED = "released checkpoint, scored here"


def finished_runs(root: str | Path = layout.LAYOUT.runs, profiles: list[str] | None = None) -> pd.DataFrame:
    """One row per finished fine-tuning run (a metrics.json with test scores) under `root`, runs/ or the record
    (results/); with `profiles`, only runs of those profiles (so that the tiny-model runs of a smoke book stay
    out of a cpu book). A run given other hyper-parameters than its profile's (the search's tuned runs) is not
    one of the profile's runs, and its chapter shows it."""
    rows = []
    for path in sorted(Path(root).rglob(runs.METRICS)):
        record = atomic_files.read_json(path)
        if record.get("method") not in TRANSFORMER_METHODS or "test" not in record:
            continue
        if profiles is not None and record.get("profile") not in profiles:
            continue
        if not runs.follows_its_profile(path.parent):
            continue
        dapt = runs.started_from_dapt(path.parent)
        provenance_path = path.parent / runs.PROVENANCE
        device = (atomic_files.read_json(provenance_path).get("device") if provenance_path.is_file() else None) or "unknown"
        rows.append({"device": device.split(" (")[0],"corpus": Path(record["dataset"]).name, "run_dir": str(path.parent),
                     "backbone": record["backbone"], "method": record["method"], "profile": record["profile"],
                     "dapt": dapt, "recipe": recipe(record["profile"], dapt),
                     "seed": record["seed"], "train sentences": record["sentences"]["train"],
                     "dev F1": 100 * record["devel"]["strict"]["f1"], "test F1": 100 * record["test"]["strict"]["f1"]})
    return pd.DataFrame(rows, columns=["device", "corpus", "run_dir", "backbone", "method", "profile", "dapt", "recipe", "seed",
                                       "train sentences", "dev F1", "test F1"])


def recipe(profile: str, dapt: bool) -> str:
    """A profile's recipe, and the paper's two stages on it: "cpu", "cpu + DAPT"."""
    return f"{profile} + DAPT" if dapt else profile


def column(profile: str, method: str, dapt: bool) -> str:
    """Table 4's column of one system: "ours cpu (lora)", "ours cpu (DAPT + lora)"."""
    return f"ours {profile} ({'DAPT + ' if dapt else ''}{method})"


SELECTED = "ours selected"


def selection(candidates: pd.DataFrame, profile: str = "cpu", method: str = "lora") -> pd.DataFrame:
    """The paper's selection at laptop scale: per corpus, the offline backbone with and without DAPT (the
    `profile`'s `method`) are both trained, and the one with the higher mean dev strict F1 over its seeds is the
    one whose test F1 counts (test F1 never chooses). One row per corpus with both candidates' dev F1."""
    rows = []
    pool = candidates[(candidates["profile"] == profile) & (candidates["method"] == method)]
    for corpus, group in pool.groupby("corpus", sort=False):
        dev = {dapt: per_seed(runs_of, "dev F1").mean() for dapt, runs_of in group.groupby("dapt")}
        chosen = max(dev, key=lambda dapt: (dev[dapt], dapt))
        tests = per_seed(group[group["dapt"] == chosen])
        rows.append({"corpus": corpus, "dev F1 without DAPT": dev.get(False), "dev F1 with DAPT": dev.get(True),
                     "chosen": "with DAPT" if chosen else "without DAPT", SELECTED: seed_spread(tests),
                     "test F1": tests.mean()})
    return pd.DataFrame(rows, columns=["corpus", "dev F1 without DAPT", "dev F1 with DAPT", "chosen", SELECTED,
                                       "test F1"])


def baseline_runs(root: str | Path = layout.LAYOUT.runs, profiles: list[str] | None = None) -> pd.DataFrame:
    """One row per finished BiLSTM-CNN-Char run under `root` (corpus, profile, seed, test F1) that starts from
    its profile's word vectors: the other starts of the choice among them are not the profile's runs (nor its
    seeds)."""
    rows = []
    for path in sorted(Path(root).rglob(runs.METRICS)):
        record = atomic_files.read_json(path)
        if record.get("method") in TRANSFORMER_METHODS or "majority_test_strict_f1" not in record:
            continue
        if profiles is not None and record.get("profile") not in profiles:
            continue
        if not runs.follows_its_profile(path.parent, job_settings.load_baseline_config):
            continue
        rows.append({"corpus": Path(record["dataset"]).name, "profile": record["profile"], "seed": record["seed"],
                     "test F1": 100 * record["test"]["strict"]["f1"]})
    return pd.DataFrame(rows, columns=["corpus", "profile", "seed", "test F1"])


def released_runs(root: str | Path = layout.LAYOUT.runs) -> pd.DataFrame:
    """One row per finished run of a released checkpoint under `root` (corpus, checkpoint, test F1)."""
    rows = []
    for path in sorted(Path(root).rglob(runs.METRICS)):
        record = atomic_files.read_json(path)
        if "checkpoint" in record and "test" in record:
            rows.append({"corpus": Path(record["dataset"]).name, "checkpoint": record["checkpoint"],
                         "test F1": 100 * record["test"]["strict"]["f1"]})
    return pd.DataFrame(rows, columns=["corpus", "checkpoint", "test F1"])


def released_figure(released: pd.DataFrame, corpus: str) -> str:
    """The column "released checkpoint, scored here": its test F1, else whether released.yaml pairs one."""
    scored = released[released["corpus"] == corpus]
    if not scored.empty:
        return "; ".join(f"{f1:.2f}" for f1 in scored["test F1"])
    return "not scored here" if checkpoints.for_corpus(corpus) else "none released"


def best_run(candidates: pd.DataFrame, corpus: str) -> pd.Series | None:
    """The corpus's run chosen on dev strict F1, as the paper selects (test F1 breaks ties); None without one."""
    runs_here = candidates[candidates["corpus"] == corpus]
    if runs_here.empty:
        return None
    return runs_here.sort_values(["dev F1", "test F1"], ascending=False).iloc[0]


def seed_spread(values: pd.Series) -> str:
    """Test F1 over seeds: "80.01 ± 1.16 (3)" (mean ± sample standard deviation, seeds), one seed as "80.48"."""
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f} ({len(values)})"


def against_baseline(root: str | Path = layout.LAYOUT.runs, profile: str = "cpu", method: str = "lora", trials: int = 10_000,
                     seed: int = 0, data_dir: str | Path | None = None, baseline_profile: str = "cpu") -> pd.DataFrame:
    """The headline comparison at laptop scale: per corpus, the selected start of the paper's recipe (with or
    without DAPT, chosen on dev; `selection`) against the BiLSTM-CNN-Char baseline trained on the same splits,
    seed 42 against seed 42, with the approximate randomization p-value and the winner ("tie" when p >= 0.05)."""
    candidates = finished_runs(root, [profile])
    candidates = candidates[candidates["method"] == method]
    chosen = selection(candidates, profile, method).set_index("corpus")
    baselines = {}
    for path in sorted(Path(root).rglob(runs.METRICS)):
        record = atomic_files.read_json(path)
        if ("majority_test_strict_f1" in record and record.get("profile") == baseline_profile
                and record.get("seed") == 42 and runs.follows_its_profile(path.parent, job_settings.load_baseline_config)):
            baselines.setdefault(Path(record["dataset"]).name, path.parent)
    rows = []
    for corpus in chosen.index:
        dapt = chosen.loc[corpus, "chosen"] == "with DAPT"
        ours = candidates[(candidates["corpus"] == corpus) & (candidates["dapt"] == dapt) & (candidates["seed"] == 42)]
        if ours.empty or corpus not in baselines:
            continue
        a, b = comparison.load([Path(ours.iloc[0]["run_dir"]), baselines[corpus]], "test", data_dir=data_dir)
        test = significance.approximate_randomization(a.sentence_counts, b.sentence_counts, trials, seed)
        winner = ("tie" if test.p_value >= comparison.ALPHA else
                  "paper's recipe" if test.difference > 0 else "BiLSTM-CNN-Char")
        rows.append({"corpus": corpus, "ours": f"{'DAPT + ' if dapt else ''}{method}",
                     "ours F1": round(100 * test.f1_a, 2), "BiLSTM F1": round(100 * test.f1_b, 2),
                     "difference": round(100 * test.difference, 2), "p (AR)": round(test.p_value, 4),
                     "winner": winner})
    return pd.DataFrame(rows, columns=["corpus", "ours", "ours F1", "BiLSTM F1", "difference", "p (AR)", "winner"])


def per_seed(runs_here: pd.DataFrame, figure: str = "test F1") -> pd.Series:
    """Each seed's test F1 (or `figure`), the best on dev where one seed was run more than once (as the paper
    selects)."""
    chosen = runs_here.sort_values(["dev F1", "test F1"], ascending=False).drop_duplicates("seed")
    return chosen.sort_values("seed")[figure]


def mixed_devices(group: pd.DataFrame) -> str:
    """" (mixed: cpu, NVIDIA H200)" when a seed group's runs trained on different devices, else nothing: its
    spread then mixes the devices' numerics, and a reader should know."""
    devices = sorted(set(group["device"])) if "device" in group else []
    return f" (mixed: {', '.join(devices)})" if len(devices) > 1 else ""


def table(root: str | Path = layout.LAYOUT.runs, samples: int = 10_000, seed: int = 0,
          profiles: list[str] | None = None, data_dir: str | Path | None = None,
          baseline_profiles: list[str] | None = None) -> pd.DataFrame:
    """Table 4: corpus, paper F1, the released checkpoint's F1 scored here, best prior system, the Spark NLP
    paper's BiLSTM-CNN-Char, our run chosen on dev with its test F1, 95% interval and difference to the paper,
    then each profile's test F1 over seeds ("ours <profile> (<method>)") and the BiLSTM-CNN-Char baseline's
    ("ours BiLSTM"); every registered corpus appears. `root` is runs/ or the record (results/), whose intervals
    read the gold tags from the corpora (in `data_dir` when given)."""
    candidates = finished_runs(root, profiles)
    baselines = baseline_runs(root, baseline_profiles or profiles)
    released = released_runs(root)
    reported = paper.table4()
    spark = paths.read_parameters("paper.yaml")["spark_nlp_bilstm_cnn_char_f1"]
    columns = [(profile, method, dapt) for profile, method, dapt in
               candidates[["profile", "method", "dapt"]].drop_duplicates().itertuples(index=False)]
    columns.sort(key=lambda system: ((profiles or []).index(system[0]) if system[0] in (profiles or [])
                                     else len(profiles or []), system[2]))
    selected = selection(candidates).set_index("corpus")
    keys = list(corpora.registry()) + sorted(set(candidates["corpus"]) - set(corpora.registry()))
    rows = []
    for key in keys:
        claimed = reported.get(key) or {}
        prior = claimed.get("best_prior") or {}
        row = {"corpus": key, "paper F1": claimed.get("f1"), RELEASED: released_figure(released, key),
               "best prior": f"{prior['f1']:.2f} ({prior['system']})" if prior else "none",
               "Spark NLP BiLSTM (paper)": spark.get(key)}
        runs_here = candidates[candidates["corpus"] == key]
        spread = {column(profile, method, dapt): seed_spread(per_seed(group)) + mixed_devices(group)
                  for profile, method, dapt in columns
                  for group in [runs_here[(runs_here["profile"] == profile) & (runs_here["method"] == method)
                                          & (runs_here["dapt"] == dapt)]]}
        if candidates["dapt"].any():
            spread[SELECTED] = (f"{selected.loc[key, SELECTED]} ({selected.loc[key, 'chosen']})"
                                if key in selected.index else "–")
        spread["ours BiLSTM"] = seed_spread(baselines[baselines["corpus"] == key].sort_values("seed")["test F1"])
        if runs_here.empty:
            rows.append({**row, "reproduced F1": None, "95% CI": "not run", "difference": None, **spread,
                         "run": "not run here", "runs": 0})
            continue
        chosen = best_run(runs_here, key)
        interval = _interval(Path(chosen["run_dir"]), samples, seed, data_dir)
        rows.append({**row, "reproduced F1": round(chosen["test F1"], 2),
                     "95% CI": f"{interval.low * 100:.1f}-{interval.high * 100:.1f}" if interval else "no predictions",
                     "difference": round(chosen["test F1"] - claimed["f1"], 2) if claimed.get("f1") else None,
                     **spread,
                     "run": f"{chosen['backbone']}, {chosen['method']}, profile {chosen['profile']}, "
                            f"{chosen['train sentences']:,} train sentences ({Path(chosen['run_dir']).name})",
                     "runs": len(runs_here)})
    table = pd.DataFrame(rows).set_index("corpus")
    # the paper's figure and its released checkpoint scored here, then ours over seeds (what a reader
    # compares), then the references and the run chosen on dev
    ours = [column for column in table.columns if column.startswith("ours ")]
    first = ["paper F1", RELEASED, *ours, "Spark NLP BiLSTM (paper)", "best prior"]
    return table[first + [column for column in table.columns if column not in first]]


def _interval(run_dir: Path, samples: int, seed: int, data_dir: str | Path | None):
    """The bootstrap interval of the run's test F1, from its run directory or its record; None without predictions."""
    if not saved_predictions.exists(run_dir, "test"):
        return None
    _, gold, predicted = saved_predictions.read(run_dir, "test", data_dir=data_dir)
    return significance.bootstrap_interval(metrics.sentence_counts(gold, predicted), samples, seed=seed)


def cost(root: str | Path = layout.LAYOUT.runs) -> pd.DataFrame:
    """What the runs under `root` cost, per chapter, profile and machine: runs and hours of training (the runs'
    own train_seconds, so the load of a shared machine is in them). A run that trained on a GPU is counted
    apart from the CPU runs of its profile: an hour of one is not an hour of the other."""
    rows = []
    for path in sorted(Path(root).rglob(runs.METRICS)):
        metrics = atomic_files.read_json(path)
        if "train_seconds" not in metrics:
            continue
        provenance = path.parent / runs.PROVENANCE
        recorded = atomic_files.read_json(provenance) if provenance.is_file() else {}
        rows.append({"chapter": path.relative_to(root).parts[0], "profile": metrics.get("profile"),
                     "machine": machine_name(recorded), "hours": metrics["train_seconds"] / 3600})
    if not rows:
        return pd.DataFrame(columns=["runs", "training hours"])
    table = pd.DataFrame(rows).groupby(["chapter", "profile", "machine"]).agg(
        runs=("hours", "size"), hours=("hours", "sum"))
    return table.rename(columns={"hours": "training hours"}).round(2)


def machine_name(provenance: dict) -> str:
    """What a run trained on, from its provenance: the GPU where its device was one, else the CPU and threads."""
    device, machine = str(provenance.get("device") or ""), provenance.get("machine") or {}
    if device and not device.startswith("cpu"):
        return f"GPU: {device}"
    return f"{machine.get('cpu') or 'unknown CPU'}, {machine.get('threads') or '?'} thread(s)"


NEGLIGIBLE_SD = 0.5   # points of test F1: a seed spread below this is "negligible", as the paper calls its own


def seed_variance(root: str | Path = layout.LAYOUT.runs, profiles: list[str] | None = None) -> str:
    """In words, whether the paper's claim that its variance across seeds is negligible holds for the runs
    here, profile by profile (LoRA and full fine-tuning need not agree): each corpus with two or more seeds,
    its standard deviation and range of test F1."""
    candidates = finished_runs(root, profiles)
    parts = []
    for (profile, corpus), group in candidates.groupby(["recipe", "corpus"]):
        values = per_seed(group)
        if len(values) >= 2:
            parts.append((profile, corpus, len(values), values.std(ddof=1), values.max() - values.min()))
    if not parts:
        return "No corpus has two seeds of one profile yet: the seed spread is not measured."
    verdicts = []
    for profile in dict.fromkeys(part[0] for part in parts):
        measured = [part for part in parts if part[0] == profile]
        holds = all(sd < NEGLIGIBLE_SD for *_, sd, _ in measured)
        listed = "; ".join(f"{corpus} ({n} seeds): sd {sd:.2f}, range {spread:.2f} points"
                           for _, corpus, n, sd, spread in measured)
        verdicts.append(f"for profile {profile} it {'holds' if holds else 'does not hold'} here ({listed})")
    return (f"The paper calls its variance across seeds negligible (here: sd below {NEGLIGIBLE_SD} points of test "
            f"strict F1): " + "; ".join(verdicts) + ".")


def widest_seed_spread(root: str | Path = layout.LAYOUT.runs, profiles: list[str] | None = None) -> tuple[str, str] | None:
    """The (corpus, profile) whose seeds disagree most on test F1 (range), or None without two seeds anywhere."""
    candidates = finished_runs(root, profiles)
    candidates = candidates[candidates["dapt"] == False]  # noqa: E712 (a column of booleans)
    spreads = {key: values.max() - values.min() for key, group in candidates.groupby(["corpus", "profile"])
               if len(values := per_seed(group)) >= 2}
    return max(spreads, key=spreads.get) if spreads else None


def precision_twins(root: str | Path = layout.LAYOUT.runs, samples: int = 10_000, trials: int = 10_000, seed: int = 0,
                    data_dir: str | Path | None = None) -> pd.DataFrame:
    """Runs that differ from a run of their profile only in the precision they trained in (a `-p precision fp32`
    twin of a profile run that trained in bf16): both test strict F1s, whether the profile run's F1 lies inside the
    twin's bootstrap 95% interval, the approximate randomization p-value, and the training time of each. The rule
    for a laptop profile training in bf16: its F1 inside the fp32 twin's interval."""
    by_identity, twins = {}, []
    for path in sorted(Path(root).rglob(runs.METRICS)):
        settings_path = path.parent / runs.CONFIG
        if not settings_path.is_file() or "test" not in (record := atomic_files.read_json(path)):
            continue
        settings = atomic_files.read_json(settings_path)
        identity = (Path(str(settings.get("dataset"))).name, settings.get("profile"), settings.get("seed"),
                    settings.get("method"), bool(settings.get("dapt_adapter")))
        if runs.follows_its_profile(path.parent):
            by_identity.setdefault(identity, (path.parent, record))
        elif runs.follows_its_profile(path.parent, but={"precision": _profile_precision(settings)}):
            twins.append((identity, path.parent, record))
    rows = []
    for identity, twin_dir, twin in twins:
        if identity not in by_identity:
            continue
        run_dir, run = by_identity[identity]
        a, b = comparison.load([run_dir, twin_dir], "test", data_dir=data_dir)
        interval = significance.bootstrap_interval(b.sentence_counts, samples, seed=seed)
        test = significance.approximate_randomization(a.sentence_counts, b.sentence_counts, trials, seed)
        rows.append({"corpus": identity[0], "profile": identity[1], "seed": identity[2],
                     "precision": _trained_in(run_dir), "F1": round(100 * test.f1_a, 2),
                     "twin precision": _trained_in(twin_dir), "twin F1": round(100 * test.f1_b, 2),
                     "twin 95% CI": f"{100 * interval.low:.2f}-{100 * interval.high:.2f}",
                     "inside": bool(interval.low <= test.f1_a <= interval.high), "p (AR)": round(test.p_value, 4),
                     "train s": run.get("train_seconds"), "twin train s": twin.get("train_seconds")})
    return pd.DataFrame(rows, columns=["corpus", "profile", "seed", "precision", "F1", "twin precision", "twin F1",
                                       "twin 95% CI", "inside", "p (AR)", "train s", "twin train s"])


def _profile_precision(settings: dict):
    try:
        return job_settings.load_run_config(settings.get("profile"), {"dataset": "any"}).precision
    except OpenMedError:   # a profile since removed: no twin of it
        return None


def _trained_in(run_dir: Path) -> str | None:
    provenance = run_dir / runs.PROVENANCE
    return atomic_files.read_json(provenance).get("precision") if provenance.is_file() else None


def dev_f1_by_rate(root: str | Path, corpus: str, profile: str = "cpu", method: str = "lora") -> pd.DataFrame:
    """Dev strict F1 after each epoch of every run of a corpus with one profile and method (no DAPT), whatever
    learning rate it was trained with: the profile's current one and those of its superseded records
    (results/superseded/), one column per rate and seed ("lr 3e-03, seed 42"; ", patience 3" where early stopping
    ended it at another patience than the profile's). It shows what a change of the profile's rate, or of its early
    stopping, did to that corpus."""
    columns = {}
    now = job_settings.load_run_config(profile, {"dataset": "any"})
    for path in sorted(Path(root).rglob(runs.METRICS)):
        record = atomic_files.read_json(path)
        settings = path.parent / runs.CONFIG
        if (Path(str(record.get("dataset"))).name != corpus or record.get("profile") != profile
                or record.get("method") != method or not settings.is_file() or runs.started_from_dapt(path.parent)):
            continue
        recorded = atomic_files.read_json(settings)
        rate = recorded.get("learning_rate")
        history = path.parent / runs.LOG_HISTORY
        # a run of the profile, or of one of its earlier recipes (another rate, its precision and early stopping
        # then), not a tuned run
        if rate is None or not history.is_file() or not runs.follows_its_profile(path.parent, but={
                "learning_rate": now.learning_rate, "precision": now.precision,
                "early_stopping_patience": now.early_stopping_patience}):
            continue
        # a run that early stopping ended at another patience than the profile's is a recipe of its own
        patience = recorded.get("early_stopping_patience", now.early_stopping_patience)
        ended_early = not runs.trained_every_epoch(path.parent, recorded.get("epochs", now.epochs))
        key = (rate, patience if ended_early and patience != now.early_stopping_patience else None, record["seed"])
        if key in columns and not runs.follows_its_profile(path.parent):
            continue   # the profile's own run of this rate and seed, not its precision twin
        columns[key] = pd.Series({entry["epoch"]: 100 * entry["eval_strict_f1"]
                                  for entry in atomic_files.read_json(history) if "eval_strict_f1" in entry})
    ordered = sorted(columns, key=lambda key: (-key[0], key[1] is None, key[1] or 0, key[2]))   # the profile's last
    return pd.DataFrame({f"lr {rate:.0e}, seed {seed}" + (f", patience {patience}" if patience else ""):
                         columns[(rate, patience, seed)] for rate, patience, seed in ordered}).rename_axis("epoch").round(2)


def dev_f1_by_epoch(root: str | Path, corpus: str, profile: str, dapt: bool = False) -> pd.DataFrame:
    """Dev strict F1 after each epoch, one column per seed, of a corpus's runs of one profile (their
    log_history.json): where seeds disagree, it shows whether a run never learned or learned and then lost it."""
    candidates = finished_runs(root, [profile])
    candidates = candidates[candidates["dapt"] == dapt]
    columns = {}
    for row in candidates[candidates["corpus"] == corpus].sort_values("seed").itertuples():
        history = Path(row.run_dir) / runs.LOG_HISTORY
        if history.is_file():
            columns[f"seed {row.seed}"] = pd.Series({entry["epoch"]: 100 * entry["eval_strict_f1"]
                                                     for entry in atomic_files.read_json(history) if "eval_strict_f1" in entry})
    return pd.DataFrame(columns).rename_axis("epoch").round(2)


def early_stops(curves: pd.DataFrame, profile: str) -> str:
    """Which seeds early stopping ended before the profile's last epoch (`dev_f1_by_epoch`'s curves), with each
    one's best dev F1 beside the best the other seeds reached: a seed stopped while the rest went on learning
    explains part of a spread that its test F1 alone cannot."""
    settings = job_settings.load_run_config(profile, {"dataset": "any"})   # the profile's epochs
    stopped, ran_on = [], []
    for seed, curve in curves.items():
        curve = curve.dropna()
        if curve.empty:
            continue
        last, best = int(curve.index.max()), int(curve.idxmax())
        if last < settings.epochs:
            stopped.append(f"{seed} stopped after epoch {last} of {settings.epochs:g} (best dev F1 {curve.max():.2f}, "
                           f"at epoch {best})")
        else:
            ran_on.append(curve.max())
    if not stopped:
        return f"Every seed ran all {settings.epochs:g} epochs: early stopping ended none of them."
    others = (f"; the seeds that ran all {settings.epochs:g} epochs reached best dev F1 "
              f"{min(ran_on):.2f}-{max(ran_on):.2f}" if ran_on else "")
    return (f"Early stopping (patience {settings.early_stopping_patience} epochs without a better dev F1): "
            + "; ".join(stopped) + others + ".")
