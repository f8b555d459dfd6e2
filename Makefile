# Every target sets up .venv/ first (once; again when pyproject.toml changes).
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
QUESTION ?= Why did Russia decline?

.PHONY: setup run test lint bench eval clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## run: index the seed articles (only new or changed ones get embedded) and ask the seed question
run: setup
	$(BIN)/qa index seeds
	$(BIN)/qa ask "$(QUESTION)"

## test: lint, then the whole test suite (real model, real FAISS)
test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check qa tests bench
	$(BIN)/ruff format --check qa tests bench

## bench: indexing and query speed at 1k / 10k / 100k chunks (prints a table; not a test)
bench: setup
	$(BIN)/python bench/index_query.py

## eval: quality on the shared SQuAD 2.0 development set
eval: setup
	$(BIN)/qa eval ../shared/eval/squad2-dev --out test-artifacts/eval-squad2.json

clean:
	rm -rf $(VENV) *.egg-info test-artifacts
