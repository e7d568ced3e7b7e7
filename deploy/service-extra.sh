#!/bin/sh
# The pyproject extra a service image installs for its runtime, read from the runtime table
# (shared/runtimes.py; deploy/Dockerfile runs this with its build args and fails with a usage
# line on an unknown value):
#
#   deploy/service-extra.sh FRAMEWORK ACCELERATOR
#
# FRAMEWORK: a runtime of the table;  ACCELERATOR: gpu | cpu. Needs only a Python 3 with the
# standard library ($PYTHON, default python3) and shared/ beside deploy/.
set -eu

framework=${1-}
accelerator=${2-}
python=${PYTHON:-python3}
cd "$(dirname "$0")/.."

case "$accelerator" in
  gpu|cpu) ;;
  *) echo "build with --build-arg ACCELERATOR=gpu|cpu (got '$accelerator')" >&2; exit 1 ;;
esac

if ! "$python" -m shared.runtimes extra "$framework" "$accelerator" 2>/dev/null; then
  names=$("$python" -m shared.runtimes names | tr '\n' '|')
  echo "build with --build-arg FRAMEWORK=${names%|} (got '$framework')" >&2
  exit 1
fi
