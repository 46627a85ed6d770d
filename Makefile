# Two commands for a newcomer: `make book` (build the offline web book) and `make test`.
# Every target sets up what it needs (.venv from the pinned constraints, the offline JavaScript)
# and re-running it is cheap: stamps skip work when nothing changed.
SHELL := /bin/bash
# The Python that creates .venv: the first of python3.11, python3.12, python3.13, python3 on PATH
# (override: make test PYTHON=/usr/bin/python3.11). It must satisfy requires-python in pyproject.toml,
# which the env rule checks before it creates anything.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
# Where pip gets torch (see README, "Set-up"). Empty: pip's usual index, i.e. PyPI, whose Linux x86_64
# torch==2.13.0 is the CUDA build (with its nvidia-* and triton wheels, about 4.7 GB; it also runs
# without a GPU). TORCH_INDEX=https://download.pytorch.org/whl/cpu installs the CPU build
# (2.13.0+cpu) instead. Only torch itself comes from that index; its dependencies come from pip's
# usual index, pinned by constraints.txt.
TORCH_INDEX ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tdl-installed
VENDOR := _vendor
VSTAMP := $(VENDOR)/.stamp
HUB_STATE ?= /tmp/tdl-hub-demo
SCALE ?= cpu
PYTEST_ARGS ?=

.PHONY: all book test test-fast lab bench bench-nt-env vendor env browser clean distclean help hub-demo hub-demo-stop

help:
	@echo "make book   build the web book (TDL_SCALE=$(SCALE)) and print the path of index.html"
	@echo "make test   run the whole test suite (library, notebooks, nbgrader, book, browser)"
	@echo "make lab    open JupyterLab on the course"
	@echo "make bench  run the benchmarks (prints ratio tables; not tests)"
	@echo "make env    only create .venv (every target above does it first; see README, Set-up)"
	@echo "make test-fast  library tests only (seconds)"
	@echo "make hub-demo   (root) a throwaway class JupyterHub on 127.0.0.1: prints URL, logins, how to stop"
	@echo "make hub-demo-stop  stop it and delete its accounts (deploy/hub/README.md)"
	@echo "Variables:  PYTHON=$(PYTHON) (creates .venv; must satisfy requires-python)"
	@echo "            TORCH_INDEX=$(TORCH_INDEX) (empty: torch from PyPI, the CUDA build on Linux x86_64;"
	@echo "            TORCH_INDEX=https://download.pytorch.org/whl/cpu: the CPU build; set it before .venv exists)"
	@echo "            SCALE=$(SCALE) (lab scale of make book: ci, cpu, gpu)"
	@echo "            TDL_HUB_URL, TDL_REPO_URL [, TDL_REPO_BRANCH] (environment): make book puts a"
	@echo "            'launch on the class JupyterHub' button (nbgitpuller) on every lab page"

env: $(STAMP)

# Checks the running Python against requires-python of pyproject.toml (clauses >=X.Y[.Z] and <X.Y[.Z]);
# plain Python 3, so that an old interpreter gets this message rather than a pip resolution error.
define TDL_CHECK_PYTHON
import re, sys
spec = re.search(r'^requires-python\s*=\s*"([^"]*)"', open("pyproject.toml").read(), re.M).group(1)
have = tuple(sys.version_info[:3])
def holds(clause):
    m = re.match(r"\s*(>=|<)\s*([0-9]+(?:[.][0-9]+)*)\s*\Z", clause)
    if not m:
        sys.exit("make cannot check the clause %r of requires-python in pyproject.toml" % clause)
    want = tuple(int(x) for x in m.group(2).split("."))
    return have[:len(want)] >= want if m.group(1) == ">=" else have[:len(want)] < want
if not all(holds(c) for c in spec.split(",")):
    sys.exit("make: Python %s is needed (requires-python in pyproject.toml), but %s is Python %s. "
             "Install one that fits, or name it: make test PYTHON=/path/to/python3.11"
             % (spec, sys.executable, ".".join(map(str, have))))
endef
export TDL_CHECK_PYTHON

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "make: no python3.11 or python3 on PATH; install Python 3.11 or pass make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@$(PYTHON) -c "$$TDL_CHECK_PYTHON"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "$$TDL_CHECK_PYTHON" || { echo "make: $(VENV) was made by another Python; remove it (make distclean) and re-run" >&2; exit 1; }
	$(PY) -m pip install -q --upgrade "pip>=24"
	# torch first and exactly pinned: an unpinned torch would pull a newer multi-GB CUDA build.
	# With TORCH_INDEX only torch comes from that index (--no-deps); the next command installs
	# its dependencies from pip's usual index, pinned by constraints.txt.
	$(PY) -m pip install -q -c constraints.txt $(if $(TORCH_INDEX),--no-deps --index-url "$(TORCH_INDEX)") "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[course,dev]"
	$(PY) -c "import torch, tdlcourse; v = torch.__version__; assert v.split('+')[0] == '2.13.0', v; print('torch', v, '(CUDA build)' if torch.version.cuda else '(CPU build)')"
	@touch $@

vendor: $(VSTAMP)

$(VSTAMP): js/package.json js/package-lock.json $(STAMP) scripts/vendor_js.sh
	bash scripts/vendor_js.sh $(PY) $(VENDOR)
	@touch $@

browser:
	@bash scripts/ensure_chromium.sh

# The book is rebuilt (every notebook executed once, at SCALE) only when a page, a lab, the
# library or the configuration changed, or SCALE or the hub launch settings did (TDL_HUB_URL,
# TDL_REPO_URL, TDL_REPO_BRANCH: see book/_ext/tdl_hub.py): otherwise `make book` is instant.
HUB_KEY := $(shell printf '%s|%s|%s' "$$TDL_HUB_URL" "$$TDL_REPO_URL" "$$TDL_REPO_BRANCH" | cksum | cut -d' ' -f1)
BOOK_STAMP := _build/.book-$(SCALE)-$(HUB_KEY)
BOOK_INPUTS := _config.yml _toc.yml $(shell find book labs src -type f \( -name '*.md' -o -name '*.ipynb' \
                 -o -name '*.py' -o -name '*.bib' \) -not -path '*/.ipynb_checkpoints/*' 2>/dev/null)

book: $(BOOK_STAMP)
	@echo "The book: file://$(CURDIR)/_build/html/index.html"

$(BOOK_STAMP): $(STAMP) $(VSTAMP) $(BOOK_INPUTS)
	@rm -f _build/.book-*
	TDL_SCALE=$(SCALE) TDL_STATIC=1 $(VENV)/bin/jupyter-book build --all -W -n --keep-going .
	@touch $@

test: $(STAMP) $(VSTAMP)
	@bash scripts/ensure_chromium.sh || true
	$(VENV)/bin/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# Library tests only (no notebooks, book or browser): seconds.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

# deploy/lab first on JUPYTER_CONFIG_PATH: notebooks autosave every 20 s, not JupyterLab's 120 s, since
# nbgrader's Submit sends the file on disk (deploy/lab/README.md).
lab: $(STAMP) $(VSTAMP)
	JUPYTER_CONFIG_PATH="$(CURDIR)/deploy/lab$(if $(JUPYTER_CONFIG_PATH),:$(JUPYTER_CONFIG_PATH))" $(VENV)/bin/jupyter lab --notebook-dir=$(CURDIR) --ServerApp.default_url=/lab/tree/labs $(ALLOW_ROOT)

# neural-tangents (the baseline of benchmarks/ntk.py) needs an old JAX and TensorFlow: its own environment.
NT_VENV := .venv-bench-nt
bench-nt-env: $(NT_VENV)/.stamp

$(NT_VENV)/.stamp: benchmarks/requirements-nt.txt
	@test -x $(NT_VENV)/bin/python || $(PYTHON) -m venv $(NT_VENV)
	$(NT_VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	$(NT_VENV)/bin/python -m pip install -q --no-deps -r benchmarks/requirements-nt.txt
	$(NT_VENV)/bin/python -c "import neural_tangents, jax; print('neural-tangents', neural_tangents.__version__, 'jax', jax.__version__)"
	@touch $@

bench: $(STAMP) $(NT_VENV)/.stamp
	$(PY) -m pip install -q --no-deps -r benchmarks/requirements-bench.txt
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf _build assignments/release assignments/submitted assignments/autograded assignments/feedback assignments/gradebook.db

distclean: clean
	rm -rf $(VENV) $(NT_VENV) $(VENDOR) js/node_modules

# A throwaway class hub (deploy/hub): JupyterHub on 127.0.0.1 with demo accounts; root only.
hub-demo: $(VSTAMP)
	@bash deploy/hub/demo.sh start $(HUB_STATE)

hub-demo-stop:
	@bash deploy/hub/demo.sh stop $(HUB_STATE)
