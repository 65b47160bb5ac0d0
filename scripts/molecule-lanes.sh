#!/usr/bin/env bash
# Run Molecule scenarios in lanes: each argument is one lane, a space-separated list of scenarios run
# in order; the lanes run side by side. Each lane writes to .cache/molecule/<first scenario>.log,
# printed whole when the lane ends (so CI's log reads lane by lane, not interleaved), and the run
# fails when any lane failed, after every lane has finished (no container is left half tested).
#
#   scripts/molecule-lanes.sh "haproxy"                        # one lane
#   scripts/molecule-lanes.sh "phase2 phase1" "failover backup" # two lanes at once
#
# PLAIN_SCENARIOS (environment): scenarios run under Ansible's own strategies, not Mitogen.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=.cache/molecule
mkdir -p "$logs"

lane() {
  local s plain start
  for s in "$@"; do
    plain=()
    case " ${PLAIN_SCENARIOS:-} " in *" $s "*) plain=(-u ANSIBLE_STRATEGY -u ANSIBLE_STRATEGY_PLUGINS) ;; esac
    echo "=== molecule test -s $s${plain:+ (Ansible strategies, not Mitogen)}"
    start=$(date +%s)
    if ! env "${plain[@]}" molecule test -s "$s"; then
      echo "=== $s FAILED after $(($(date +%s) - start)) s"
      return 1
    fi
    echo "=== $s passed in $(($(date +%s) - start)) s"
  done
}

if [ $# -eq 1 ]; then
  # shellcheck disable=SC2086  # a lane is a word list
  lane $1
  exit
fi

pids=() names=()
for l in "$@"; do
  # shellcheck disable=SC2086
  set -- $l
  log="$logs/$1.log"
  lane "$@" >"$log" 2>&1 &
  pids+=($!) names+=("$log")
  echo "=== lane started: $l (log $log)"
done
rc=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then rc=1; fi
  echo "=== lane log ${names[$i]}"
  cat "${names[$i]}"
done
for log in "${names[@]}"; do grep -h '^=== .* \(passed in\|FAILED after\)' "$log"; done
exit $rc
