# Every target sets up a fresh machine by itself: .venv, the package, the Fashion-MNIST Debian package.
PY      := .venv/bin/python
STAMP   := .venv/.hwnas-installed
FMNIST  := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PYTEST_ARGS ?=
OFA     := ofa==0.1.0.post202307202001

.PHONY: test test-fast lint demo bench bench-quick setup data clean

setup: $(STAMP) data

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,mobile]'
	$(PY) -m pip install -q --no-deps '$(OFA)'  # the reference the OFA import is tested against
	touch $(STAMP)

data:
	@if [ ! -f $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist'"; fi; \
	fi

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: lint
	$(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

demo: setup
	.venv/bin/hwnas quickstart --out runs/quickstart --force

bench: setup
	$(PY) bench/run_all.py

bench-quick: setup
	$(PY) bench/run_all.py --quick

clean:
	rm -rf .venv *.egg-info .pytest_cache runs
