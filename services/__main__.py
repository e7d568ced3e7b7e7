"""``python -m services``: serve one model under gunicorn.

    python -m services --framework torch --model models/bloodmnist/torch/1 --port 8001

The flags become ``VERSUS_*`` environment variables and the process *execs*
``gunicorn -c deploy/gunicorn.conf.py services.wsgi:app``, so there is exactly one way a
service starts (the same command a container runs), the process id stays the same (signals
such as SIGTERM reach gunicorn's master directly), and every setting can equally be given as
an environment variable. The manifest and the model file's sha256 are checked here first, so
a broken artifact fails in a second with a clear message rather than in every worker.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from services.predictors import check_artifact
from services.settings import ENV_PREFIX, ServerSettings, ServiceSettings
from shared.manifest import ManifestError, read_manifest, verify_model_file
from shared.runtimes import get_runtime, runtime_names, runtimes

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "gunicorn.conf.py"
WSGI_APP = "services.wsgi:app"


def get_args_parser() -> argparse.ArgumentParser:
    # Defaults come from the environment, so `VERSUS_WORKERS=4 python -m services ...` keeps
    # its 4 instead of being overwritten by the flag's built-in default.
    s, srv = ServiceSettings.from_env(), ServerSettings.from_env()
    p = argparse.ArgumentParser(prog="python -m services", description=__doc__.split("\n")[0])
    p.add_argument("--framework", required=True, choices=runtime_names(),
                   help="runtime serving the model (a row of shared.runtimes)")
    p.add_argument("--model", required=True, type=Path,
                   help="artifact directory models/<dataset>/<framework>/<version>")
    p.add_argument("--host", default=srv.host, help=f"bind address (default: {srv.host})")
    p.add_argument("--port", type=int, default=os.environ.get(ENV_PREFIX + "PORT"),
                   help="port (default: the runtime's: " + ", ".join(
                       f"{r.name} {r.port}" for r in runtimes().values()) + ")")
    p.add_argument("--workers", type=int, default=srv.workers,
                   help=f"gunicorn worker processes, one model each (default: {srv.workers})")
    p.add_argument("--threads", type=int, default=srv.threads,
                   help=f"request threads per worker (default: {srv.threads})")
    p.add_argument("--intra-op-threads", type=int, default=s.intra_op_threads,
                   help="framework math threads per worker (default: cores // workers)")
    p.add_argument("--max-batch-size", type=int, default=s.max_batch_size,
                   help=f"dynamic batching: largest batch size warmed up "
                        f"(default: {s.max_batch_size})")
    p.add_argument("--preferred-batch-size", type=int, default=s.preferred_batch_size,
                   help="dynamic batching: largest batch formed (default: the smallest size "
                        "within 1%% of the best images/s, measured at warm-up)")
    p.add_argument("--max-queue-delay-ms", type=float, default=s.max_queue_delay_ms,
                   help=f"dynamic batching: longest wait to fill a batch "
                        f"(default: {s.max_queue_delay_ms})")
    p.add_argument("--queue-size", type=int, default=s.queue_size,
                   help=f"images the batch queue holds before 503s (default: {s.queue_size})")
    p.add_argument("--timeout", type=int, default=srv.timeout,
                   help=f"worker heartbeat timeout, > model load + warm-up "
                        f"(default: {srv.timeout})")
    p.add_argument("--graceful-timeout", type=int, default=srv.graceful_timeout,
                   help=f"seconds to finish in-flight requests after SIGTERM "
                        f"(default: {srv.graceful_timeout})")
    p.add_argument("--access-log", action="store_true", help="log every request (default: off)")
    p.add_argument("--gunicorn-config", type=Path, default=DEFAULT_CONFIG,
                   help=f"gunicorn config file (default: {DEFAULT_CONFIG})")
    return p


def service_environment(args: argparse.Namespace) -> dict[str, str]:
    """The ``VERSUS_*`` variables that carry the flags into gunicorn and its workers."""
    values = {
        "FRAMEWORK": args.framework,
        "MODEL_DIR": args.model.resolve(),
        "HOST": args.host,
        "PORT": args.port or get_runtime(args.framework).port,
        "WORKERS": args.workers,
        "THREADS": args.threads,
        "INTRA_OP_THREADS": args.intra_op_threads,
        "MAX_BATCH_SIZE": args.max_batch_size,
        "PREFERRED_BATCH_SIZE": args.preferred_batch_size,
        "MAX_QUEUE_DELAY_MS": args.max_queue_delay_ms,
        "QUEUE_SIZE": args.queue_size,
        "TIMEOUT": args.timeout,
        "GRACEFUL_TIMEOUT": args.graceful_timeout,
        "ACCESS_LOG": "1" if args.access_log else None,
    }
    return {ENV_PREFIX + k: str(v) for k, v in values.items() if v is not None}


def main(argv: list[str] | None = None) -> None:
    try:
        parser = get_args_parser()
    except ValueError as exc:  # a malformed VERSUS_* variable
        sys.exit(f"error: {exc}")
    args = parser.parse_args(argv)
    env = service_environment(args)
    try:
        ServiceSettings.from_env(env)  # validate the combination before starting anything
        manifest = read_manifest(args.model)
        check_artifact(get_runtime(args.framework), manifest, args.model)
        verify_model_file(args.model, manifest)
    except (ValueError, ManifestError) as exc:
        sys.exit(f"error: {exc}")
    if not args.gunicorn_config.is_file():
        sys.exit(f"error: gunicorn config not found: {args.gunicorn_config}")
    os.environ.update(env)
    command = [sys.executable, "-m", "gunicorn", "--config", str(args.gunicorn_config), WSGI_APP]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
