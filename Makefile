# versus: the two commands a newcomer runs are `make demo` and `make test`.
# Both bootstrap uv (from PyPI) if it is missing and sync the locked environment first.

PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen
DATA ?= data
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: demo bench test test-all lint sync clean

## sync: install uv if missing, then the exact locked environment (.venv)
sync: .venv/.synced

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

## demo: the main job end to end on synthetic data (no GPU, no cloud): synthetic data ->
## train torch/tensorflow/jax + ONNX -> four services -> load sweep -> reports/<run-id>/index.html
## (~10 min on 2 cores; DEMO_ARGS="--profile full" on a GPU host: ResNet-50, 224 px)
demo: sync
	$(RUN) python -m bench demo --data $(DATA) $(DEMO_ARGS)

## bench: the serving comparison of the models under models/ (see python -m bench --help),
## e.g. make bench BENCH_ARGS="--profile demo --dataset bloodmnist"
bench: sync
	$(RUN) python -m bench $(BENCH_ARGS)

## test: the default test suite (what CI runs)
test: sync
	$(RUN) pytest

## lint: ruff over the whole tree
lint: sync
	$(RUN) ruff check .

clean:
	rm -rf $(DATA) .pytest_cache .ruff_cache
