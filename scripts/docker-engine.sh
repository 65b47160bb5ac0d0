#!/usr/bin/env bash
# Make sure a Docker engine answers. Where one already does (a workstation, a CI runner with
# Docker), do nothing. Otherwise install Debian's docker.io and start dockerd in the background
# (machines without systemd as PID 1, such as CI containers).
set -euo pipefail

# Every lab container runs systemd, which holds about 7 inotify instances; they count against one
# per-user limit on the host (fs.inotify.max_user_instances, 128 on Debian). Past about 17 running
# containers a new one's systemd cannot start and the container exits at boot (seen when three
# Molecule lanes overlap: "Container ... is not running" right after create). Raise it where we may.
inotify_wanted=1024
inotify_now=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo "$inotify_wanted")
if [ "$inotify_now" -lt "$inotify_wanted" ]; then
  if [ "$(id -u)" = 0 ] && sysctl -qw fs.inotify.max_user_instances="$inotify_wanted" 2>/dev/null; then
    echo "docker-engine: fs.inotify.max_user_instances raised from $inotify_now to $inotify_wanted"
  else
    echo "docker-engine: fs.inotify.max_user_instances is $inotify_now; about 17 lab containers fit at once" \
      "(raise it: sysctl -w fs.inotify.max_user_instances=$inotify_wanted)" >&2
  fi
fi

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
