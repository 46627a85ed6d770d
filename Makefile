# Two commands for a newcomer: `make book` (build the offline web book) and `make test`.
# Every target sets up what it needs (.venv from the pinned constraints, the offline JavaScript)
# and re-running it is cheap: stamps skip work when nothing changed.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tdl-installed
VENDOR := _vendor
VSTAMP := $(VENDOR)/.stamp
SCALE ?= cpu
PYTEST_ARGS ?=

.PHONY: all book test test-fast lab bench vendor env browser clean distclean help

help:
	@echo "make book   build the web book (TDL_SCALE=$(SCALE)) and print the path of index.html"
	@echo "make test   run the whole test suite (library, notebooks, nbgrader, book, browser)"
	@echo "make lab    open JupyterLab on the course"
	@echo "make bench  run the benchmarks (prints ratio tables; not tests)"

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed, found " + sys.version' 
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	# torch first and exactly pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[course,dev]"
	$(PY) -c "import torch, tdlcourse; assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__"
	@touch $@

vendor: $(VSTAMP)

$(VSTAMP): js/package.json js/package-lock.json $(STAMP) scripts/vendor_js.sh
	bash scripts/vendor_js.sh $(PY) $(VENDOR)
	@touch $@

browser:
	@bash scripts/ensure_chromium.sh

book: $(STAMP) $(VSTAMP)
	TDL_SCALE=$(SCALE) TDL_STATIC=1 $(VENV)/bin/jupyter-book build --all -W -n --keep-going .
	@echo "The book: file://$(CURDIR)/_build/html/index.html"

test: $(STAMP) $(VSTAMP)
	@bash scripts/ensure_chromium.sh || true
	$(VENV)/bin/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# Library tests only (no notebooks, book or browser): seconds.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP) $(VSTAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=$(CURDIR) --ServerApp.default_url=/lab/tree/labs $(ALLOW_ROOT)

bench: $(STAMP)
	$(PY) -m pip install -q --no-deps -r benchmarks/requirements-bench.txt
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf _build assignments/release assignments/submitted assignments/autograded assignments/feedback assignments/gradebook.db

distclean: clean
	rm -rf $(VENV) $(VENDOR) js/node_modules
