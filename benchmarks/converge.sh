#!/usr/bin/env bash
# Benchmark: first converge of a phase on fresh lab containers, then idempotent re-runs.
#   benchmarks/converge.sh phase1|phase2 [RERUNS]      (default 3 re-runs)
#   STRATEGY=ansible benchmarks/converge.sh phase2     (Ansible's own strategies instead of Mitogen)
# Runs through the Makefile (make lab-up / make deploy), so the strategy, inventory and settings are
# the ones `make lab` uses. Needs the venv, a Docker engine and the base image (make lab-up once).
# Prints the wall time of each run, the median re-run, and the summed `changed` of every re-run
# (must be 0). It recreates the lab containers: the lab's data is lost.
set -euo pipefail
cd "$(dirname "$0")/.."
phase=${1:-phase2}
reruns=${2:-3}
case "$phase" in
  phase1 | phase2) ;;
  *) echo "usage: $0 phase1|phase2 [RERUNS] (got '$phase')" >&2; exit 2 ;;
esac
strategy=${STRATEGY:-mitogen}
export ANSIBLE_NOCOLOR=1
make -s lab-down PHASE=phase2 >/dev/null
make -s lab-up PHASE="$phase" >/dev/null
run() {
  local log=$1 start
  start=$(date +%s%N)
  make -s deploy PHASE="$phase" STRATEGY="$strategy" >"$log" 2>&1 || { echo "failed, see $log" >&2; exit 1; }
  echo $(( ($(date +%s%N) - start) / 1000000 ))
}
changed_of() {
  awk '/PLAY RECAP/{r=1;next} r && /changed=/{sub(/.*changed=/,"");split($0,a," ");s+=a[1]} END{print s+0}' "$1"
}
ms() { printf '%d.%01d s' $(($1 / 1000)) $(($1 % 1000 / 100)); }
first=$(run "/tmp/rehab-$phase-first.log")
echo "$phase ($strategy) first converge: $(ms "$first")"
times=()
total_changed=0
for i in $(seq 1 "$reruns"); do
  t=$(run "/tmp/rehab-$phase-rerun$i.log")
  c=$(changed_of "/tmp/rehab-$phase-rerun$i.log")
  total_changed=$((total_changed + c))
  times+=("$t")
  echo "$phase ($strategy) re-run $i: $(ms "$t") (changed=$c)"
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
echo "$phase ($strategy) median re-run: $(ms "$median") over $reruns, changed=$total_changed"
[ "$total_changed" -eq 0 ]
