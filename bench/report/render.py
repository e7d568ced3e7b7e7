"""results.json -> report.md + a self-contained index.html (+ the plots as PNG files).

The HTML embeds every plot as a base64 ``data:`` URI and its CSS inline, so the one file can
be mailed, attached to a ticket or opened from an S3 bucket without its directory. Tables
come from :mod:`bench.report.tables`, plots from :mod:`bench.report.plots`; both read only
results.json, so a report can be regenerated (``python -m bench report RESULTS``) after the
code that renders it improves.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.report import plots
from bench.report.tables import SPEED_AND_ACCURACY_NOTE, Table, all_tables, verdicts_of

PLOTS_DIR = "plots"
MARKDOWN_FILE = "report.md"
HTML_FILE = "index.html"

SECTIONS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # heading, tables, plots
    ("Summary", ("summary",), ()),
    ("Verdicts: accuracy gate, goodput, cost", ("accuracy_gate", "goodput"), ("pareto",)),
    ("Closed loop", ("closed_loop",), ("throughput", "latency", "batch_size")),
    ("Where the server's time goes", ("stages",), ("stages",)),
    ("Open loop", ("open_loop",), ("open_loop",)),
    ("In-process baseline and serving efficiency", ("in_process",), ("in_process",)),
    ("Image size", ("image_sizes", "image_sizes_throughput"), ("image_sizes",)),
    ("Training", ("training", "training_findings"), ()),
    ("Parity", ("parity",), ()),
    ("Environment", ("environment",), ()),
)

CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem auto;
       max-width: 1400px; padding: 0 1rem; color: #222; line-height: 1.4; }
div.scroll { overflow-x: auto; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
.meta { color: #555; font-size: .95rem; }
table { border-collapse: collapse; margin: .6rem 0 .3rem; font-size: .88rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: right;
         white-space: nowrap; font-variant-numeric: tabular-nums; }
td.l { white-space: normal; }
th { background: #f2f2f2; }
td.l, th.l { text-align: left; }
tr.died td { background: #fde2e2; color: #900; font-weight: 600; }
tr.warn td { background: #fff6d6; }
p.note { color: #555; font-size: .85rem; margin-top: .2rem; max-width: 1000px; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .85rem; }
pre { background: #f7f7f7; padding: .6rem; overflow-x: auto; font-size: .8rem; }
p.headline { font-size: 1.15rem; font-weight: 600; margin: .8rem 0 .2rem; }
.banner { background: #fde2e2; border: 1px solid #e99; padding: .6rem; color: #900; }
"""


def markdown_table(table: Table, heading: bool = True) -> str:
    lines = [f"### {table.title}", ""] if heading else []
    lines += ["| " + " | ".join(table.headers) + " |",
              "|" + "|".join("---" if i in table.left else "---:"
                             for i in range(len(table.headers))) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    if not table.rows:
        lines.append("| (no data) |" + " |" * (len(table.headers) - 1))
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines)


def html_table(table: Table, heading: bool = True) -> str:
    head = "".join(f'<th class="l">{html.escape(h)}</th>' if i in table.left else
                   f"<th>{html.escape(h)}</th>" for i, h in enumerate(table.headers))
    body = []
    for row, css in zip(table.rows, table.row_classes, strict=True):
        cells = "".join(f'<td class="l">{html.escape(c)}</td>' if i in table.left else
                        f"<td>{html.escape(c)}</td>" for i, c in enumerate(row))
        body.append(f'<tr class="{css}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(table.headers)}">(no data)</td></tr>')
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    title = f"<h3>{html.escape(table.title)}</h3>\n" if heading else ""
    return (f'{title}<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>{note}")


def _title(results: Mapping[str, Any]) -> str:
    return (f"versus bench {results.get('run_id', '')}: "
            f"{results.get('dataset') or 'model'} serving comparison")


def _meta(results: Mapping[str, Any]) -> str:
    env = results.get("environment") or {}
    cfg = results.get("config") or {}
    git = (env.get("git") or {}).get("commit") or "?"
    return (f"Profile {results.get('profile')}, {cfg.get('repeats')} repeats of levels "
            f"{cfg.get('levels')}; {env.get('cpu_model', '?')}, "
            f"{len(env.get('usable_cores') or [])} usable cores; git {git[:12]}; "
            f"{results.get('started_at', '?')} to {results.get('finished_at', '?')}.")


def _headline(results: Mapping[str, Any]) -> str:
    return str(verdicts_of(results).get("headline") or "")


def _problems(results: Mapping[str, Any]) -> list[str]:
    problems = []
    if results.get("interrupted"):
        problems.append("This run was interrupted: the numbers below are incomplete.")
    problems += [f"Error: {e}" for e in results.get("errors", [])]
    for name, record in (results.get("services") or {}).items():
        if record.get("status") == "died":
            problems.append(f"The {name} service DIED during the run; its numbers after "
                            f"that point are missing, not fast.")
        elif record.get("status") == "failed-to-start":
            problems.append(f"The {name} service failed to start.")
    return problems


def _death_logs(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    logs = []
    for name, record in (results.get("services") or {}).items():
        death = record.get("death") or {}
        if death.get("log_tail"):
            logs.append((f"{name}: exit code {death.get('exit_code')}, log tail",
                         death["log_tail"]))
    return logs


def _files(results: Mapping[str, Any]) -> list[str]:
    files = []
    for record in (results.get("services") or {}).values():
        for run in record.get("runs", []):
            files += [p for k, p in (run.get("files") or {}).items() if k.endswith("csv")]
    return files


def render_markdown(results: Mapping[str, Any], tables: Mapping[str, Table],
                    plot_files: Mapping[str, str]) -> str:
    parts = [f"# {_title(results)}", "", f"**{_headline(results)}**", "",
             SPEED_AND_ACCURACY_NOTE, "", _meta(results), ""]
    parts += [f"**{p}**\n" for p in _problems(results)]
    for heading, table_names, plot_names in SECTIONS:
        parts += [f"## {heading}", ""]
        for name in (n for n in table_names if n in tables):  # absent: not this dataset's
            parts += [markdown_table(tables[name], tables[name].title != heading), ""]
        for name in plot_names:
            if name in plot_files:
                parts += [f"![{plots.PLOTS[name][0]}]({plot_files[name]})", ""]
    for title, text in _death_logs(results):
        parts += [f"### {title}", "", "```", text.rstrip(), "```", ""]
    files = _files(results)
    if files:
        parts += ["## Locust CSVs", ""] + [f"- [{f}]({f})" for f in files] + [""]
    return "\n".join(parts)


def render_html(results: Mapping[str, Any], tables: Mapping[str, Table],
                images: Mapping[str, tuple[str, bytes]]) -> str:
    body = [f"<h1>{html.escape(_title(results))}</h1>",
            f'<p class="headline">{html.escape(_headline(results))}</p>',
            f'<p class="note">{html.escape(SPEED_AND_ACCURACY_NOTE)}</p>',
            f'<p class="meta">{html.escape(_meta(results))}</p>']
    body += [f'<p class="banner">{html.escape(p)}</p>' for p in _problems(results)]
    for heading, table_names, plot_names in SECTIONS:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body += [html_table(tables[name], tables[name].title != heading)
                 for name in table_names if name in tables]
        for name in plot_names:
            if name in images:
                caption, png = images[name]
                data = base64.b64encode(png).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(caption)}" '
                            f'src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    for title, text in _death_logs(results):
        body.append(f"<h3>{html.escape(title)}</h3><pre>{html.escape(text)}</pre>")
    files = _files(results)
    if files:
        items = "".join(f'<li><a href="{html.escape(f)}">{html.escape(f)}</a></li>'
                        for f in files)
        body.append(f"<h2>Locust CSVs</h2><details><summary>{len(files)} files (stats, "
                    f"full history and failures per repeat and level)</summary><ul>{items}"
                    f"</ul></details>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(_title(results))}</title><style>{CSS}</style></head>"
            f"<body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(results: Mapping[str, Any], report_dir: Path) -> tuple[Path, Path]:
    """Write plots/*.png, report.md and index.html into ``report_dir``."""
    report_dir = Path(report_dir)
    (report_dir / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    tables = all_tables(results)
    images = plots.render_all(results)
    plot_files = {}
    for name, (_, png) in images.items():
        relative = f"{PLOTS_DIR}/{name}.png"
        (report_dir / relative).write_bytes(png)
        plot_files[name] = relative
    md_path = report_dir / MARKDOWN_FILE
    md_path.write_text(render_markdown(results, tables, plot_files))
    html_path = report_dir / HTML_FILE
    html_path.write_text(render_html(results, tables, images))
    return md_path, html_path


def load_results(path: Path) -> dict[str, Any]:
    """results.json (or the directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    return json.loads(path.read_text())


def summary_text(results: Mapping[str, Any], report_path: Path | None = None) -> str:
    """The short plain-text summary printed at the end of a run."""
    table = all_tables(results)["summary"]
    keep = [0, 1, 2, 3, 4, 7, 8]  # framework, status, peak, users, p99, efficiency, open loop
    headers = [table.headers[i] for i in keep]
    rows = [[row[i] for i in keep] for row in table.rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [_headline(results), "", line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out += _problems(results)
    if report_path is not None:
        out.append(f"report: {report_path}")
    return "\n".join(out)
