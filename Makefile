# Two set-up commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_DEMO := $(VENV)/.stamp-demo
STAMP_DEV := $(VENV)/.stamp-dev

.PHONY: demo test lint typecheck bench proto clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP_DEMO): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[demo]'
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(STAMP_DEMO)

demo: $(STAMP_DEMO)
	$(BIN)/python examples/demo/run_demo.py

test: $(STAMP_DEV)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP_DEV)
	$(BIN)/python benchmarks/engine_overhead.py

# Regenerate the Open Inference Protocol messages from their .proto (grpcio-tools in a throwaway
# venv: conveyor does not need it to run). grpcio-tools 1.62 carries protoc 25, whose output
# has no runtime version check and loads on protobuf 4.25 to 7 (pyproject's range).
PROTO_DIR := src/conveyor/serving/protocols
proto:
	$(PYTHON) -m venv /tmp/conveyor-protoc
	/tmp/conveyor-protoc/bin/pip install -q 'grpcio-tools==1.62.3'
	cd $(PROTO_DIR) && /tmp/conveyor-protoc/bin/python -m grpc_tools.protoc -I. --python_out=. \
		--pyi_out=. open_inference.proto

clean:
	rm -rf $(VENV) .conveyor .pytest_cache .mypy_cache .ruff_cache
