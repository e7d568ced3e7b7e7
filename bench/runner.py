"""The comparison run: services up, baselines, closed-loop sweep, open loop, results.json.

Order, chosen so that nothing competes with a measurement for the cores:

1. start the local services (or locate them by URL) and wait for ``/readyz``;
2. in-process baselines and the image-size sweep, one framework at a time, in child
   processes, while the services sit idle;
3. the accuracy gate: the test split through every service, one at a time
   (:mod:`bench.served_accuracy`, judged by :mod:`bench.gate`);
4. per service a warm-up, then the closed-loop sweep: ``repeats`` x (every service x every
   level), repeats outermost so that slow drift of a shared machine spreads over all
   services instead of biasing the one measured last; ``/metrics`` scraped around each level;
5. the open-loop run at one Poisson rate for every service;
6. services stopped, numbers summarised, verdicts (:mod:`bench.verdicts`: goodput at the
   p99 SLO, cost, the Pareto front, the headline), results.json + report written.

A service that fails to start or dies is recorded with its exit code and log tail and
skipped from then on; the other services are still measured. Ctrl-C or SIGTERM stops
everything (services included) and still writes what was measured, marked interrupted.

results.json (``schema: versus-bench/1``; a spread is ``{min, median, max, n, values}``)::

    run_id, profile, started_at, finished_at, interrupted, errors[], config{...},
    environment{cpu_model, instance_type (EC2, or null), usable_cores, threads{...},
                packages{...}, git{commit, dirty}, ...},
    dataset, payloads{description, VERSUS_PAYLOAD_*},
    open_loop{rate_rps, auto, fraction_of_lowest_peak, duration_s},
    image_size_sweep{sizes, batch, stage_sizes, frameworks{fw: {by_size{px:
        {ms_per_image_batch1: spread, images_per_s: spread}}}}},
    services{fw: {framework, url, started_by_bench, model_dir, status (ok|died|
        failed-to-start), death{exit_code, signal, log_tail, during}, readyz, manifest,
        warmup{ok, failed},
        runs[{repeat, users, status (ok|unstable|died|failed), stable, stop_reason, wall_s,
              windows[{t, ok, failed, throughput_rps, median_ms}],
              measured{start, end, requests, ok, failed, error_rate, throughput_rps,
                       latency_ms{p50, p90, p95, p99, mean, min, max}, codes},
              server{stages_ms{decode..postprocess}, request_ms{mean, p50, p99},
                     avg_batch_size, batches, requests_by_code, rejected_by_reason},
              loadgen{exit_code, cpu_seconds, cpu_utilisation, saturated},
              service_cpu{utilisation}, files{stats_csv, history_csv, samples, ...}}],
        closed_loop{levels[{users, status, throughput_rps: spread, latency_ms{pNN: spread},
                            stages_ms{stage: spread}, avg_batch_size: spread, ...}],
                    peak{users, throughput_rps, latency_ms, avg_batch_size}},
        in_process{threads, by_batch{b: {images_per_s, ms_per_batch}}, best_batch,
                   best_images_per_s},
        efficiency, open_loop{status, rate_rps, achieved_rps, latency_ms, service_ms,
                              client_wait_ms, server{...}, ...}}},
    accuracy_gate{source, split, images, split_images, task, metric, primary_metric,
                  threshold, skipped, services{fw: {precision, sent_images, failed_images,
                  wall_s, top1, primary, macro_auc, verdict (reference|pass|fail|unjudged),
                  parent, value, parent_value, ratio_to_parent, agreement, reason}}},
    verdicts{slo_p99_ms, price{usd_per_hour, source, instance_type, reason}, headline,
             fastest, rows{fw: {parent, precision, served_images_per_s, accuracy, gate,
             may_win, pareto, goodput{images_per_s, source, p99_ms, reason},
             usd_per_million_images}}},
    training{source, score_metric, accuracy_spread, rows[]},
    parity{provenance[], agreement{atol, pairs{a-b: {max_abs, argmax_agreement,
           same_weights, passed}}, passed}, training_parity}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import aggregate, gate, inprocess, scrape, served_accuracy, verdicts
from bench.config import BenchConfig
from bench.environment import collect_environment
from bench.load import openloop
from bench.load.locust_runner import LevelPlan, LocustSetup, run_level
from bench.load.payloads import LOADTEST_URL_VARIABLE, Payloads, load_payloads
from bench.proctree import tree_cpu_seconds
from bench.report.training_info import parity_section, training_table
from bench.services import (
    Service,
    ServiceError,
    ServicePool,
    datasets_under,
    latest_model_dirs,
    start_service,
)
from shared.processes import usable_cpu_ids
from shared.runtimes import runtimes

SCHEMA = "versus-bench/1"
RESULTS_FILE = "results.json"
Log = Callable[[str], None]


@dataclass
class Hooks:
    """Test seams: called at fixed points of a run (all optional)."""

    before_level: Callable[[Service, int, int], None] | None = None
    """(service, repeat, users), just before a closed-loop level starts."""


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def choose_dataset(cfg: BenchConfig) -> str | None:
    """``--dataset``, else the only dataset under ``--models`` (error when ambiguous)."""
    if cfg.dataset or all(fw in cfg.urls for fw in cfg.frameworks):
        return cfg.dataset
    found = datasets_under(cfg.models)
    if len(found) != 1:
        raise ServiceError(f"pass --dataset: {cfg.models} holds {found or 'no datasets'}")
    return found[0]


def locust_setup(cfg: BenchConfig) -> LocustSetup:
    """The locustfile's own contract: a framework's tag selects its user class, its URL
    comes from ``VERSUS_<FRAMEWORK>_URL``, payloads from ``VERSUS_PAYLOAD_*``."""
    return LocustSetup(locustfile=cfg.locustfile,
                       selection=lambda framework: ["--tags", framework],
                       env=cfg.payload.env(),
                       url_variable=LOADTEST_URL_VARIABLE,
                       cpus=cfg.loadgen_cpus)


class Run:
    """State of one bench run (see the module doc for the order of events)."""

    def __init__(self, cfg: BenchConfig, report_dir: Path, hooks: Hooks, log: Log) -> None:
        self.cfg, self.dir, self.hooks, self.log = cfg, report_dir, hooks, log
        self.records: dict[str, dict[str, Any]] = {}
        self.services: dict[str, Service] = {}
        cores = usable_cpu_ids()
        service_cores = [c for c in cores if c not in (cfg.loadgen_cpus or ())] or cores
        pinned = tuple(service_cores) if cfg.loadgen_cpus else None
        self.service_settings = cfg.service.resolved(len(service_cores))
        if pinned:
            self.service_settings = replace(self.service_settings, cpus=pinned)

    # ------------------------------------------------------------------ services

    def start_services(self, pool: ServicePool, dirs: dict[str, Path]) -> None:
        cfg = self.cfg
        for framework in cfg.frameworks:
            if framework in cfg.urls:
                service = Service(framework, cfg.urls[framework].rstrip("/"))
            else:
                service = start_service(framework, dirs[framework], self.dir / "logs",
                                        self.service_settings)
            pool.add(service)
            self.records[framework] = {"framework": framework, "url": service.url,
                                       "started_by_bench": service.local,
                                       "model_dir": str(service.model_dir or ""),
                                       "status": "starting", "runs": []}
        deadline = time.monotonic() + cfg.ready_timeout_s
        for framework, service in pool.services.items():
            record = self.records[framework]
            try:
                service.wait_ready(max(1.0, deadline - time.monotonic()))
            except ServiceError as exc:
                record.update(status="failed-to-start", error=str(exc).splitlines()[0],
                              death=service.death())
                self.log(f"{framework}: {str(exc).splitlines()[0]}")
                continue
            record.update(status="ok", readyz=service.readyz, manifest=service.manifest)
            self.services[framework] = service
            self.log(f"{framework}: ready at {service.url}")

    def alive(self) -> list[Service]:
        return [s for fw, s in self.services.items() if not self.records[fw].get("death")]

    def mark_dead(self, service: Service, death: dict[str, Any], where: dict[str, Any]
                  ) -> None:
        record = self.records[service.framework]
        if not record.get("death"):
            record["death"] = {**death, "during": where}
            self.log(f"{service.framework}: DIED during {where} (exit code "
                     f"{death.get('exit_code')})")

    # ------------------------------------------------------------------ in-process

    def in_process(self, payloads: Payloads) -> None:
        cfg = self.cfg
        threads = self.service_settings.intra_op_threads or 1
        logs = self.dir / "logs"
        for framework, service in self.services.items():
            record = self.records[framework]
            if service.model_dir is None:
                record["in_process"] = {"skipped": "external service: model files not local"}
                continue
            inputs = inprocess.preprocess_payloads(
                payloads.images, service.manifest, self.dir / "work" / f"inputs-{framework}.npy")
            self.log(f"{framework}: in-process baseline ({threads} threads)")
            try:
                record["in_process"] = inprocess.run_child(
                    ["baseline", "--framework", framework, "--model", str(service.model_dir),
                     "--inputs", str(inputs), "--threads", str(threads),
                     "--batch-sizes", ",".join(map(str, cfg.inprocess_batch_sizes)),
                     "--repeats", str(cfg.inprocess_repeats),
                     "--min-time-s", str(cfg.inprocess_min_time_s)],
                    logs / f"inprocess-{framework}.log", cpus=self.service_settings.cpus)
            except inprocess.ChildError as exc:
                record["in_process"] = {"error": str(exc)}

    def size_sweep(self) -> dict[str, Any]:
        """Random-init models of the served architecture at every size, base rows only: the
        sweep asks what input size costs each runtime, and a variant's random-weight int8
        model would need quantising at every size (its speed-up shows in the in-process,
        served and verdict tables)."""
        cfg = self.cfg
        table = runtimes()
        swept = {fw: s for fw, s in self.services.items()
                 if not (fw in table and table[fw].is_variant)}
        if not cfg.image_sizes or not swept:
            return {}
        first = next(iter(swept.values()))
        manifest_dir = self.dir / "work" / "manifest"
        manifest_dir.mkdir(parents=True, exist_ok=True)
        (manifest_dir / "manifest.json").write_text(json.dumps(first.manifest))
        cache = cfg.cache or (cfg.out / ".cache")
        sizes = ",".join(map(str, cfg.image_sizes))
        threads = str(self.service_settings.intra_op_threads or 1)
        common = ["--model", str(manifest_dir), "--sizes", sizes, "--cache", str(cache)]
        logs = self.dir / "logs"
        self.log(f"image-size sweep {sizes} px: building random-init artifacts (cached)")
        try:
            built = inprocess.run_child(
                ["build", *common, "--frameworks", ",".join(swept)],
                logs / "sizes-build.log")
        except inprocess.ChildError as exc:
            return {"error": str(exc)}
        result: dict[str, Any] = {"sizes": list(cfg.image_sizes), "batch": cfg.size_batch,
                                  "stage_sizes": built["stage_sizes"], "frameworks": {}}
        for framework in swept:
            self.log(f"{framework}: image-size sweep")
            try:
                result["frameworks"][framework] = inprocess.run_child(
                    ["sizes", "--framework", framework, *common, "--threads", threads,
                     "--batch", str(cfg.size_batch), "--repeats", str(cfg.inprocess_repeats),
                     "--min-time-s", str(cfg.inprocess_min_time_s)],
                    logs / f"sizes-{framework}.log", cpus=self.service_settings.cpus)
            except inprocess.ChildError as exc:
                result["frameworks"][framework] = {"error": str(exc)}
        return result

    # ------------------------------------------------------------------ accuracy gate

    def accuracy_gate(self, test: served_accuracy.TestSet, dataset: str) -> dict[str, Any]:
        """The test split through every live service, scored and judged (see bench.gate)."""
        from shared.datasets import get_dataset_spec

        spec = get_dataset_spec(dataset)
        scores: dict[str, dict[str, Any]] = {}
        answers = {}
        for service in self.alive():
            self.log(f"{service.framework}: accuracy gate, {len(test)} test images")
            started = time.monotonic()
            class_names = service.manifest["class_names"]
            probs, missing = served_accuracy.classify(service.url, test.images, class_names,
                                                      self.cfg.eval_concurrency)
            answered = np.setdiff1d(np.arange(len(test)), missing)
            own: dict[str, Any] = {"top1": None, "primary": None, "macro_auc": None}
            if len(answered):
                own = gate.score(spec.task, test.labels[answered], probs[answered],
                                 class_names, spec.primary_metric)
            scores[service.framework] = {
                **own, "precision": (service.readyz.get("model") or {}).get("precision"),
                "sent_images": len(test), "failed_images": len(missing),
                "wall_s": round(time.monotonic() - started, 2)}
            answers[service.framework] = probs
        table = runtimes()
        parents = {fw: table[fw].variant_of if fw in table else "" for fw in scores}
        judged = gate.judge_all(scores, parents, answers, spec.task, spec.primary_metric)
        return {**test.describe(), "task": spec.task,
                "metric": gate.gate_metric(spec.task, spec.primary_metric),
                "primary_metric": spec.primary_metric, "threshold": gate.GATE_RATIO,
                "services": {fw: {**scores[fw], **judged[fw]} for fw in scores}}

    # ------------------------------------------------------------------ load

    def measure_level(self, service: Service, repeat: int, users: int,
                      setup: LocustSetup) -> None:
        cfg = self.cfg
        plan = LevelPlan(users=users, window_s=cfg.window_s, stable_windows=cfg.stable_windows,
                         tolerance=cfg.tolerance, warmup_s=cfg.level_warmup_s,
                         max_s=cfg.level_max_s)
        if self.hooks.before_level:
            self.hooks.before_level(service, repeat, users)
        before = _try_scrape(service)
        process = service.process
        probe = (lambda: tree_cpu_seconds(process.pid)) if process is not None else None
        out_dir = self.dir / "locust" / service.framework
        run = run_level(service.framework, service.url, plan, setup, out_dir,
                        f"r{repeat}-u{users}", service.death, probe)
        after = _try_scrape(service)
        run["repeat"] = repeat
        run["server"] = (scrape.server_delta(before, after)
                         if before is not None and after is not None else None)
        run["files"] = {k: _relative(v, self.dir) for k, v in run["files"].items()}
        if run["status"] == "died" or (after is None and service.death()):
            run["status"] = "died"
            self.mark_dead(service, run.get("death") or service.death() or {},
                           {"phase": "closed-loop", "repeat": repeat, "users": users})
        self.records[service.framework]["runs"].append(run)
        measured = run.get("measured") or {}
        self.log(f"{service.framework} r{repeat} u{users}: {run['status']}, "
                 f"{measured.get('throughput_rps', 0):.1f} req/s, "
                 f"p99 {((measured.get('latency_ms') or {}).get('p99') or 0):.1f} ms")

    def sweep(self, payloads: Payloads) -> None:
        cfg = self.cfg
        setup = locust_setup(cfg)
        for service in self.alive():
            sent = payloads.for_service(service.framework, service.manifest)
            counts = openloop.warm_up(service.url, sent.payloads, cfg.service_warmup_s,
                                      cfg.warmup_users, sent.path)
            self.records[service.framework]["warmup"] = counts
        for repeat in range(cfg.repeats):
            for service in self.alive():
                for users in cfg.levels:
                    if self.records[service.framework].get("death"):
                        break
                    self.measure_level(service, repeat, users, setup)

    def open_loop_rate(self) -> float | None:
        cfg = self.cfg
        if cfg.open_loop_rate:
            return cfg.open_loop_rate
        peaks = []
        for framework, record in self.records.items():
            if record.get("death") or framework not in self.services:
                continue
            peak = aggregate.summarise_closed_loop(record["runs"], cfg.levels)["peak"]
            if peak:
                peaks.append(peak["throughput_rps"]["median"])
        return cfg.open_loop_fraction * min(peaks) if peaks else None

    def open_loop(self, payloads: Payloads) -> dict[str, Any]:
        cfg = self.cfg
        rate = self.open_loop_rate()
        if not cfg.open_loop or rate is None or rate <= 0:
            return {"skipped": "disabled" if not cfg.open_loop else "no peak throughput"}
        plan = openloop.OpenLoopPlan(rate_rps=rate, duration_s=cfg.open_loop_duration_s,
                                     warmup_s=cfg.open_loop_warmup_s,
                                     max_connections=cfg.open_loop_connections, seed=cfg.seed)
        for service in self.alive():
            self.log(f"{service.framework}: open loop at {rate:.2f} req/s (Poisson)")
            before = _try_scrape(service)
            sent = payloads.for_service(service.framework, service.manifest)
            result = openloop.run_open_loop(service.url, sent.payloads, plan, service.death,
                                            sent.path)
            after = _try_scrape(service)
            result["server"] = (scrape.server_delta(before, after)
                                if before is not None and after is not None else None)
            if result["status"] == "died":
                self.mark_dead(service, result.get("death") or {}, {"phase": "open-loop"})
            self.records[service.framework]["open_loop"] = result
        return {"rate_rps": rate, "auto": not cfg.open_loop_rate,
                "fraction_of_lowest_peak": None if cfg.open_loop_rate else
                cfg.open_loop_fraction, "duration_s": cfg.open_loop_duration_s}


def _try_scrape(service: Service) -> scrape.Snapshot | None:
    try:
        return scrape.scrape(service.url)
    except (OSError, ValueError):
        return None


def _relative(path: str, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return path


def locate_models(cfg: BenchConfig) -> tuple[str | None, dict[str, Path]]:
    """The dataset and the model directory of every service to start (ServiceError, before
    anything is started or written, when they cannot be found)."""
    dataset = choose_dataset(cfg)
    local = [fw for fw in cfg.frameworks if fw not in cfg.urls]
    dirs = latest_model_dirs(cfg.models, dataset, local, cfg.version) if local else {}
    return dataset, dirs


def eval_source(cfg: BenchConfig) -> Path | None:
    """``--eval-data``, else the payload source when that is a labelled dataset."""
    if cfg.eval_data is not None:
        return Path(cfg.eval_data)
    source = cfg.payload.source
    return Path(source) if source and served_accuracy.is_dataset(Path(source)) else None


def load_test_set(cfg: BenchConfig, dataset: str | None
                  ) -> tuple[served_accuracy.TestSet | None, str | None]:
    """(the accuracy gate's test split, None) or (None, why the gate is skipped); an
    unreadable ``--eval-data`` raises EvalDataError (a ValueError) before anything starts."""
    source = eval_source(cfg)
    if not cfg.accuracy_gate:
        return None, "disabled (--no-accuracy-gate)"
    if source is None:
        return None, ("no labelled test split: pass --eval-data (a MedMNIST .npz or a DR "
                      "directory) or a dataset as --payload-dir")
    if dataset is None:
        return None, "pass --dataset: the test split's labels need the dataset's name"
    return served_accuracy.load_test_split(dataset, source, cfg.eval_max_images,
                                           cfg.seed), None


def run_bench(cfg: BenchConfig, *, hooks: Hooks | None = None, log: Log = print) -> Path:
    """Run everything ``cfg`` asks for; returns the report directory (results.json inside).
    Raises ServiceError when the models to serve cannot be found, EvalDataError (a
    ValueError) when ``--eval-data`` is no labelled dataset; both before anything starts."""
    dataset, model_dirs = locate_models(cfg)
    test_set, gate_skipped = load_test_set(cfg, dataset)
    run_id = cfg.run_id or new_run_id()
    report_dir = Path(cfg.out) / run_id
    report_dir.mkdir(parents=True, exist_ok=True)
    run = Run(cfg, report_dir, hooks or Hooks(), log)
    results: dict[str, Any] = {
        "schema": SCHEMA, "run_id": run_id, "profile": cfg.profile,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": cfg.to_json(), "interrupted": False, "errors": [],
        "accuracy_gate": {"skipped": gate_skipped or "not reached"},
    }
    results["environment"] = collect_environment({
        "workers": run.service_settings.workers,
        "intra_op_threads_per_worker": run.service_settings.intra_op_threads,
        "http_threads_per_worker": run.service_settings.http_threads,
        "service_cpus": list(run.service_settings.cpus or []) or None,
        "loadgen_cpus": list(cfg.loadgen_cpus or []) or None,
    })
    probabilities: dict[str, Any] = {}
    results["dataset"] = dataset
    try:
        payloads = load_payloads(cfg.payload)
        results["payloads"] = {"description": payloads.description, **cfg.payload.env()}
        log(f"payloads: {payloads.description}")
        with ServicePool() as pool:
            run.start_services(pool, model_dirs)
            results["dataset"] = dataset or next(
                (s.manifest.get("dataset") for s in run.services.values()), None)
            if cfg.inprocess:
                run.in_process(payloads)
                results["image_size_sweep"] = run.size_sweep()
            if test_set is not None and dataset is not None:
                results["accuracy_gate"] = run.accuracy_gate(test_set, dataset)
            run.sweep(payloads)
            results["open_loop"] = run.open_loop(payloads)
            results["service_exit_codes"] = pool.stop_all()
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, or SIGTERM via ServicePool
        results["interrupted"] = type(exc).__name__
        log("interrupted: writing what was measured")
    except ServiceError as exc:
        results["errors"].append(str(exc))
        log(f"error: {exc}")
    finally:
        for framework, record in run.records.items():
            aggregate.summarise_service(record, cfg.levels)
            probs = (record.get("in_process") or {}).pop("probabilities", None)
            if probs is not None:
                probabilities[framework] = probs
        manifests = {fw: r["manifest"] for fw, r in run.records.items() if r.get("manifest")}
        version = next((Path(r["model_dir"]).name for r in run.records.values()
                        if r.get("model_dir")), cfg.version)
        results["services"] = run.records
        results["training"] = training_table(manifests, models=cfg.models, dataset=dataset,
                                             version=version, explicit=cfg.training_table)
        results["parity"] = parity_section(manifests, probabilities, cfg.parity)
        results["verdicts"] = verdicts.verdicts(results)
        results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        (report_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2,
                                                          allow_nan=False) + "\n")
    return report_dir
