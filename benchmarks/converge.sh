#!/usr/bin/env bash
# Benchmark: first converge of a phase on fresh lab containers, then the idempotent re-run.
#   benchmarks/converge.sh phase1|phase2     (needs the venv, a Docker engine and the base image: make lab-up once)
# Prints wall-clock seconds of each run and the summed `changed` count of the second (must be 0).
# It recreates the lab containers of that phase's inventory: the lab's data is lost.
set -euo pipefail
cd "$(dirname "$0")/.."
phase=${1:-phase2}
case "$phase" in
  phase1) inv=inventories/lab-phase1 ;;
  phase2) inv=inventories/lab ;;
  *) echo "usage: $0 phase1|phase2 (got '$phase')" >&2; exit 2 ;;
esac
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_NOCOLOR=1
ansible-playbook -i inventories/lab playbooks/lab.yml -e lab_action=down >/dev/null
ansible-playbook -i "$inv" playbooks/lab.yml -e lab_action=up >/dev/null
run() {
  local log=$1
  local start
  start=$(date +%s%N)
  ansible-playbook -i "$inv" "playbooks/$phase.yml" >"$log" 2>&1
  echo $(( ($(date +%s%N) - start) / 1000000 ))
}
first=$(run "/tmp/rehab-$phase-first.log")
second=$(run "/tmp/rehab-$phase-second.log")
changed=$(awk '/PLAY RECAP/{r=1;next} r && /changed=/{sub(/.*changed=/,"");split($0,a," ");s+=a[1]} END{print s+0}' "/tmp/rehab-$phase-second.log")
printf '%s first converge: %d.%03d s\n%s second run:     %d.%03d s (changed=%d)\n' \
  "$phase" $((first / 1000)) $((first % 1000)) "$phase" $((second / 1000)) $((second % 1000)) "$changed"
[ "$changed" -eq 0 ]
