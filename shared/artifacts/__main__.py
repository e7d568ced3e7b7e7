"""Command line: ``python -m shared.artifacts {push,pull,ls,upload,resolve} ...``
(console script: versus-artifacts).

    push models/ s3://bucket/prefix           verify every model, upload what differs
    pull s3://bucket/prefix models/           download what differs, verify every model file
    ls s3://bucket/prefix                     models with framework, version, sha256, size
    upload reports/run-1 s3://bucket/reports  any folder (bench report), with content types
    resolve s3://bucket/prefix/<dataset>/<framework>/<version>
                                              pull into the model cache, print the local dir

Progress goes to stdout (stderr for resolve, whose stdout is only the path). Any failure
(bad URI, missing bucket, no credentials, corrupt object, unsafe key) prints one
``error: ...`` line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial

from . import store
from ._s3 import ENDPOINT_ENV, human_bytes
from .cache import CACHE_ENV, default_cache_dir, resolve_model_uri
from .errors import ArtifactError


def _common() -> argparse.ArgumentParser:
    """Options every subcommand takes (so they can follow the subcommand)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--endpoint-url",
        default=None,
        help=f"S3-compatible endpoint, e.g. http://minio:9000 (default: ${ENDPOINT_ENV}, "
        "else boto3's $AWS_ENDPOINT_URL_S3 / $AWS_ENDPOINT_URL, else AWS)",
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", help="no per-file progress lines (default: off)"
    )
    return common


def get_args_parser() -> argparse.ArgumentParser:
    """The CLI; every flag's help states its default."""
    parser = argparse.ArgumentParser(
        prog="python -m shared.artifacts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    common = [_common()]
    push = commands.add_parser("push", parents=common, help="upload model directories")
    push.add_argument("src", help="models/ tree, a part of it, or one model directory")
    push.add_argument("dest", help="s3://bucket/prefix (models land in <dataset>/<framework>/<v>)")
    pull = commands.add_parser("pull", parents=common, help="download and verify models")
    pull.add_argument("src", help="s3://bucket/prefix: every model below it, or one model dir")
    pull.add_argument("dest", help="local directory (mirrors the remote layout below SRC)")
    ls = commands.add_parser("ls", parents=common, help="list the models under a prefix")
    ls.add_argument("uri", metavar="S3_URI", help="s3://bucket/prefix")
    upload = commands.add_parser("upload", parents=common, help="upload any folder (a report)")
    upload.add_argument("src", help="local folder; hidden files are skipped")
    upload.add_argument("dest", help="s3://bucket/prefix")
    resolve = commands.add_parser(
        "resolve", parents=common, help="pull one model into the cache, print its local path"
    )
    resolve.add_argument("uri", help="s3://bucket/prefix/<dataset>/<framework>/<version> or a path")
    resolve.add_argument(
        "--cache-dir",
        default=None,
        help=f"model cache (default: ${CACHE_ENV}, else {default_cache_dir()})",
    )
    return parser


def _format_models(models: list[store.RemoteModel]) -> str:
    """One row per model: where, framework, version, dataset, sha256 prefix, size, status."""
    header = ("MODEL", "FRAMEWORK", "VERSION", "DATASET", "SHA256", "SIZE", "STATUS")
    rows = [header] + [
        (
            m.relative or ".",
            m.manifest.framework,
            (m.relative or ".").rsplit("/", 1)[-1],
            m.manifest.dataset,
            m.manifest.sha256[:12],
            human_bytes(m.manifest.size_bytes),
            m.problem or "ok",
        )
        for m in models
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def _run(args: argparse.Namespace) -> None:
    """Dispatch one subcommand; progress lines go through ``echo``."""
    out = sys.stderr if args.command == "resolve" else sys.stdout
    echo = (lambda line: None) if args.quiet else partial(print, file=out, flush=True)
    endpoint = args.endpoint_url
    if args.command == "push":
        report = store.push(args.src, args.dest, endpoint_url=endpoint, echo=echo)
        print(report.summary("pushed"))
    elif args.command == "pull":
        report = store.pull(args.src, args.dest, endpoint_url=endpoint, echo=echo)
        print(report.summary("pulled"))
    elif args.command == "upload":
        report = store.upload_tree(args.src, args.dest, endpoint_url=endpoint, echo=echo)
        print(report.summary("uploaded"))
    elif args.command == "ls":
        print(_format_models(store.list_models(args.uri, endpoint_url=endpoint)))
    else:
        print(resolve_model_uri(args.uri, args.cache_dir, endpoint_url=endpoint, echo=echo))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 error or usage, 130 interrupted)."""
    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, message already printed)
        return int(exc.code or 0)
    try:
        _run(args)
    except (ArtifactError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (no partial files were kept)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
