# `make train` and `make test` do all the set-up: a .venv with the pinned stack, then the job.
VENV ?= .venv
PY := $(VENV)/bin/python
# The offline Fashion-MNIST copy beside the checkout, when there is one; else the loader's
# default (~/.cache/nin/fashion-mnist, downloaded on first use).
SHARED_DATA := $(abspath ../shared/data/fashion-mnist)
export NIN_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)/train-labels-idx1-ubyte.gz),$(SHARED_DATA),)

.PHONY: setup train test shapes bench
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all,test,notebook]"
	# the real d2l package, for the parity tests; --no-deps keeps this stack's pins
	$(PY) -m pip install -q --no-deps d2l==1.0.3
	touch $@

# The main job: the chapter's NiN, CPU-friendly recipe (96x96, 3 epochs; see README).
train: setup
	$(PY) -m nin train --backend torch --epochs 3 --resize 96 --batch-size 128

test: setup
	$(PY) -m pytest -q

shapes: setup
	$(PY) -m nin shapes --backend all

# The full benchmark set (see README, "Speed"); minutes on a 2-core CPU.
bench: setup
	$(PY) -m benchmarks.train --backend all --size 224 96 --batch-size 128 --steps 5
	$(PY) -m benchmarks.data --backend all --size 224
	$(PY) -m benchmarks.memory --backend all --size 224 --batch-size 32
	$(PY) -m benchmarks.torch_step --size 224 --batch-size 128 --steps 3 --compile
