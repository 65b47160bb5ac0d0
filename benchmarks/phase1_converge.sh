#!/usr/bin/env bash
# Benchmark: first Phase 1 converge on fresh lab containers, then the idempotent re-run.
#   benchmarks/phase1_converge.sh            (needs the venv, a Docker engine and the base image: make lab-up once)
# Prints wall-clock seconds of each run and the summed `changed` count of the second (must be 0).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_NOCOLOR=1
inv=inventories/lab
ansible-playbook -i "$inv" playbooks/lab.yml -e lab_action=down >/dev/null
ansible-playbook -i "$inv" playbooks/lab.yml -e lab_action=up >/dev/null
run() {
  local log=$1
  local start
  start=$(date +%s%N)
  ansible-playbook -i "$inv" playbooks/phase1.yml >"$log" 2>&1
  echo $(( ($(date +%s%N) - start) / 1000000 ))
}
first=$(run /tmp/rehab-phase1-first.log)
second=$(run /tmp/rehab-phase1-second.log)
changed=$(awk '/PLAY RECAP/{r=1;next} r && /changed=/{sub(/.*changed=/,"");split($0,a," ");s+=a[1]} END{print s+0}' /tmp/rehab-phase1-second.log)
printf 'phase1 first converge: %d.%03d s\nphase1 second run:     %d.%03d s (changed=%d)\n' \
  $((first / 1000)) $((first % 1000)) $((second / 1000)) $((second % 1000)) "$changed"
[ "$changed" -eq 0 ]
