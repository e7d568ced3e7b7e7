"""The report's tables, built once from results.json and rendered as Markdown, HTML or text.

Every timing cell shows its spread over repeats as ``median [min–max]`` (just the value when
there was one repeat). A service that died shows "DIED" in its status and "died" in every
cell that would otherwise hold a number: a dead service must never read as a fast one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.scrape import STAGES
from bench.stats import PERCENTILES
from bench.verdicts import verdicts

MISSING = "—"
DIED = "died"
BYTES_PER_MB = 1e6


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    row_classes: list[str] = field(default_factory=list)
    """A CSS class per row ("died", "warn" or "")."""
    note: str = ""
    left: tuple[int, ...] = (0,)
    """Columns holding text (left-aligned); the others hold numbers."""

    def add(self, cells: Sequence[Any], css: str = "") -> None:
        self.rows.append([str(c) for c in cells])
        self.row_classes.append(css)


def fmt_number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return MISSING
    return f"{value:,.{digits}f}"


def fmt_spread(s: Mapping[str, Any] | None, digits: int = 1) -> str:
    """``median [min–max]`` (or the single value)."""
    if not s:
        return MISSING
    if s.get("n", 1) <= 1 or s["min"] == s["max"]:
        return fmt_number(s["median"], digits)
    return (f"{fmt_number(s['median'], digits)} "
            f"[{fmt_number(s['min'], digits)}–{fmt_number(s['max'], digits)}]")


def fmt_percent(value: float | None, digits: int = 1) -> str:
    return MISSING if value is None else f"{100 * value:.{digits}f} %"


def death_text(record: Mapping[str, Any]) -> str:
    death = record.get("death") or {}
    during = death.get("during") or {}
    where = ", ".join(f"{k} {v}" for k, v in during.items())
    code = death.get("exit_code")
    return f"DIED (exit code {code}{'; ' + where if where else ''})"


def every_level_failed(record: Mapping[str, Any]) -> bool:
    """A live service none of whose load levels got a single good answer (e.g. every
    response failed the load test's checks): it must not read as ``ok``."""
    runs = record.get("runs") or []
    return bool(runs) and all(run.get("status") == "failed" for run in runs)


def status_text(record: Mapping[str, Any]) -> str:
    status = record.get("status", "?")
    if status == "died":
        return death_text(record)
    if status == "failed-to-start":
        return f"FAILED TO START: {record.get('error', '')}"
    if every_level_failed(record):
        return "FAILED (no load level got a good answer)"
    return status


def _css(status: str) -> str:
    return {"died": "died", "failed-to-start": "died", "failed": "died",
            "unstable": "warn"}.get(status, "")


def services(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(results.get("services") or {})


# ---------------------------------------------------------------------- tables


def summary_table(results: Mapping[str, Any]) -> Table:
    t = Table("Summary", ["framework", "status", "peak req/s", "at users", "p99 ms at peak",
                          "avg batch at peak", "in-process img/s (batch)", "efficiency",
                          "open-loop p99 ms"],
              note="Peak = highest median throughput over the concurrency levels; spreads "
                   "are median [min–max] over repeats; efficiency = served peak / best "
                   "in-process throughput.", left=(0, 1))
    for name, record in services(results).items():
        peak = (record.get("closed_loop") or {}).get("peak")
        ip = record.get("in_process") or {}
        best = (f"{fmt_spread(ip['best_images_per_s'])} ({ip['best_batch']})"
                if ip.get("best_images_per_s") else MISSING)
        ol = record.get("open_loop") or {}
        ol_p99 = fmt_number((ol.get("latency_ms") or {}).get("p99"))
        if record.get("status") in ("died", "failed-to-start"):
            t.add([name, status_text(record), DIED, MISSING, DIED, MISSING, best, DIED,
                   DIED if record.get("status") == "died" else MISSING], "died")
            continue
        if ol and ol.get("status") not in ("ok", None):
            ol_p99 = f"{ol_p99} ({ol['status']})"
        t.add([name, status_text(record),
               fmt_spread(peak["throughput_rps"]) if peak else MISSING,
               peak["users"] if peak else MISSING,
               fmt_spread(peak["latency_ms"]["p99"]) if peak else MISSING,
               fmt_spread(peak["avg_batch_size"], 2) if peak else MISSING,
               best,
               fmt_number(record.get("efficiency"), 2),
               ol_p99], _css("failed" if every_level_failed(record)
                             else record.get("status", "")))
    return t


def closed_loop_table(results: Mapping[str, Any]) -> Table:
    headers = ["framework", "users", "status", "req/s", *(f"p{q} ms" for q in PERCENTILES),
               "errors", "avg batch", "loadgen CPU", "service CPU"]
    t = Table("Closed loop: throughput and latency per concurrency level", headers,
              note="Locust users with no think time; each level measured over its stable "
                   "windows (perf_analyzer-style: consecutive windows within the tolerance); "
                   "CPU in cores (1.0 = one core busy).", left=(0, 2))
    for name, record in services(results).items():
        for level in (record.get("closed_loop") or {}).get("levels", []):
            status = level["status"]
            if status in ("died", "failed"):
                t.add([name, level["users"], status.upper(), status,
                       *([status] * len(PERCENTILES)), MISSING, MISSING, MISSING, MISSING],
                      "died")
                continue
            err = level.get("error_rate")
            t.add([name, level["users"], status, fmt_spread(level["throughput_rps"]),
                   *(fmt_spread(level["latency_ms"].get(f"p{q}")) for q in PERCENTILES),
                   fmt_percent(err["max"], 2) if err else MISSING,
                   fmt_spread(level.get("avg_batch_size"), 2),
                   fmt_spread(level.get("loadgen_cpu"), 2)
                   + (" (saturated)" if level.get("loadgen_saturated") else ""),
                   fmt_spread(level.get("service_cpu"), 2)], _css(status))
    return t


def stage_table(results: Mapping[str, Any]) -> Table:
    t = Table("Server-side time per request by stage (ms, from /metrics)",
              ["framework", "users", *STAGES, "server total", "client p50"],
              note="Means per request over each level (delta of the Prometheus histograms "
                   "scraped before and after it), spread over repeats. Client p50 minus "
                   "server total is HTTP, network and load-generator time.")
    for name, record in services(results).items():
        for level in (record.get("closed_loop") or {}).get("levels", []):
            if level["status"] in ("died", "failed"):
                t.add([name, level["users"], *([level["status"]] * (len(STAGES) + 2))],
                      "died")
                continue
            stages = level.get("stages_ms") or {}
            t.add([name, level["users"], *(fmt_spread(stages.get(s), 2) for s in STAGES),
                   fmt_spread(level.get("server_request_ms"), 2),
                   fmt_spread(level["latency_ms"].get("p50"), 2)], _css(level["status"]))
    return t


def open_loop_table(results: Mapping[str, Any]) -> Table:
    info = results.get("open_loop") or {}
    rate = info.get("rate_rps")
    note = ("Poisson arrivals (open loop, MLPerf Server-style); latency from each request's "
            "scheduled arrival, so client-side waiting counts.")
    if rate:
        how = (f"{100 * info['fraction_of_lowest_peak']:.0f} % of the lowest peak"
               if info.get("auto") else "set with --open-loop-rate")
        note += f" Target rate {rate:.2f} req/s ({how})."
    elif info.get("skipped"):
        note += f" Skipped: {info['skipped']}."
    t = Table("Open loop: latency at a fixed request rate",
              ["framework", "status", "target req/s", "achieved req/s",
               *(f"p{q} ms" for q in PERCENTILES), "errors", "client wait p99 ms",
               "avg batch"], note=note, left=(0, 1))
    for name, record in services(results).items():
        ol = record.get("open_loop")
        if not ol:
            continue
        if ol["status"] == "died":
            t.add([name, "DIED", fmt_number(ol["rate_rps"], 2), DIED,
                   *([DIED] * len(PERCENTILES)), MISSING, MISSING, MISSING], "died")
            continue
        lat = ol.get("latency_ms") or {}
        server = ol.get("server") or {}
        t.add([name, ol["status"], fmt_number(ol["rate_rps"], 2),
               fmt_number(ol.get("achieved_rps"), 2),
               *(fmt_number(lat.get(f"p{q}")) for q in PERCENTILES),
               fmt_percent(ol.get("error_rate"), 2),
               fmt_number((ol.get("client_wait_ms") or {}).get("p99")),
               fmt_number(server.get("avg_batch_size"), 2)],
              "" if ol["status"] == "ok" else "warn")
    return t


def in_process_table(results: Mapping[str, Any]) -> Table:
    batches = sorted({int(b) for r in services(results).values()
                      for b in ((r.get("in_process") or {}).get("by_batch") or {})})
    t = Table("In-process baseline: images/s by batch size (no HTTP)",
              ["framework", "threads", *(f"batch {b}" for b in batches), "best batch",
               "served peak", "efficiency"],
              note="The served model's predictor on the same preprocessed payload images, "
                   "in a child process with the services' intra-op threads.")
    for name, record in services(results).items():
        ip = record.get("in_process") or {}
        if not ip.get("by_batch"):
            reason = ip.get("skipped") or ip.get("error", MISSING).splitlines()[0] if ip else \
                MISSING
            t.add([name, MISSING, *([MISSING] * len(batches)), reason, MISSING, MISSING])
            continue
        peak = (record.get("closed_loop") or {}).get("peak")
        died = record.get("status") == "died"
        t.add([name, ip.get("threads", MISSING),
               *(fmt_spread((ip["by_batch"].get(str(b)) or {}).get("images_per_s"))
                 for b in batches),
               ip["best_batch"],
               DIED if died else (fmt_spread(peak["throughput_rps"]) if peak else MISSING),
               DIED if died else fmt_number(record.get("efficiency"), 2)],
              "died" if died else "")
    return t


def image_size_tables(results: Mapping[str, Any]) -> tuple[Table, Table]:
    """(ms per image at batch 1, images/s at the sweep's batch) by input size."""
    sweep = results.get("image_size_sweep") or {}
    sizes = sweep.get("sizes", [])
    batch = sweep.get("batch")
    note = ("Randomly initialised model of the served architecture (stage sizes "
            f"{sweep.get('stage_sizes')}), built at each size, in-process." if sizes else
            sweep.get("error", "not run"))
    latency = Table("Image-size sweep: ms per image at batch 1",
                    ["framework", *(f"{s} px" for s in sizes)], note=note)
    throughput = Table(f"Image-size sweep: images/s at batch {batch}",
                       ["framework", *(f"{s} px" for s in sizes)])
    for name, result in (sweep.get("frameworks") or {}).items():
        by_size = result.get("by_size") or {}
        if not by_size:
            error = (result.get("error") or MISSING).splitlines()[0]
            latency.add([name, *([error] * len(sizes))], "died")
            throughput.add([name, *([error] * len(sizes))], "died")
            continue
        latency.add([name, *(fmt_spread((by_size.get(str(s)) or {}).get(
            "ms_per_image_batch1"), 2) for s in sizes)])
        throughput.add([name, *(fmt_spread((by_size.get(str(s)) or {}).get("images_per_s"))
                                for s in sizes)])
    return latency, throughput


ACCURACY_HEADERS = {"accuracy": "accuracy", "subset_accuracy": "exact match"}
"""The training table's accuracy column: exact match (all findings right) for multilabel."""


def training_table(results: Mapping[str, Any]) -> Table:
    training = results.get("training") or {}
    score = training.get("score_metric") or "score"
    accuracy = ACCURACY_HEADERS.get(training.get("accuracy_metric") or "accuracy", "accuracy")
    t = Table("Training", ["framework", accuracy, "macro-F1", score, "s/epoch",
                           "train img/s", "params", "MB"],
              note=f"Source: {training.get('source') or 'none found'}."
              + (f" Test-{accuracy} spread across frameworks: "
                 f"{100 * training['accuracy_spread']:.1f} points."
                 if training.get("accuracy_spread") is not None else "")
              + (f" {score} spread: {training['score_spread']:.4f}."
                 if training.get("score_spread") is not None else ""))
    for row in training.get("rows", []):
        params = row.get("parameter_count")
        t.add([row.get("framework"), fmt_number(row.get("accuracy"), 4),
               fmt_number(row.get("macro_f1"), 4), fmt_number(row.get("score"), 4),
               fmt_number(row.get("seconds_per_epoch"), 1),
               fmt_number(row.get("images_per_second"), 1),
               MISSING if params is None else f"{params:,}",
               fmt_number(row.get("size_mb"), 1)])
    return t


def training_findings_table(results: Mapping[str, Any]) -> Table | None:
    """multilabel: each finding's test ROC AUC (rows) by framework (columns); None when the
    training rows carry no per-finding AUCs (a multiclass dataset)."""
    rows = [r for r in (results.get("training") or {}).get("rows", []) if r.get("auc_per_class")]
    if not rows:
        return None
    findings = list(dict.fromkeys(name for r in rows for name in r["auc_per_class"]))
    t = Table("Per-finding test ROC AUC", ["finding", *(r.get("framework") for r in rows)],
              note="Each finding's ROC AUC on the test split; the last row is their mean, "
                   "the headline metric of a multilabel dataset.")
    for name in findings:
        t.add([name, *(fmt_number(r["auc_per_class"].get(name), 4) for r in rows)])
    t.add(["mean AUC", *(fmt_number(r.get("score"), 4) for r in rows)])
    return t


def parity_table(results: Mapping[str, Any]) -> Table:
    parity = results.get("parity") or {}
    agreement = parity.get("agreement") or {}
    notes = []
    for check in parity.get("provenance", []):
        verdict = "matches" if check["matches"] else "DOES NOT MATCH"
        notes.append(f"{check['framework']} exported from {check['exported_from']} "
                     f"(source sha256 {str(check['source_sha256'])[:12]}): {verdict} the "
                     f"served {check['exported_from']} model.")
    report = parity.get("training_parity")
    if report:
        notes.append(f"training.parity: max-abs {report.get('max_abs', 0):.3g}, "
                     f"{'PASS' if report.get('passed') else 'FAIL'} "
                     f"(atol {report.get('atol')}).")
    t = Table("Parity of the served models",
              ["pair", "max-abs prob diff", "argmax agreement", "same weights", "verdict"],
              left=(0, 3, 4),
              note=" ".join(notes) + (f" Outputs of {agreement.get('images')} payload images "
                                      f"through every served artifact; pairs sharing weights "
                                      f"must agree within {agreement.get('atol')}."
                                      if agreement else ""))
    for pair, p in (agreement.get("pairs") or {}).items():
        verdict = {True: "PASS", False: "FAIL", None: "trained separately"}[p["passed"]]
        t.add([pair, f"{p['max_abs']:.3g}", fmt_percent(p["argmax_agreement"], 0),
               p["same_weights"] or "no", verdict], "died" if p["passed"] is False else "")
    return t


def verdicts_of(results: Mapping[str, Any]) -> dict[str, Any]:
    """The run's ``verdicts``, or computed now for a results.json written before them."""
    return dict(results.get("verdicts") or verdicts(results))


SPEED_AND_ACCURACY_NOTE = (
    "Speed is measured on the model this run served; the accuracy of a randomly initialised "
    "model means nothing, so the gate is meaningful only on trained models (the ones "
    "make demo trains).")


def random_init(results: Mapping[str, Any]) -> list[str]:
    """The services whose model's manifest says it was never trained."""
    return [name for name, record in services(results).items()
            if ((record.get("manifest") or {}).get("training") or {}).get("init") == "random"]


def accuracy_gate_table(results: Mapping[str, Any]) -> Table:
    info = results.get("accuracy_gate") or {}
    metric = info.get("metric") or "accuracy"
    primary = info.get("primary_metric") or "main metric"
    if info.get("services"):
        note = (f"{info.get('images')} test images of {info.get('source')} "
                f"({info.get('split_images')} in the split) sent once through each running "
                f"service (its own decode and preprocessing). A variant passes when its "
                f"{metric} is at least {100 * info.get('threshold', 0.99):.0f} % of its fp32 "
                f"parent's; agreement = share of test images answered as the parent does. "
                f"A variant that fails (or could not be judged) is shown, never ranked. ")
    else:
        note = f"Not run: {info.get('skipped') or 'no record'}. "
    note += SPEED_AND_ACCURACY_NOTE
    untrained = random_init(results)
    if untrained:
        note += (f" The models of {', '.join(untrained)} are randomly initialised: their "
                 f"accuracy and verdicts here mean nothing.")
    t = Table("Accuracy gate: the test split through the served path",
              ["framework", "parent", "precision", "top-1", primary, "macro AUC",
               "agreement with parent", f"{metric} / parent", "gate", "why"],
              note=note, left=(0, 1, 2, 8, 9))
    for name, g in (info.get("services") or {}).items():
        verdict = g.get("verdict", "?")
        t.add([name, g.get("parent") or MISSING, g.get("precision") or MISSING,
               fmt_number(g.get("top1"), 4), fmt_number(g.get("primary"), 4),
               fmt_number(g.get("macro_auc"), 4), fmt_percent(g.get("agreement")),
               fmt_percent(g.get("ratio_to_parent")),
               verdict.upper() if verdict in ("fail", "unjudged") else verdict,
               g.get("reason") or ""],
              {"fail": "died", "unjudged": "warn"}.get(verdict, ""))
    return t


def goodput_table(results: Mapping[str, Any]) -> Table:
    v = verdicts_of(results)
    slo = v.get("slo_p99_ms")
    price = v.get("price") or {}
    cost_note = (f"Cost at {price['usd_per_hour']:g} USD/hour ({price.get('source')}), at "
                 f"the goodput." if price.get("usd_per_hour") is not None else
                 f"No cost: {price.get('reason')}.")
    t = Table(f"Goodput at p99 <= {slo:g} ms and cost",
              ["framework", "gate", "served img/s (peak)", "goodput img/s", "measured at",
               "p99 ms there", "USD per million images", "Pareto front"],
              note=("Served img/s = peak median closed-loop throughput (one image per "
                    "request). Goodput = the highest measured throughput whose p99 stays "
                    f"within {slo:g} ms (--slo-p99-ms), over the closed-loop levels (medians "
                    "over repeats) and the open-loop run. " + cost_note +
                    " Pareto front: no runtime that may be ranked is both faster and more "
                    "accurate."), left=(0, 1, 4, 7))
    for name, row in (v.get("rows") or {}).items():
        good = row.get("goodput") or {}
        gate = row.get("gate") or MISSING
        t.add([name, gate.upper() if gate in ("fail", "unjudged") else gate,
               fmt_number(row.get("served_images_per_s")),
               fmt_number(good.get("images_per_s")) if good.get("images_per_s") else MISSING,
               good.get("source") or good.get("reason") or MISSING,
               fmt_number(good.get("p99_ms")),
               fmt_number(row.get("usd_per_million_images"), 2),
               "yes" if row.get("pareto") else ""],
              "died" if gate == "fail" else ("" if row.get("may_win") else "warn"))
    return t


def _load_average(values: Sequence[float] | None) -> str | None:
    """'4.06, 3.62, 3.70 (1/5/15 min)' instead of the raw float list."""
    if not values:
        return None
    return ", ".join(f"{v:.2f}" for v in values) + " (1/5/15 min)"


def environment_table(results: Mapping[str, Any]) -> Table:
    env = results.get("environment") or {}
    git = env.get("git") or {}
    threads = env.get("threads") or {}
    t = Table("Environment", ["item", "value"], left=(0, 1))
    cores = env.get("usable_cores") or []
    rows = [
        ("host", env.get("hostname")), ("platform", env.get("platform")),
        ("CPU", env.get("cpu_model")),
        ("cores", f"{len(cores)} usable of {env.get('cpu_count')} ({cores})"),
        ("memory", fmt_number((env.get("memory_total_bytes") or 0) / 1e9, 1) + " GB"),
        ("load average at start", _load_average(env.get("load_average_at_start"))),
        ("threads", ", ".join(f"{k} {v}" for k, v in threads.items() if v is not None)),
        ("git", f"{git.get('commit') or '?'}{' (dirty)' if git.get('dirty') else ''}"),
        ("python", env.get("python")),
        ("packages", ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items()
                               if v)),
        ("payloads", (results.get("payloads") or {}).get("description")),
        ("upload", UPLOAD_WORDS.get(upload := (results.get("payloads") or {}).get(
            "VERSUS_UPLOAD"), upload)),
    ]
    for name, record in services(results).items():
        serving = (record.get("readyz") or {}).get("serving") or {}
        model = (record.get("readyz") or {}).get("model") or {}
        rows.append((f"{name} service",
                     f"{record.get('url')} {model.get('framework_version', '')} model v"
                     f"{model.get('version', '?')}, intra-op {serving.get('intra_op_threads')},"
                     f" max batch {serving.get('max_batch_size')}, queue delay "
                     f"{serving.get('max_queue_delay_ms')} ms"))
    for key, value in rows:
        t.add([key, MISSING if value in (None, "") else value])
    return t


UPLOAD_WORDS = {
    "multipart": "multipart: POST /predict form uploads",
    "raw": "raw: POST /predict, the body is the image file",
    "oip-binary": "oip-binary: OIP /v2/models/<dataset>/infer, client-preprocessed FP32 "
                  "tensors in binary framing",
    "oip-bytes": "oip-bytes: OIP /v2/models/<dataset>/infer, the image files as BYTES in "
                 "binary framing",
}
"""How the run's requests carried the images (``--upload``), in words for the report."""


def all_tables(results: Mapping[str, Any]) -> dict[str, Table]:
    tables = {
        "summary": summary_table(results),
        "accuracy_gate": accuracy_gate_table(results),
        "goodput": goodput_table(results),
        "closed_loop": closed_loop_table(results),
        "stages": stage_table(results),
        "open_loop": open_loop_table(results),
        "in_process": in_process_table(results),
        "image_sizes": image_size_tables(results)[0],
        "image_sizes_throughput": image_size_tables(results)[1],
        "training": training_table(results),
        "parity": parity_table(results),
        "environment": environment_table(results),
    }
    findings = training_findings_table(results)
    if findings is not None:
        tables["training_findings"] = findings
    return tables
