"""The Performance chapter's measurements, in one process and one sitting so that ratios are comparable on a
noisy machine: (a) training, our fine-tuning against the standard Hugging Face recipe (standard_recipe.py) on
the same backbone, corpus and number of epochs, and ours again in bf16 autocast where the CPU has bf16 units
(`--low-precision`, with `--low-precision-set` options of its own); (b) inference, our batched predictor against
`transformers.pipeline("token-classification")` on the same trained model and test sentences; (c) trial time
saved by pruning, read from two finished search directories when given (search_analyses.py); (d) achieved
FLOP/s as a fraction of this CPU's fp32 matmul peak, measured in the same run. Also the training options of
training_options.py.

On a GPU (`--device cuda`, the default where one is visible) both recipes train in bf16 mixed precision with
batch 32, the peak is a bf16 matmul on the GPU and peak GPU memory is recorded; the training options, a study
of CPU settings, are skipped.

    .venv/bin/python benchmarks/performance.py [--profile cpu-fast] [--dataset ncbi_disease] [--out runs/bench]
        [--search-pruned DIR --search-unpruned DIR] [--device auto|cpu|cuda] [--low-precision auto|bf16|none]
        [--smoke]

--smoke runs the smoke profile (tiny random BERT) on a corpus directory in seconds: it checks that the code
runs and writes its JSON; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
from transformers import TrainerCallback, pipeline

import search_analyses
import standard_recipe
import training_options
from openmed_repro.infra import atomic_files, job_settings, run_provenance, validation
from openmed_repro.data import corpora, encoding, iob
from openmed_repro.infra import devices
from openmed_repro.models import predictor
from openmed_repro.training import finetune
from openmed_repro.evaluation import metrics, significance
from openmed_repro.infra import plots
from openmed_repro.errors import OpenMedError

GPU_SETTINGS = {"precision": "bf16", "batch_size": 32}   # the GPU comparison's settings, for both recipes

EMBEDDING_SUFFIXES = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight")


class PeakMemory:
    """Peak resident memory of this process while the block runs (sampled every 50 ms), and on a GPU the
    peak of its allocated GPU memory."""

    def __init__(self):
        self.process = psutil.Process()
        self.start = self.peak = self.gpu_start = 0
        self._running = False

    def __enter__(self):
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.gpu_start = torch.cuda.memory_allocated()
        self.start = self.peak = self.process.memory_info().rss
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while self._running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    def record(self) -> dict:
        record = {"peak_rss_mb": round(self.peak / 2**20, 1), "rss_at_start_mb": round(self.start / 2**20, 1)}
        if torch.cuda.is_available():   # like RSS, the peak includes what was allocated before the block
            record["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            record["gpu_memory_at_start_mb"] = round(self.gpu_start / 2**20, 1)
        return record


class Clock(TrainerCallback):
    """Seconds since training began at each epoch end and each dev evaluation (with its strict F1), in wall time
    and in this process's CPU time (less sensitive to other jobs on a shared machine)."""

    def __init__(self):
        self.start = self.cpu_start = 0.0
        self.epoch_ends: list[float] = []
        self.points: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.epoch_ends.append(time.perf_counter() - self.start)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        f1 = (metrics or {}).get("eval_strict_f1")
        if f1 is not None:
            self.points.append({"epoch": round(state.epoch or 0.0, 3),
                                "seconds": round(time.perf_counter() - self.start, 1),
                                "cpu_seconds": round(time.process_time() - self.cpu_start, 1), "dev_strict_f1": f1})

    def evaluation_seconds(self) -> float:
        """Time spent in dev evaluation (epoch end to its evaluation), so tokens/s can leave it out."""
        return sum(p["seconds"] - end for p, end in zip(self.points, self.epoch_ends))


def matmul_peak(size: int = 2048, repeats: int = 10, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """Best FLOP/s of a size x size torch matmul (fp32 on the CPU's current thread setting, bf16 on a GPU)."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        a @ b
        synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def chosen_device(requested: str) -> str:
    """`auto`: the GPU where one is visible. `cpu` hides a GPU from this process (before CUDA starts), since
    the Trainer takes any GPU it sees."""
    if requested == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise OpenMedError("--device cuda: no CUDA GPU is visible to this process; use --device cpu (or auto)")
    return "cuda" if torch.cuda.is_available() else "cpu"


def matmul_parameters(model) -> int:
    """Parameters that take part in matrix products (embedding tables are looked up, not multiplied)."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.endswith(EMBEDDING_SUFFIXES))


def time_to_reach(points: list[dict], target: float, clock: str = "seconds") -> float | None:
    """Seconds (wall, or `cpu_seconds`) since training began at the first evaluation whose dev strict F1
    reached `target`."""
    return next((p[clock] for p in points if p["dev_strict_f1"] >= target - 1e-12), None)


def strict_scores(gold, predicted) -> dict:
    scores = metrics.score(gold, predicted)
    return {"strict_f1": scores.strict.f1, "strict_precision": scores.strict.precision,
            "strict_recall": scores.strict.recall, "default_f1": scores.default.f1}


def scored_on_test(gold, predicted) -> dict:
    """A recipe's test scores and the 95% bootstrap interval of its strict F1 (what another run is judged against)."""
    interval = significance.bootstrap_interval(metrics.sentence_counts(gold, predicted))
    return {"test": strict_scores(gold, predicted), "test_strict_f1_interval": [interval.low, interval.high]}


def train_ours(run_config: job_settings.RunConfig, corpus, work: Path) -> tuple[dict, finetune.FineTuned]:
    clock = Clock()
    with PeakMemory() as memory:
        trained = finetune.train(run_config, corpus, work / f"ours-{run_config.precision}", callbacks=[clock])
    epochs = max((p["epoch"] for p in clock.points), default=0.0)
    train_only = trained.train_seconds - clock.evaluation_seconds()
    test = finetune.subset(corpus.test, run_config.max_eval_sentences)
    predicted = predictor.predict(trained.model, trained.tokenizer, [s.tokens for s in test], trained.labels,
                                  run_config.max_length, run_config.overlap, run_config.eval_batch_size)
    best = max(clock.points, key=lambda p: p["dev_strict_f1"]) if clock.points else {}
    precision = "" if run_config.precision == "fp32" else f", {run_config.precision}"
    precision += ", word embeddings frozen" if run_config.freeze_word_embeddings else ""
    record = {
        "recipe": f"ours (profile {run_config.profile}, {run_config.method}{precision})",
        "settings": {k: getattr(run_config, k) for k in ("method", "learning_rate", "batch_size", "epochs",
                                                           "lr_scheduler", "warmup_ratio", "weight_decay",
                                                           "label_smoothing", "group_by_length", "lora_r",
                                                           "precision", "freeze_word_embeddings")},
        "wall_seconds": round(trained.train_seconds, 1),
        "cpu_seconds": clock.points[-1]["cpu_seconds"] if clock.points else None, "evaluation_seconds": round(clock.evaluation_seconds(), 1),
        "train_tokens": trained.train_tokens, "epochs_run": epochs,
        "train_tokens_per_second": round(trained.train_tokens * epochs / train_only, 1),
        "dev_curve": clock.points, "best_dev_strict_f1": best.get("dev_strict_f1"), "best_epoch": best.get("epoch"),
        **scored_on_test([s.tags for s in test], predicted),
        "trainable_parameters": trained.trainable_parameters, "total_parameters": trained.total_parameters,
        **memory.record(),
    }
    return record, trained


def train_standard(backbone: str, corpus, run_config: job_settings.RunConfig, work: Path, device: str = "cpu") -> dict:
    on_gpu = GPU_SETTINGS if device == "cuda" else {}
    recipe = standard_recipe.StandardRecipe(epochs=run_config.epochs, max_length=run_config.max_length,
                                            seed=run_config.seed, **on_gpu)
    clock = Clock()
    train = finetune.subset(corpus.train, run_config.max_train_sentences)
    dev = finetune.subset(corpus.devel, run_config.max_eval_sentences)
    test = finetune.subset(corpus.test, run_config.max_eval_sentences)
    with PeakMemory() as memory:
        start = time.perf_counter()
        trainer, tokenizer, features = standard_recipe.train(backbone, train, dev, corpus.labels,
                                                             work / "standard", recipe, clock)
        seconds = time.perf_counter() - start
    tokens = sum(len(f["input_ids"]) for f in features)
    epochs = max((p["epoch"] for p in clock.points), default=0.0)
    predicted = standard_recipe.predict(trainer, tokenizer, test, corpus.labels, recipe)
    record = {
        "recipe": "standard (run_ner.py: full fine-tuning, Trainer defaults)",
        "settings": {"method": "full", "learning_rate": recipe.learning_rate, "batch_size": recipe.batch_size,
                     "epochs": recipe.epochs, "lr_scheduler": "linear", "warmup_ratio": 0.0, "weight_decay": 0.0,
                     "label_smoothing": 0.0, "group_by_length": False, "precision": recipe.precision},
        "wall_seconds": round(seconds, 1),
        "cpu_seconds": clock.points[-1]["cpu_seconds"] if clock.points else None, "evaluation_seconds": round(clock.evaluation_seconds(), 1),
        "train_tokens": tokens, "epochs_run": epochs,
        "train_tokens_per_second": round(tokens * epochs / (seconds - clock.evaluation_seconds()), 1),
        "dev_curve": clock.points, "final_dev_strict_f1": clock.points[-1]["dev_strict_f1"] if clock.points else None,
        **scored_on_test([s.tags for s in test], predicted),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        **memory.record(),
    }
    del trainer
    gc.collect()
    return record


def pipeline_entities(output: list[dict], words: list[str]) -> set[tuple[int, int, str]]:
    """The pipeline's character-offset entity groups as word spans of the space-joined sentence."""
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    spans = set()
    for group in output:
        first = max(i for i, s in enumerate(starts) if s <= group["start"])
        last = max(i for i, s in enumerate(starts) if s < group["end"])
        spans.add((first, last + 1, group["entity_group"]))
    return spans


DEFAULT_PIPELINE = "pipeline (batch_size 1, its default)"


def inference(trained: finetune.FineTuned, run_config: job_settings.RunConfig, sentences, repeats: int) -> dict:
    """Our predictor (LoRA merged) against the token-classification pipeline on the same model and sentences."""
    model = predictor.inference_model(trained.model)
    words = [list(s.tokens) for s in sentences]
    texts = [" ".join(w) for w in words]
    tokens = sum(len(w.input_ids) for w in encoding.encode(words, trained.tokenizer, max_length=run_config.max_length,
                                                          overlap=run_config.overlap))

    def ours():
        return predictor.predict(model, trained.tokenizer, words, trained.labels, run_config.max_length,
                                 run_config.overlap, run_config.eval_batch_size)

    classifier = pipeline("token-classification", model=model, tokenizer=trained.tokenizer,
                          aggregation_strategy="first", device=model.device)
    batched = run_config.eval_batch_size
    runners = {"ours": ours,
               DEFAULT_PIPELINE: lambda: classifier(texts),
               f"pipeline (batch_size {batched})": lambda: classifier(texts, batch_size=batched)}
    results, outputs = {}, {}
    for name, run in runners.items():
        run() if len(sentences) <= 64 else None  # warm-up for tiny inputs only; large inputs warm up themselves
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            outputs[name] = run()
            best = min(best, time.perf_counter() - start)
        results[name] = {"seconds": round(best, 3), "sentences_per_second": round(len(sentences) / best, 1),
                         "tokens_per_second": round(tokens / best, 1)}
    ours_entities = [set(iob.spans_of(tags)) for tags in outputs["ours"]]
    disagreements = []
    for name in runners:
        if name == "ours":
            continue
        theirs = [pipeline_entities(o, w) for o, w in zip(outputs[name], words)]
        differing = [i for i, (a, b) in enumerate(zip(ours_entities, theirs)) if a != b]
        results[name]["sentences_with_other_entities"] = len(differing)
        results[name]["entities"] = sum(len(t) for t in theirs)
        disagreements += [{"runner": name, "sentence": i, "text": texts[i],
                           "only_ours": sorted(ours_entities[i] - theirs[i]),
                           "only_pipeline": sorted(theirs[i] - ours_entities[i])} for i in differing[:20]]
    results["ours"]["entities"] = sum(len(e) for e in ours_entities)
    for name in runners:
        results[name]["speedup_of_ours"] = round(results[name]["seconds"] and results[name]["seconds"]
                                                 / results["ours"]["seconds"], 2)
    return {"sentences": len(sentences), "tokens": tokens, "repeats": repeats, "runners": results,
            "matmul_parameters": matmul_parameters(model), "disagreements": disagreements}


def utilisation(training: dict, inference_record: dict, matmul_params: int, peak: float) -> dict:
    """Achieved FLOP/s (6 x parameters x tokens/s training, 2 x for inference) over the measured peak."""
    rows = {}
    for name in ("ours", "standard"):
        achieved = 6 * matmul_params * training[name]["train_tokens_per_second"]
        rows[f"training, {name}"] = {"flops": achieved, "fraction_of_peak": float(f"{achieved / peak:.3g}")}
    for name, runner in inference_record["runners"].items():
        achieved = 2 * matmul_params * runner["tokens_per_second"]
        rows[f"inference, {name}"] = {"flops": achieved, "fraction_of_peak": float(f"{achieved / peak:.3g}")}
    return {"matmul_peak_flops": peak, "matmul_parameters": matmul_params, "rows": rows,
            "note": "parameters counted without the embedding tables; training FLOPs use 6 x parameters per "
                    "token (for LoRA the weight gradients of frozen matrices are not computed, so this overstates)"}


def low_precision_to_compare(requested: str, device: str, run_config: job_settings.RunConfig) -> str | None:
    """The precision our recipe also trains in, beside its own, for the low-precision training target: `auto`
    means bf16 on a CPU with bf16 units when the recipe trains in fp32 (on a GPU both recipes are bf16
    already), `none` skips it."""
    if requested == "none" or device == "cuda" or run_config.precision != "fp32":
        return None
    if requested == "auto":
        return "bf16" if devices.cpu_units().bf16 else None
    return requested


def low_precision_targets(training: dict) -> dict:
    """Issue 21's training target: our recipe in bf16 reaches the standard recipe's final dev F1 in at most 0.3
    of the standard's wall time, and its test F1 lies in the bootstrap interval of our fp32 run's."""
    low, fp32, standard = training["ours_low_precision"], training["ours"], training["standard"]
    reached = low["time_to_standard_final_dev_f1"]
    fraction = None if reached is None else round(reached / standard["wall_seconds"], 3)
    low_f1, (lower, upper) = low["test"]["strict_f1"], fp32["test_strict_f1_interval"]
    return {"precision": low["settings"]["precision"],
            "tokens_per_second_vs_fp32": round(low["train_tokens_per_second"] / fp32["train_tokens_per_second"], 3),
            "time_to_quality_fraction": fraction,
            "time_to_quality_met": fraction is not None and fraction <= 0.3,
            "test_f1_difference_points": round(100 * (low_f1 - fp32["test"]["strict_f1"]), 2),
            "test_f1_within_fp32_interval": lower <= low_f1 <= upper}


def targets(training: dict, inference_record: dict) -> dict:
    ours, standard = training["ours"], training["standard"]
    reached = ours["time_to_standard_final_dev_f1"]
    runners = inference_record["runners"]
    slowest_pipeline = min((r for n, r in runners.items() if n != "ours"), key=lambda r: r["speedup_of_ours"])
    identical = all(r.get("sentences_with_other_entities", 0) == 0 for r in runners.values())
    return {
        "time_to_quality_fraction": None if reached is None else round(reached / standard["wall_seconds"], 3),
        "time_to_quality_met": reached is not None and reached <= 0.5 * standard["wall_seconds"],
        "cpu_time_to_quality_fraction": None if ours.get("cpu_time_to_standard_final_dev_f1") is None
        or not standard.get("cpu_seconds") else round(ours["cpu_time_to_standard_final_dev_f1"] / standard["cpu_seconds"], 3),
        "test_f1_difference_points": round(100 * (ours["test"]["strict_f1"] - standard["test"]["strict_f1"]), 2),
        "test_f1_met": ours["test"]["strict_f1"] >= standard["test"]["strict_f1"] - 0.005,
        "inference_speedup_vs_each_pipeline": {n: r["speedup_of_ours"] for n, r in runners.items() if n != "ours"},
        "inference_met": runners[DEFAULT_PIPELINE]["speedup_of_ours"] >= 3 and identical,   # the target's peer
        "inference_met_against_every_pipeline": slowest_pipeline["speedup_of_ours"] >= 3 and identical,
        **({"low_precision_training": low_precision_targets(training)} if "ours_low_precision" in training else {}),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ncbi_disease")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--profile", default="cpu-fast", help="our recipe (parameters/profiles/)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of our recipe")
    parser.add_argument("--search-pruned", type=Path, default=None,
                        help="run directory of a finished pruned search (with --search-unpruned; else skipped)")
    parser.add_argument("--search-unpruned", type=Path, default=None,
                        help="run directory of the unpruned search of the same study")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (on a CPU run)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="cuda: both recipes in bf16 with batch 32 (the GPU comparison)")
    parser.add_argument("--low-precision", choices=("auto", "bf16", "none"), default="auto",
                        help="our recipe also trains in this precision (auto: bf16 where the CPU has bf16 units)")
    parser.add_argument("--low-precision-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of the low-precision run only, e.g. freeze_word_embeddings=true")
    parser.add_argument("--options-sentences", type=int, default=320, help="0 skips the training options")
    parser.add_argument("--inference-repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="smoke profile on a (synthetic) corpus directory")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args(argv)
    if bool(args.search_pruned) != bool(args.search_unpruned):
        parser.error("--search-pruned and --search-unpruned go together")
    if args.search_pruned:   # refused now, not after an hour of training
        search_analyses.check_search_directory(args.search_pruned, "--search-pruned")
        search_analyses.check_search_directory(args.search_unpruned, "--search-unpruned")

    device = chosen_device(args.device)
    device_name = devices.device_name()
    torch.set_num_threads(args.threads)
    profile = "smoke" if args.smoke else args.profile
    overrides = {"dataset": args.dataset, "data_dir": args.data_dir,
                 **(GPU_SETTINGS if device == "cuda" else {}), **validation.key_values(args.set)}
    run_config = job_settings.load_run_config(profile, overrides)
    low_precision = low_precision_to_compare(args.low_precision, device, run_config)
    low_config = low_precision and validation.validated(job_settings.RunConfig, {   # refused now, not after an hour
        **run_config.to_dict(), "precision": low_precision,
        **validation.key_values(args.low_precision_set, "--low-precision-set")}, "--low-precision-set")
    corpus = corpora.load(run_config.dataset, run_config.data_dir)
    test = finetune.subset(corpus.test, run_config.max_eval_sentences)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=args.out))
    name = "performance-smoke" if args.smoke else "performance"
    partial = args.out / f"{name}.partial.json"  # each finished section, for a sitting cut short
    record = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "smoke": args.smoke, "dataset": run_config.dataset, "backbone": run_config.backbone,
              "threads": args.threads, "cpu": platform.processor() or platform.machine(),
              "device": device_name, "cpu_count": psutil.cpu_count(),
              "load_average_at_start": list(psutil.getloadavg()),
              "provenance": run_provenance.provenance(run_config, corpus.provenance(), device_name, devices.machine())}
    size = 256 if args.smoke else 8192 if device == "cuda" else 2048
    dtype = torch.bfloat16 if device == "cuda" else torch.float32

    def peak_now() -> float:
        return matmul_peak(size, device=device, dtype=dtype)

    try:
        peak = peak_now()
        record["matmul_peak_flops_at_start"] = peak
        training = {}
        training["ours"], trained = train_ours(run_config, corpus, work)
        training["standard"] = train_standard(run_config.backbone, corpus, run_config, work, device)
        target = training["standard"]["final_dev_strict_f1"]
        training["ours"]["time_to_standard_final_dev_f1"] = time_to_reach(training["ours"]["dev_curve"], target)
        training["ours"]["cpu_time_to_standard_final_dev_f1"] = time_to_reach(training["ours"]["dev_curve"], target,
                                                                              "cpu_seconds")
        if low_config:
            record["low_precision_reason"] = devices.auto_reason()
            atomic_files.write_json(partial, {**record, "training": training})
            low, low_trained = train_ours(low_config, corpus, work)
            del low_trained
            low["time_to_standard_final_dev_f1"] = time_to_reach(low["dev_curve"], target)
            low["cpu_time_to_standard_final_dev_f1"] = time_to_reach(low["dev_curve"], target, "cpu_seconds")
            training["ours_low_precision"] = low
        record["training"] = training
        atomic_files.write_json(partial, record)
        record["inference"] = inference(trained, run_config, test, args.inference_repeats)
        atomic_files.write_json(partial, record)
        record["search"] = search_analyses.compare(args.search_pruned, args.search_unpruned)
        peak = max(peak, peak_now())
        record["utilisation"] = utilisation(training, record["inference"], record["inference"]["matmul_parameters"], peak)
        record["targets"] = targets(training, record["inference"])
        atomic_files.write_json(partial, record)
        if device == "cuda":
            record["training_options"] = []
            record["training_options_skipped"] = "a study of CPU settings: run it with --device cpu"
        elif args.options_sentences:
            sentences = finetune.subset(corpus.train, min(args.options_sentences, len(corpus.train)))
            record["training_options"] = training_options.measure_options(
                run_config.backbone, sentences, corpus.labels, run_config.batch_size, run_config.max_length,
                run_config.overlap, compile_model=not args.smoke)
        record["load_average_at_end"] = list(psutil.getloadavg())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    atomic_files.write_json(args.out / f"{name}.json", record)
    partial.unlink(missing_ok=True)
    figure = plots.performance(record)
    figure.savefig(args.out / f"{name}.png", dpi=120)
    print(json.dumps({"targets": record["targets"], "json": str(args.out / f"{name}.json")}, indent=2))
    return record


if __name__ == "__main__":
    main()
