# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
#: What serving needs (`make run`): Keyplane with its PostgreSQL and Redis drivers.
RUN_STAMP := $(VENV)/.installed-run
#: What testing needs on top (`make test`, `make install`): the dev extras.
STAMP := $(VENV)/.installed
# IonQ's clients for the end-to-end tests live in their own environment:
# the ionq package needs pydantic 1, Keyplane pydantic 2 (tests/ionq/clients/README.md).
IONQ_VENV := .venv-ionq
IONQ_PYTHON ?= $(PYTHON)
IONQ_REQUIREMENTS := tests/ionq/clients/requirements.txt
IONQ_STAMP := $(IONQ_VENV)/.installed

.PHONY: install install-run ionq-clients run test lint types check-python clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Keyplane needs Python 3.11 or newer (set PYTHON=python3.x)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Serving installs no test tools: in particular not keyrings.alt, whose plain-text
# "keyring" `keyplane login` would otherwise meet (it is refused as a key store anyway).
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[postgres,redis]'
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,redis]'
	@touch $(STAMP)

install-run: $(RUN_STAMP)

install: $(STAMP)

# The ionq package installs only on Python < 3.13: with a newer Python the
# end-to-end tests skip and say why (IONQ_PYTHON=python3.12 runs them).
$(IONQ_STAMP): $(IONQ_REQUIREMENTS)
	@if $(IONQ_PYTHON) -c 'import sys; sys.exit(0 if sys.version_info < (3, 13) else 1)'; then \
	  $(IONQ_PYTHON) -m venv $(IONQ_VENV) && \
	  $(IONQ_VENV)/bin/python -m pip install --quiet --upgrade pip && \
	  $(IONQ_VENV)/bin/python -m pip install --quiet -r $(IONQ_REQUIREMENTS) && \
	  touch $(IONQ_STAMP); \
	else \
	  echo "IonQ's clients need Python < 3.13; their end-to-end tests will skip (set IONQ_PYTHON=python3.12 to run them)."; \
	fi

ionq-clients: $(IONQ_STAMP)

run: install-run
	$(BIN)/keyplane serve

lint: install
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

types: install
	$(BIN)/mypy

test: lint types ionq-clients
	$(BIN)/pytest

clean:
	rm -rf $(VENV) $(IONQ_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
