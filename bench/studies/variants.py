"""Every runtime and variant side by side, in process: ResNet-50 (random init) at 224 px.

    python -m bench.studies.variants                          # every row of the runtime table
    python -m bench.studies.variants --runtimes onnx,onnx-int8,openvino,openvino-int8 \\
        --batch 8 --threads 2 --passes 2
    python -m bench.studies.variants --results reports/<run-id>/results.json

Each row's served artifact is built once (``bench.inprocess`` ``build``: one seeded torch
init ported to every framework, int8 ones quantised on random images: their speed is real,
their accuracy is noise) and cached under ``--cache``; then each row's predictor runs in its
own child process (``bench.inprocess`` ``baseline``), one at a time, on the same preprocessed
random images at ``--batch``. ``--passes 2`` measures every row twice, the second pass in
reversed order, so that a machine drifting during the run biases no row; a row's figure is the
median over its passes' medians. Columns: the precision the predictor reported, in-process
img/s and its ratio to the row's fp32 parent.

The served columns of the issue's figure (served img/s at the best concurrency, p99 there,
goodput at the p99 SLO, the accuracy gate) come from a comparison run (``python -m bench
--frameworks ...``); ``--results`` adds them from its results.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import inprocess
from bench.report.tables import MISSING, fmt_number, fmt_percent, verdicts_of
from shared.models import RESNET50
from shared.runtimes import RuntimeTableError, get_runtime, runtime_names

PROG = "python -m bench.studies.variants"
DATASET = "bloodmnist"
INPUT_IMAGES = 32


def _runtimes(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    try:
        for name in names:
            get_runtime(name)
    except RuntimeTableError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not names:
        raise argparse.ArgumentTypeError("name at least one runtime")
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _stages(text: str) -> tuple[int, ...]:
    from shared.models import parse_stage_sizes

    try:
        return tuple(parse_stage_sizes(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def pass_orders(names: Sequence[str], passes: int) -> list[list[str]]:
    """Forward, reversed, forward, ...: each pass's order."""
    return [list(names) if i % 2 == 0 else list(reversed(names)) for i in range(passes)]


def combine(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One row from its passes: median img/s over the passes' medians, the precision seen."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"error": runs[-1]["error"] if runs else "not measured"}
    return {"images_per_s": statistics.median(r["images_per_s"] for r in good),
            "passes": [r["images_per_s"] for r in good], "precision": good[0]["precision"]}


def with_parent_ratio(rows: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each row plus ``x_parent``: its img/s over its fp32 parent's (1.0 for a base row)."""
    out = {}
    for name, row in rows.items():
        parent = get_runtime(name).variant_of or name
        base = (rows.get(parent) or {}).get("images_per_s")
        ratio = row["images_per_s"] / base if base and row.get("images_per_s") else None
        out[name] = {**row, "parent": parent, "x_parent": ratio}
    return out


def served_columns(results: Mapping[str, Any], name: str) -> list[str]:
    """Served img/s at the best concurrency, p99 there, goodput, gate, from a run's results."""
    record = (results.get("services") or {}).get(name) or {}
    peak = (record.get("closed_loop") or {}).get("peak")
    row = (verdicts_of(results).get("rows") or {}).get(name) or {}
    gate = ((results.get("accuracy_gate") or {}).get("services") or {}).get(name) or {}
    good = (row.get("goodput") or {}).get("images_per_s")
    return [fmt_number(peak["throughput_rps"]["median"]) if peak else MISSING,
            str(peak["users"]) if peak else MISSING,
            fmt_number(peak["latency_ms"]["p99"]["median"]) if peak else MISSING,
            fmt_number(good) if good else MISSING,
            gate.get("verdict") or MISSING,
            fmt_percent(gate.get("ratio_to_parent")), fmt_percent(gate.get("agreement"))]


SERVED_HEADERS = ["served img/s", "users", "p99 ms", "goodput img/s", "gate",
                  "top-1 / parent", "agreement"]


def format_table(rows: Mapping[str, Mapping[str, Any]], batch: int, threads: int,
                 results: Mapping[str, Any] | None = None) -> str:
    """The rows as a Markdown table (served columns when ``results`` is given)."""
    headers = ["runtime", "precision", f"in-process img/s (batch {batch}, {threads} threads)",
               "x fp32 parent"] + (SERVED_HEADERS if results is not None else [])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name, row in rows.items():
        if "error" in row:
            cells = [name, MISSING, f"error: {row['error'].splitlines()[0][:80]}", MISSING]
        else:
            ratio = row.get("x_parent")
            cells = [name, row.get("precision") or MISSING, fmt_number(row["images_per_s"]),
                     MISSING if ratio is None else f"x{ratio:.2f}"]
        if results is not None:
            cells += served_columns(results, name)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure(names: Sequence[str], args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """Build (cached) and time every row; {name: combined row}."""
    logs = args.cache / "logs"
    log(f"building ResNet {args.stage_sizes} artifacts at {args.size} px (cached in "
        f"{args.cache})")
    inprocess.run_child(["build", "--dataset", DATASET, "--stage-sizes",
                         ",".join(map(str, args.stage_sizes)), "--sizes", str(args.size),
                         "--cache", str(args.cache), "--frameworks", ",".join(names)],
                        logs / "build.log")
    pixels = np.random.default_rng(0).standard_normal(
        (INPUT_IMAGES, args.size, args.size, 3)).astype(np.float32)
    inputs = args.cache / f"inputs-{args.size}.npy"
    np.save(inputs, pixels)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for number, order in enumerate(pass_orders(names, args.passes), start=1):
        for name in order:
            model = inprocess.size_dir(args.cache, args.stage_sizes, args.size, DATASET, name)
            log(f"pass {number}: {name}")
            try:
                result = inprocess.run_child(
                    ["baseline", "--framework", name, "--model", str(model), "--inputs",
                     str(inputs), "--threads", str(args.threads), "--batch-sizes",
                     str(args.batch), "--repeats", str(args.repeats), "--min-time-s",
                     str(args.min_time_s)], logs / f"{name}-pass{number}.log")
                runs[name].append({"images_per_s": result["best_images_per_s"]["median"],
                                   "precision": result.get("precision")})
            except inprocess.ChildError as exc:
                runs[name].append({"error": str(exc)})
    return with_parent_ratio({name: combine(r) for name, r in runs.items()})


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runtimes", type=_runtimes, default=runtime_names(),
                   help="rows to measure, in this order (default: every row)")
    p.add_argument("--size", type=_positive, default=224, help="input px (default: 224)")
    p.add_argument("--stage-sizes", type=_stages, default=RESNET50,
                   help="ResNet bottleneck blocks per stage (default: 3,4,6,3, ResNet-50; "
                        "1,1,1,1 for a quick try)")
    p.add_argument("--batch", type=_positive, default=8, help="batch size (default: 8)")
    p.add_argument("--threads", type=_positive, default=2,
                   help="intra-op threads (default: 2)")
    p.add_argument("--passes", type=_positive, default=2,
                   help="passes over the rows, alternately reversed (default: 2)")
    p.add_argument("--repeats", type=_positive, default=3,
                   help="timed repeats per pass (default: 3)")
    p.add_argument("--min-time-s", type=float, default=2.0,
                   help="seconds per repeat at least (default: 2.0)")
    p.add_argument("--cache", type=Path, default=Path("reports/.cache/variants"),
                   help="artifacts, inputs and child logs (default: reports/.cache/variants)")
    p.add_argument("--results", type=Path,
                   help="a comparison run's results.json (or its directory): add its served "
                        "columns (default: in-process only)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    results = None
    if args.results is not None:
        from bench.report.render import load_results

        try:
            results = load_results(args.results)
        except (OSError, ValueError) as exc:
            print(f"{PROG}: error: --results {args.results}: {exc}", file=sys.stderr)
            return 2
    rows = measure(args.runtimes, args, lambda text: print(text, file=sys.stderr, flush=True))
    print(format_table(rows, args.batch, args.threads, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
