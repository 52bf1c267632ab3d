# `make demo` and `make test` each create .venv when it is missing, then install what they need.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test bench fuzz clean

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(VENV)/.demo-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[demo]"
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(VENV)/bin/edgepack demo --out demo_out --force

# Two workers: every test is single-threaded (tests/conftest.py), so the 2-core machine runs two at once.
test: $(VENV)/.dev-installed
	$(PY) -m ruff check edgepack tests benchmarks examples tools
	$(PY) -m pytest -n 2 --dist worksteal

bench: $(VENV)/.dev-installed
	$(PY) benchmarks/run_all.py

# Thousands of mutated .tflite/.onnx files through `edgepack validate` / `edgepack.load` (the suite runs a few hundred).
fuzz: $(VENV)/.dev-installed
	$(PY) tools/fuzz.py --cases 2000

clean:
	rm -rf demo_out .pytest_cache
