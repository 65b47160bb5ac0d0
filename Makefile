# rehab-scale: the two commands of the README, and the pieces they are made of.
#
#   make lab     set everything up and deploy the default phase onto the local Docker lab
#   make test    run the whole test suite (lint, unit, integration, every Molecule scenario)

SHELL := /bin/bash
.DEFAULT_GOAL := help

PHASE ?= phase1
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
LAB_INVENTORY := inventories/lab
# Per-role scenarios first (fast feedback), the full phase last.
SCENARIOS ?= postgresql redis app nginx monitoring phase1 failover

# Copies of this collection that tools installed elsewhere (Molecule's prerun did) shadow the
# working tree; only the link in collections/ may provide rehab.scale.
STALE_COPIES := $(HOME)/.ansible/collections/ansible_collections/rehab/scale $(wildcard $(HOME)/.cache/ansible-compat/*/collections/ansible_collections/rehab/scale)

.PHONY: help lab lab-up lab-down lab-status deploy test lint unit integration molecule engine image venv clean no-stale-copies

help:
	@echo "make lab         set up and deploy $(PHASE) onto the local Docker lab"
	@echo "make test        lint, unit and integration tests, Molecule scenarios ($(SCENARIOS))"
	@echo "make lab-status  show the lab containers;  make lab-down  remove them"
	@echo "make deploy PHASE=phase1   re-run a phase playbook against the running lab"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q .
	touch $@

venv: $(VENV)/.installed

engine:
	scripts/docker-engine.sh

image: engine
	scripts/lab-image.sh

lab-up: venv image
	ansible-playbook -i $(LAB_INVENTORY) playbooks/lab.yml -e lab_action=up

lab-down: venv
	ansible-playbook -i $(LAB_INVENTORY) playbooks/lab.yml -e lab_action=down

lab-status: venv
	ansible-playbook -i $(LAB_INVENTORY) playbooks/lab.yml -e lab_action=status

deploy: venv
	ansible-playbook -i $(LAB_INVENTORY) playbooks/$(PHASE).yml

lab: lab-up deploy
	@echo
	@echo "rehab-agi ($(PHASE)) is up on the lab:"
	@echo "  app (through nginx): http://127.0.0.1:8080/api/agi/health"
	@echo "  readiness:           http://127.0.0.1:8080/api/agi/health/ready"
	@echo "  Prometheus:          http://127.0.0.1:9090/targets"
	@echo "Tear it down with:    make lab-down"

no-stale-copies:
	@for d in $(STALE_COPIES); do if [ -e "$$d" ] && [ ! -L "$$d" ]; then echo "removing stale installed copy $$d"; rm -rf "$$d"; fi; done

lint: venv no-stale-copies
	yamllint -s .
	ruff check .
	ruff format --check .
	ansible-lint --strict

unit: venv
	pytest -q tests/unit

integration: venv image
	pytest -q tests/integration

molecule: venv image no-stale-copies
	@set -e; for s in $(SCENARIOS); do \
	  echo "=== molecule test -s $$s"; start=$$(date +%s); \
	  molecule test -s $$s; \
	  echo "=== $$s passed in $$(( $$(date +%s) - start )) s"; \
	done

test: lint unit integration molecule

clean: lab-down
	rm -rf .cache
