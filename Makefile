# baseimage: build, prove and publish the company's AWS Lambda base images.
#
#   make demo   the main job on the local stack: build, test and publish python3.11
#   make test   every test (unit + integration on the local stack)
#
# The local stack is this machine's stand-in for AWS: a Docker engine, a registry on
# 127.0.0.1:5000, moto's ECR API on 127.0.0.1:5050 and stand-in Lambda base images.
# Everything below is started by `make stack`; nothing needs installing by hand.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV ?= .venv
BIN := $(VENV)/bin
VERSION ?= 1.4.0
RUNTIME ?= python3.11

# Where the tool finds the local stack. These are the standard settings a company
# would point at its own endpoints; the AWS keys are moto's dummies, not credentials.
export AWS_ENDPOINT_URL_ECR ?= http://127.0.0.1:5050
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_ACCESS_KEY_ID ?= local-stack-dummy
export AWS_SECRET_ACCESS_KEY ?= local-stack-dummy
# There is no instance metadata service here; never let boto3 go looking for one.
export AWS_EC2_METADATA_DISABLED ?= true
export BASEIMAGE_REGISTRY_ENDPOINT ?= us-east-1=http://127.0.0.1:5000,eu-west-1=http://127.0.0.1:5002
# This machine's outbound TLS is inspected: builds must trust its CA bundle.
export BASEIMAGE_CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: install stack demo env test unit integration lint bench stack-down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

stack: install
	bash stack/up.sh >/dev/null
	bash stack/standins.sh all

demo: stack
	$(BIN)/baseimage validate
	$(BIN)/baseimage build --runtime $(RUNTIME)
	$(BIN)/baseimage test --runtime $(RUNTIME)
	$(BIN)/baseimage publish --version $(VERSION) --runtime $(RUNTIME)

# `eval "$$(make -s env)"` sets up a shell to run baseimage by hand on the stack.
env:
	@echo "export AWS_ENDPOINT_URL_ECR='$(AWS_ENDPOINT_URL_ECR)'"
	@echo "export AWS_DEFAULT_REGION='$(AWS_DEFAULT_REGION)'"
	@echo "export AWS_ACCESS_KEY_ID='$(AWS_ACCESS_KEY_ID)'"
	@echo "export AWS_SECRET_ACCESS_KEY='$(AWS_SECRET_ACCESS_KEY)'"
	@echo "export AWS_EC2_METADATA_DISABLED=true"
	@echo "export BASEIMAGE_REGISTRY_ENDPOINT='$(BASEIMAGE_REGISTRY_ENDPOINT)'"
	@echo "export BASEIMAGE_CA_BUNDLE='$(BASEIMAGE_CA_BUNDLE)'"
	@echo "export PATH=\"$(CURDIR)/$(BIN):\$$PATH\""

test: stack
	$(BIN)/pytest

unit: install
	$(BIN)/pytest -m "not integration"

integration: stack
	$(BIN)/pytest -m integration

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: stack
	$(BIN)/python bench/build_publish.py

stack-down:
	bash stack/down.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
