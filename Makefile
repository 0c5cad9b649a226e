# Two commands for a new user: `make demo` and `make test`. Both create .venv/ first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo study test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found; install Python 3.11 or run 'make PY=python3 ...'"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned, so no dependency pulls a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements-dev.txt -e .
	touch $(STAMP)

demo: venv
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/rankedit run -o out/demo

# three organism seeds (about 50 minutes on 2 cores); prints docs/findings.md's three-seed section from the report
study: venv
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/rankedit run examples/organism-seeds.yaml -o out/study
	$(BIN)/python scripts/readme_findings.py out/study/report.json

test: venv
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/bench_analyze.py

clean:
	rm -rf $(VENV) out
