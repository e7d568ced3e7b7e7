#!/bin/sh
# Entrypoint of a versus service container: prepare, then *exec* the server.
#
#   deploy/entrypoint.sh [COMMAND [ARG...]]
#   (no COMMAND: gunicorn --config <checkout>/deploy/gunicorn.conf.py services.wsgi:app)
#
# 1. VERSUS_MODEL_URI=s3://bucket/prefix/<dataset>/<framework>/<version> (optional): pull that
#    one model, verified against its manifest, into the model cache (VERSUS_MODEL_CACHE,
#    default ~/.cache/versus/models) with `python -m shared.artifacts resolve`, and serve it
#    from there (VERSUS_MODEL_DIR). The URI is then removed from the environment: the model
#    is pulled once, here, before any worker starts.
# 2. VERSUS_MODEL_DIR must hold manifest.json: say so now, with the fix, rather than let every
#    gunicorn worker fail to boot.
# 3. PROMETHEUS_MULTIPROC_DIR is created and emptied of prometheus_client's *.db files: files
#    left by an earlier run of this container (a restart keeps its file system) would be
#    summed into the new counters. Only *.db files: a directory named by a variable is never
#    removed wholesale.
# 4. exec COMMAND: it replaces this shell (same PID), so the SIGTERM of `docker stop` reaches
#    gunicorn's master, which lets in-flight requests finish.
#
# Runs anywhere (POSIX sh): in the image, or from a checkout as a plain process (tests).
set -eu

log() { echo "entrypoint: $*" >&2; }

# The checkout this script lives in (/app in the image): the gunicorn config is found from
# here, whatever the working directory.
root=$(cd "$(dirname "$0")/.." && pwd)

if [ -n "${VERSUS_MODEL_URI:-}" ]; then
    log "pulling $VERSUS_MODEL_URI"
    # A plain assignment, so that a failed pull stops the script (set -e); resolve prints
    # only the local directory on stdout, its progress goes to stderr.
    VERSUS_MODEL_DIR=$(python -m shared.artifacts resolve "$VERSUS_MODEL_URI")
    export VERSUS_MODEL_DIR
    log "serving $VERSUS_MODEL_DIR"
fi
unset VERSUS_MODEL_URI

if [ -n "${VERSUS_MODEL_DIR:-}" ] && [ ! -f "$VERSUS_MODEL_DIR/manifest.json" ]; then
    log "no manifest.json in VERSUS_MODEL_DIR=$VERSUS_MODEL_DIR: mount the model repository" \
        "(./models:/models:ro holding models/<dataset>/<framework>/<version>/) or set" \
        "VERSUS_MODEL_URI=s3://..."
    exit 78  # EX_CONFIG
fi

if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    rm -f -- "$PROMETHEUS_MULTIPROC_DIR"/*.db
fi

if [ "$#" -eq 0 ]; then
    set -- gunicorn --config "$root/deploy/gunicorn.conf.py" services.wsgi:app
fi
log "exec $*"
exec "$@"
