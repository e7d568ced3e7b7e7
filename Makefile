# versus: the two commands a newcomer runs are `make demo` and `make test`.
# Both bootstrap uv (from PyPI) if it is missing and sync the locked environment first.

PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen
DATA ?= data

.PHONY: demo test test-all lint sync clean

## sync: install uv if missing, then the exact locked environment (.venv)
sync: .venv/.synced

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

## demo: the main job end to end on synthetic data (no GPU, no cloud)
demo: sync
	$(RUN) python -m shared.datasets synth dr --n 400 --size 512 --out $(DATA)/dr-synth
	$(RUN) python -m shared.datasets synth bloodmnist --n 4000 --size 64 --out $(DATA)/bloodmnist_64.npz
	$(RUN) python -m shared.datasets inspect $(DATA)/dr-synth --grid $(DATA)/dr-synth-grid.png
	$(RUN) python -m shared.datasets inspect $(DATA)/bloodmnist_64.npz --grid $(DATA)/bloodmnist-grid.png

## test: the default test suite (what CI runs)
test: sync
	$(RUN) pytest

## lint: ruff over the whole tree
lint: sync
	$(RUN) ruff check .

clean:
	rm -rf $(DATA) .pytest_cache .ruff_cache
