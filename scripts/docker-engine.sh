#!/usr/bin/env bash
# Make sure a Docker engine answers. Where one already does (a workstation, a CI runner with
# Docker), do nothing. Otherwise install Debian's docker.io and start dockerd in the background
# (machines without systemd as PID 1, such as CI containers).
set -euo pipefail

if docker info >/dev/null 2>&1; then
  echo "docker-engine: an engine answers"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "docker-engine: no engine answers and dockerd is missing; install Docker (apt-get install docker.io) and retry" >&2
    exit 1
  fi
  echo "docker-engine: installing docker.io from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

if [ -d /run/systemd/system ] && systemctl start docker 2>/dev/null; then
  echo "docker-engine: started docker.service"
else
  echo "docker-engine: starting dockerd in the background (log: /var/log/rehab-dockerd.log)"
  nohup dockerd >/var/log/rehab-dockerd.log 2>&1 &
fi
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && { echo "docker-engine: ready"; exit 0; }
  sleep 1
done
echo "docker-engine: dockerd did not answer within 60 s; see /var/log/rehab-dockerd.log" >&2
tail -20 /var/log/rehab-dockerd.log >&2 || true
exit 1
