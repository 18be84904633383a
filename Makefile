# `make train` and `make test` do all the set-up: a .venv with the pinned stack, then the job.
VENV ?= .venv
PY := $(VENV)/bin/python
# The offline Fashion-MNIST copy beside the checkout, when there is one; else the loader's
# default (~/.cache/nin/fashion-mnist, downloaded on first use).
SHARED_DATA := $(abspath ../shared/data/fashion-mnist)
export NIN_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)/train-labels-idx1-ubyte.gz),$(SHARED_DATA),)

.PHONY: setup setup-gpu train test test-browser lint docs test-numpy2 shapes bench gpu-check mutation
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all,test,d2l,notebook,export,docs]"
	# the real d2l package, for the parity tests; --no-deps keeps this stack's pins
	$(PY) -m pip install -q --no-deps d2l==1.0.3
	touch $@

# The same stack's GPU builds (docs/gpu.md): CUDA torch from PyPI, tensorflow[and-cuda],
# mxnet-cu112 in place of the CPU mxnet. Then `make train` and `make test` use them.
setup-gpu:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	-$(PY) -m pip uninstall -q -y mxnet
	$(PY) -m pip install -q -e ".[gpu,test,d2l,notebook,export,docs]"
	$(PY) -m pip install -q --no-deps d2l==1.0.3
	touch $(VENV)/.installed

# The main job: the chapter's NiN, nin's sprint recipe (67x67, 2 epochs; see README).
train: setup
	$(PY) -m nin train --backend torch --recipe sprint --epochs 2 --resize 67 --batch-size 128

# lint, then the suite on two workers (pytest-xdist; worksteal evens out the long cases); the
# browser check runs apart (test-browser)
test: lint
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not browser"

# The reader's view in headless Chromium: the notebooks in JupyterLab, the docs site built
# strictly and opened (needs Debian's chromium; CI installs it)
test-browser: setup
	$(PY) -m pytest -q -m browser tests/test_browser.py

# what the pre-commit hooks run (.pre-commit-config.yaml): lint, format, types
lint: setup
	$(PY) -m ruff check nin tests benchmarks
	$(PY) -m ruff format --check nin tests benchmarks
	$(PY) -m mypy

# The docs site, into site/: README, docs/*.md, the five notebooks executed (quick mode for
# the training cells), the API from the docstrings; strict, so a broken link fails it
docs: setup
	$(PY) scripts/assemble_docs.py build/docs
	NIN_QUICK=1 MPLBACKEND=module://matplotlib_inline.backend_inline PYTHONPATH=$(CURDIR) \
	  $(PY) -m mkdocs build --strict

# PyTorch alone on numpy 2, the stack GPU machines run: the core and PyTorch tests (CI runs
# this after `make test`)
NP2 := .venv-np2
test-numpy2:
	test -x $(NP2)/bin/python || python3 -m venv $(NP2)
	$(NP2)/bin/python -m pip install -q -e ".[torch,test]" "torch==2.13.0" "numpy>=2"
	$(NP2)/bin/python -c "import numpy; assert numpy.__version__ >= '2', numpy.__version__"
	NIN_TEST_BACKENDS=torch $(NP2)/bin/python -m pytest -q -m "not d2l" tests/test_spec.py \
	  tests/test_resources.py tests/test_data.py tests/test_backends.py tests/test_cli.py \
	  tests/test_cli_shapes.py tests/test_training.py tests/test_faithful.py tests/test_chapter.py \
	  tests/test_compare.py tests/test_reliability.py tests/test_callbacks.py tests/test_gpu.py

# On a machine with a GPU: each backend in its own process, records in bench-gpu.jsonl
gpu-check: setup
	bash benchmarks/gpu.sh

shapes: setup
	$(PY) -m nin shapes --backend all

# The step, data and memory benchmarks (docs/benchmarks.md); minutes on a 2-core CPU.
bench: setup
	$(PY) -m benchmarks.train --backend all --size 224 96 --batch-size 128 --steps 5
	$(PY) -m benchmarks.data --backend all --size 224
	$(PY) -m benchmarks.memory --backend all --size 224 --batch-size 32

# Does the suite notice a broken spec? mutmut (pinned in the `mutation` extra, installed here
# when missing) mutates nin/spec.py, resources.py and weights.py ([tool.mutmut] in
# pyproject.toml) and runs the quick tests that reach each change; PyTorch only, one OpenMP
# thread a worker. A fresh run each time: about an hour on 2 shared cores (docs/design.md);
# then the counts per file and the survivors (`.venv/bin/mutmut show <name>`: one's diff).
MUTMUT := $(VENV)/bin/mutmut
mutation: setup
	$(MUTMUT) --version 2>/dev/null | grep -q "3.8.1" || $(PY) -m pip install -q -e ".[mutation]"
	rm -rf mutants
	NIN_TEST_BACKENDS=torch OMP_NUM_THREADS=1 $(MUTMUT) run --max-children 2
	$(MUTMUT) results --all true | $(PY) scripts/mutation_summary.py
	$(MUTMUT) results
