"""``python -m bench``: the serving comparison run, and ``python -m bench report``.

    python -m bench                                  # full profile, models/<only dataset>
    python -m bench --profile demo --models models --dataset bloodmnist
    python -m bench --url torch=http://10.0.0.5:8001 --url onnx=http://10.0.0.5:8004 \\
        --frameworks torch,onnx --no-inprocess      # services running elsewhere
    python -m bench report reports/<run-id>          # re-render report.md + index.html
    python -m bench demo [--profile demo|full]       # synthetic data -> train -> bench
    python -m bench soak --model onnx=models/dr/onnx/1 --minutes 10   # see bench.robustness.soak

Exit status: 0 when every service was measured, 1 when one died or failed to start (the
report says which and how), 2 for usage errors, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.config import RUN_PROFILES, RUNTIMES, BenchConfig, profile_config
from bench.load.payloads import PAYLOAD_PROFILES, UPLOADS
from bench.services import ServiceError

PROG = "python -m bench"
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}"
                                         ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"values must be >= 1, got {text!r}")
    return values


def _frameworks(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(names) - set(RUNTIMES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown framework(s) {unknown}; choose from "
                                         f"{','.join(RUNTIMES)}")
    return names


def _count(text: str) -> int:
    values = _ints(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one integer >= 1, got {text!r}")
    return values[0]


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _url(text: str) -> tuple[str, str]:
    framework, _, url = text.partition("=")
    if framework not in RUNTIMES or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected FRAMEWORK=http://host:port, got {text!r}")
    return framework, url


def _default(field: str) -> str:
    """'default: <full value>; demo: <demo value>' for a help text."""
    full = getattr(BenchConfig(), field)
    demo = RUN_PROFILES["demo"].get(field, full)

    def show(value: Any) -> str:
        if isinstance(value, tuple):
            return ",".join(map(str, value)) or "none"
        return str(value)

    if demo == full:
        return f"default: {show(full)}"
    return f"default: {show(full)}; demo profile: {show(demo)}"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Subcommands: python -m bench report RESULTS_JSON_OR_DIR"
                                       "; python -m bench demo --help"
                                       "; python -m bench soak --help")
    p.add_argument("--profile", choices=sorted(RUN_PROFILES), default="full",
                   help="preset of every setting below (default: full; demo fits 2 cores)")
    g = p.add_argument_group("services")
    g.add_argument("--frameworks", type=_frameworks, help=f"services to compare "
                   f"({_default('frameworks')})")
    g.add_argument("--models", type=Path, help="artifact root (default: models)")
    g.add_argument("--dataset", help="dataset under --models (default: the only one there)")
    g.add_argument("--version", help="model version (default: each framework's latest)")
    g.add_argument("--url", type=_url, action="append", default=[], metavar="FRAMEWORK=URL",
                   help="use a running service instead of starting one (repeatable; "
                        "default: start every service on 127.0.0.1)")
    g.add_argument("--workers", type=int, help="gunicorn workers per service (default: 1)")
    g.add_argument("--http-threads", type=int,
                   help="request threads per worker (default: 32; demo profile: 16)")
    g.add_argument("--intra-op-threads", type=int,
                   help="framework math threads per worker, also used in-process "
                        "(default: usable cores // workers; demo profile: 1)")
    g.add_argument("--max-batch-size", type=int,
                   help="dynamic batching limit (default: 16; demo profile: 8)")
    g.add_argument("--max-queue-delay-ms", type=float,
                   help="dynamic batching wait (default: 5.0)")
    g.add_argument("--queue-size", type=int, help="batch queue capacity (default: 64; "
                   "demo profile: 32)")
    g.add_argument("--ready-timeout-s", type=float, help=f"wait for /readyz "
                   f"({_default('ready_timeout_s')})")
    g.add_argument("--loadgen-cpus", type=lambda t: tuple(int(c) for c in t.split(",")),
                   help="pin Locust to these CPU ids and the services to the others "
                        "(default: no pinning)")
    c = p.add_argument_group("closed-loop sweep (Locust)")
    c.add_argument("--levels", type=_ints, help=f"concurrent users per level "
                   f"({_default('levels')})")
    c.add_argument("--repeats", type=int, help=f"sweep repeats ({_default('repeats')})")
    c.add_argument("--window-s", type=float, help=f"stability window "
                   f"({_default('window_s')})")
    c.add_argument("--stable-windows", type=int,
                   help=f"consecutive windows that must agree ({_default('stable_windows')})")
    c.add_argument("--tolerance", type=float,
                   help=f"relative agreement of those windows ({_default('tolerance')})")
    c.add_argument("--level-warmup-s", type=float, help=f"discarded start of each level "
                   f"({_default('level_warmup_s')})")
    c.add_argument("--level-max-s", type=float, help=f"measurement bound per level "
                   f"({_default('level_max_s')})")
    c.add_argument("--service-warmup-s", type=float, help=f"warm-up per service before "
                   f"its sweep ({_default('service_warmup_s')})")
    c.add_argument("--locustfile", help="locustfile(s) for -f (default: loadtest)")
    o = p.add_argument_group("open loop (Poisson arrivals)")
    o.add_argument("--open-loop-rate", type=float, help="requests/s (default: "
                   "0.7 x the lowest peak closed-loop throughput)")
    o.add_argument("--open-loop-duration-s", type=float,
                   help=f"arrivals for ({_default('open_loop_duration_s')})")
    o.add_argument("--no-open-loop", action="store_true", help="skip the open-loop run")
    i = p.add_argument_group("in-process baseline and image-size sweep")
    i.add_argument("--no-inprocess", action="store_true",
                   help="skip the in-process baseline and the image-size sweep")
    i.add_argument("--inprocess-batch-sizes", type=_ints,
                   help=f"batch sizes ({_default('inprocess_batch_sizes')})")
    i.add_argument("--image-sizes", type=lambda t: _ints(t) if t else (),
                   help=f"px, '' to skip ({_default('image_sizes')})")
    i.add_argument("--size-batch", type=int, help=f"batch for the size sweep's throughput "
                   f"({_default('size_batch')})")
    i.add_argument("--cache", type=Path, help="random-init artifacts of the size sweep "
                   "(default: <out>/.cache)")
    d = p.add_argument_group("payloads (the load test's pool, see loadtest/_payloads.py)")
    d.add_argument("--payload-dir", type=Path, help="images, a DR dataset dir or a MedMNIST "
                   ".npz (default: synthetic fundus photos)")
    d.add_argument("--payload-profile", choices=PAYLOAD_PROFILES,
                   help="camera: files as stored; small: re-encoded at --payload-size "
                        "(default: camera; demo profile: small)")
    d.add_argument("--payload-size", type=int, help="px for the small profile (default: 224)")
    d.add_argument("--payload-count", type=int, help="images in the pool (default: 16; "
                   "demo profile: 8)")
    d.add_argument("--upload", choices=UPLOADS,
                   help="how images are sent: POST /predict multipart (default) or raw; OIP "
                        "binary framing: oip-binary (client-preprocessed FP32 tensors) or "
                        "oip-bytes (the files as BYTES)")
    a = p.add_argument_group("accuracy gate and verdicts")
    a.add_argument("--no-accuracy-gate", action="store_true",
                   help="skip sending the test split through every service (default: run "
                        "the gate whenever a labelled test split is known)")
    a.add_argument("--eval-data", type=Path,
                   help="MedMNIST .npz or DR directory whose test split the gate sends "
                        "(default: --payload-dir when that is a dataset)")
    a.add_argument("--eval-max-images", type=_count,
                   help="a seeded subset of that many test images (default: all)")
    a.add_argument("--slo-p99-ms", type=_positive,
                   help="latency objective of the goodput column: the highest measured "
                        "throughput whose p99 stays within it (default: 100)")
    a.add_argument("--usd-per-hour", type=_positive,
                   help="instance price for the cost per million images (default: the "
                        "on-demand price of the detected EC2 instance type, else no cost)")
    r = p.add_argument_group("report")
    r.add_argument("--out", type=Path, help="reports root (default: reports)")
    r.add_argument("--run-id", help="report directory name (default: UTC timestamp)")
    r.add_argument("--training-table", type=Path, help="training comparison JSON (default: "
                   "<models>/<dataset>/comparison-<version>.json, else the manifests)")
    r.add_argument("--parity-json", type=Path,
                   help="a python -m training.parity --json report to include (default: none)")
    r.add_argument("--seed", type=int, help="open-loop arrivals seed (default: 0)")
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Profile values, overridden by every flag that was given."""
    base = profile_config(args.profile)
    service = base.service
    for name in ("workers", "http_threads", "intra_op_threads", "max_batch_size",
                 "max_queue_delay_ms", "queue_size"):
        if getattr(args, name) is not None:
            service = dataclasses.replace(service, **{name: getattr(args, name)})
    payload = base.payload
    for flag, name in (("payload_dir", "source"), ("payload_profile", "profile"),
                       ("payload_size", "size"), ("payload_count", "count"),
                       ("upload", "upload")):
        if getattr(args, flag) is not None:
            payload = dataclasses.replace(payload, **{name: getattr(args, flag)})
    overrides = {
        name: getattr(args, name) for name in (
            "frameworks", "models", "dataset", "version", "out", "run_id", "levels",
            "repeats", "window_s", "stable_windows", "tolerance", "level_warmup_s",
            "level_max_s", "service_warmup_s", "open_loop_rate", "open_loop_duration_s",
            "inprocess_batch_sizes", "image_sizes", "size_batch", "cache", "ready_timeout_s",
            "loadgen_cpus", "locustfile", "training_table", "seed", "eval_data",
            "eval_max_images", "slo_p99_ms", "usd_per_hour")
        if getattr(args, name) is not None
    }
    if args.parity_json is not None:
        overrides["parity"] = args.parity_json
    if args.url:
        overrides["urls"] = dict(args.url)
    if args.no_open_loop:
        overrides["open_loop"] = False
    if args.no_inprocess:
        overrides["inprocess"] = False
    if args.no_accuracy_gate:
        overrides["accuracy_gate"] = False
    return base.replace(service=service, payload=payload, **overrides)


def report_main(argv: Sequence[str]) -> int:
    from bench.report.render import load_results, summary_text, write_report

    parser = argparse.ArgumentParser(prog=f"{PROG} report",
                                     description="Re-render report.md and index.html.")
    parser.add_argument("results", type=Path, help="results.json or its directory")
    args = parser.parse_args(argv)
    path = args.results if args.results.is_dir() else args.results.parent
    results = load_results(args.results)
    _, html_path = write_report(results, path)
    print(summary_text(results, html_path))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        return report_main(argv[1:])
    if argv and argv[0] == "demo":
        from bench.demo.pipeline import main as demo_main

        return demo_main(argv[1:])
    if argv and argv[0] == "soak":
        from bench.robustness.soak import main as soak_main

        return soak_main(argv[1:])
    args = get_args_parser().parse_args(argv)
    cfg = config_from_args(args)
    from bench.report.render import load_results, summary_text, write_report
    from bench.runner import run_bench

    try:
        report_dir = run_bench(cfg, log=lambda text: print(text, file=sys.stderr, flush=True))
    except (ServiceError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    results = load_results(report_dir)
    _, html_path = write_report(results, report_dir)
    print(summary_text(results, html_path))
    if results.get("interrupted"):
        return EXIT_INTERRUPTED
    bad = [r for r in results.get("services", {}).values() if r.get("status") != "ok"]
    return EXIT_PROBLEM if bad or results.get("errors") else 0
