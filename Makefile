# rehab-scale: the two commands of the README, and the pieces they are made of.
#
#   make lab     set everything up and deploy the default phase onto the local Docker lab
#   make test    run the whole test suite (lint, unit, integration, every Molecule scenario)

SHELL := /bin/bash
.DEFAULT_GOAL := help

PHASE ?= phase2
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Mitogen for Ansible (PyPI `mitogen`, pinned in pyproject.toml) runs each host's tasks in one
# persistent Python interpreter reached through one `docker exec` (or one SSH connection) instead of
# a new interpreter and a new exec per task; plays that ask for the free strategy get mitogen_free.
# `make ... STRATEGY=ansible` runs Ansible's own strategies instead; both are tested (docs/benchmarks.md).
STRATEGY ?= mitogen
ifeq ($(STRATEGY),mitogen)
# Expanded when each recipe runs (not $(wildcard): make caches directories, and on a fresh machine the
# venv appears only during the run).
export ANSIBLE_STRATEGY_PLUGINS = $(shell ls -d $(CURDIR)/$(VENV)/lib/python3*/site-packages/ansible_mitogen/plugins/strategy 2>/dev/null)
export ANSIBLE_STRATEGY := mitogen_linear
else ifneq ($(STRATEGY),ansible)
$(error STRATEGY must be mitogen or ansible, not '$(STRATEGY)')
endif
# The lab's shape follows the phase: inventories/lab (Phase 2, the default), inventories/lab-phase1 or
# inventories/lab-phase3 (the shards; start it from an empty lab, see its hosts.yml).
LAB_INVENTORY ?= $(if $(filter phase1,$(PHASE)),inventories/lab-phase1,$(if $(filter phase3,$(PHASE)),inventories/lab-phase3,inventories/lab))
# Every scenario, and how `make molecule` runs them: MOLECULE_FIRST (haproxy creates the lab CA the
# later scenarios share; `make test` runs the lint, unit and integration checks beside it), then
# MOLECULE_LANES side by side (a lane is its scenarios joined by '+', run in order). Lanes pair a
# scenario whose time is converging (CPU) with one whose time is waiting (failover, backup: timeouts
# and restarts they test), so two cores do both at once, and carry about the same minutes (phase2
# and shards against the other four); a third lane only stretches the others (docs/benchmarks.md
# has the figures).
# `make molecule SCENARIOS="failover backup"` runs those, one after the other. Phase 1 carries the
# tests of the roles it deploys; HAProxy keeps a scenario of its own (its pool tests);
# docs/benchmarks.md says what covers what.
MOLECULE_FIRST ?= haproxy
MOLECULE_LANES ?= phase2+shards k3s+phase1+failover+backup
SCENARIOS ?= $(MOLECULE_FIRST) $(subst +, ,$(MOLECULE_LANES))
# Scenarios run under Ansible's own strategies whatever STRATEGY says, so CI keeps the default path
# working too. haproxy (three containers, 8 tests, about 70 s alone) runs in the first stage beside
# the checks, off the lanes; phase1 under Mitogen re-runs in 41 s instead of 58 s, and its lane is
# the long one (docs/benchmarks.md).
PLAIN_SCENARIOS ?= haproxy

# Copies of this collection that tools installed elsewhere (Molecule's prerun did) shadow the
# working tree; only the link in collections/ may provide rehab.scale.
STALE_COPIES := $(HOME)/.ansible/collections/ansible_collections/rehab/scale $(wildcard $(HOME)/.cache/ansible-compat/*/collections/ansible_collections/rehab/scale)

.PHONY: help lab lab-up lab-down lab-status deploy release test lint unit integration host-servers molecule molecule-first molecule-lanes engine image venv clean no-stale-copies

help:
	@echo "make lab         set up and deploy $(PHASE) onto the local Docker lab"
	@echo "make test        lint, unit and integration tests, Molecule scenarios ($(SCENARIOS))"
	@echo "make lab-status  show the lab containers;  make lab-down  remove them"
	@echo "make deploy PHASE=phase1   re-run a phase playbook against the running lab"
	@echo "make release     build the reference rehab-agi wheel the lab deploys (roles/app/files/rehab-agi.whl)"
	@echo "make lab PHASE=phase1 then make lab   deploy Phase 1, then upgrade it in place to Phase 2"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# --no-compile: the ansible package carries thousands of collection modules that are never
	# imported here; Python compiles what is imported, when it is.
	$(BIN)/pip install -q --no-compile .
	touch $@

venv: $(VENV)/.installed

engine:
	scripts/docker-engine.sh

image: engine
	scripts/lab-image.sh

# The reference service's release artifact (app/): the app role's default app_release. The build is
# reproducible (same source, same bytes), so rebuilding it every time changes nothing on the hosts.
release: venv
	scripts/build-release.sh

lab-up: venv image
	ansible-playbook -i $(LAB_INVENTORY) playbooks/lab.yml -e lab_action=up

lab-down: venv
	ansible-playbook -i $(LAB_INVENTORY) playbooks/lab.yml -e lab_action=down

lab-status: venv
	ansible-playbook -i $(LAB_INVENTORY) playbooks/lab.yml -e lab_action=status

deploy: venv release
	ansible-playbook -i $(LAB_INVENTORY) playbooks/$(PHASE).yml

lab: lab-up deploy
	@echo
	@echo "rehab-agi ($(PHASE)) is up on the lab:"
ifeq ($(PHASE),phase1)
	@echo "  app (through nginx): https://127.0.0.1:8443/api/agi/health"
	@echo "  readiness:           https://127.0.0.1:8443/api/agi/health/ready"
	@echo "  the lab CA (curl --cacert): ~/.local/share/rehab-scale/pki/rehab-lab/ca.pem"
else
	@echo "  app (through HAProxy, 3 servers): https://127.0.0.1:8443/api/agi/health"
	@echo "  HAProxy statistics:  https://127.0.0.1:8404/stats  (user admin, password in inventories/lab/group_vars/all/vault.yml)"
	@echo "  the lab CA (curl --cacert): ~/.local/share/rehab-scale/pki/rehab-lab/ca.pem"
	@echo "  Alertmanager:        https://127.0.0.1:9093  (user rehab-monitor, password in vault.yml)"
	@echo "  readiness:           https://127.0.0.1:8443/api/agi/health/ready"
endif
ifeq ($(PHASE),phase3)
	@echo "  sharded by beneficiary ID (inventories/lab-phase3): cross-shard listing https://127.0.0.1:8443/api/agi/beneficiaries"
	@echo "  on-call per shard:   ansible-playbook -i inventories/lab-phase3 playbooks/failover.yml -e shard=shard1"
endif
	@echo "  Prometheus:          https://127.0.0.1:9090/targets  (user rehab-monitor, password in inventories/lab/group_vars/all/vault.yml)"
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

# Also runs PostgreSQL and Redis on this machine (loopback): scripts/host-servers.sh installs them.
integration: venv image release host-servers
	pytest -q tests/integration

host-servers:
	scripts/host-servers.sh

molecule: venv image release no-stale-copies
ifeq ($(origin SCENARIOS),command line)
	PLAIN_SCENARIOS="$(PLAIN_SCENARIOS)" scripts/molecule-lanes.sh "$(SCENARIOS)"
else
	$(MAKE) --no-print-directory molecule-first molecule-lanes
endif

molecule-first: venv image release no-stale-copies
	PLAIN_SCENARIOS="$(PLAIN_SCENARIOS)" scripts/molecule-lanes.sh $(foreach l,$(MOLECULE_FIRST),"$(l)")

molecule-lanes: venv image release no-stale-copies
	PLAIN_SCENARIOS="$(PLAIN_SCENARIOS)" scripts/molecule-lanes.sh $(foreach l,$(MOLECULE_LANES),"$(subst +, ,$(l))")

# The checks (lint, unit, integration: one core at a time) run beside the first Molecule stage, two
# jobs at once, each target's output printed whole when it ends; then the lanes. Any failure fails
# the run, once the jobs already started have finished.
test:
	$(MAKE) --no-print-directory -j2 --output-sync=target lint unit integration molecule-first
	$(MAKE) --no-print-directory molecule-lanes

clean: lab-down
	rm -rf .cache
