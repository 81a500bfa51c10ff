# otactl: `make demo` tries it on a local simulated cluster, `make test` runs every test.
.DEFAULT_GOAL := help
PY := .venv/bin/python
OTACTL := .venv/bin/otactl

.PHONY: help setup demo demo-down test lint format bench golden mutate

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: ## Install Debian packages, the venv and the local cluster binaries (idempotent)
	@scripts/setup.sh

demo: setup ## Local cluster, otactl up, a device bundle, health: the whole job end to end
	@scripts/demo.sh

demo-down: ## Stop the demo's local cluster
	-KUBECONFIG=generated/local/kubeconfig OTACTL_PROFILE=local $(OTACTL) down --yes
	$(OTACTL) local-cluster down

test: setup ## Run the whole test suite (unit and integration, real servers)
	$(PY) -m pytest -q

lint: setup ## ruff (lint and format check), mypy on otactl/, checkov on the rendered manifests
	.venv/bin/ruff check otactl tests bench contrib
	.venv/bin/ruff format --check otactl tests bench contrib
	.venv/bin/mypy otactl
	scripts/scan.sh

format: ## Reformat the code with ruff
	.venv/bin/ruff format otactl tests bench contrib
	.venv/bin/ruff check --fix otactl tests bench contrib

bench: setup ## Run the benchmarks (figures and ratios against their baselines)
	$(PY) bench/bench_devices.py
	$(PY) bench/bench_deploy.py
	$(PY) bench/bench_credentials.py

mutate: setup ## Mutation testing of the core modules (mutmut); every survivor must be in tests/mutation-survivors.md
	rm -rf mutants
	.venv/bin/mutmut run --max-children $$(nproc)
	.venv/bin/mutmut results --all true > mutants/results.txt
	$(PY) scripts/mutation_summary.py < mutants/results.txt
