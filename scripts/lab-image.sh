#!/usr/bin/env bash
# Build the lab base image (Debian 12 with systemd as PID 1) when it is missing.
#
# Order of preference:
#   1. the image already exists locally            -> nothing to do
#   2. a registry answers (a workstation)          -> pull debian:bookworm and add systemd on top
#   3. no registry (CI, air-gapped build machines)  -> debootstrap a minbase root and docker import it
#
# Usage: scripts/lab-image.sh [IMAGE]   (default: rehab-scale/lab-base:bookworm)
set -euo pipefail

IMAGE="${1:-${LAB_IMAGE:-rehab-scale/lab-base:bookworm}}"
MIRROR="${LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Packages every lab host needs before Ansible can manage it. Service packages are NOT baked in:
# the roles install them, so the install path is exercised by every converge.
PACKAGES="python3,python3-apt,systemd,systemd-sysv,dbus,iproute2,sudo,ca-certificates,procps,curl,gnupg"
# Apt records each successful `apt-get update` in the stamp that Ansible's apt module reads for
# cache_valid_time. Without it the module falls back to the lists directory's mtime, which an update
# that changes nothing leaves old, so every install task fetched the lists again (1.1 s of CPU each,
# about 25 times per Phase 2 run). Ubuntu ships the same hook (update-notifier-common).
APT_STAMP_HOOK='APT::Update::Post-Invoke-Success {"touch /var/lib/apt/periodic/update-success-stamp 2>/dev/null || true";};'

# The image carries the hash of this script: a changed recipe rebuilds it, an unchanged one is reused.
RECIPE="$(sha256sum "$0" | cut -c1-16)"
if [ "$(docker image inspect -f '{{ index .Config.Labels "rehab-scale.recipe" }}' "$IMAGE" 2>/dev/null)" = "$RECIPE" ]; then
  echo "lab-image: $IMAGE present, not rebuilt"
  exit 0
fi

if [ "${LAB_TRY_PULL:-1}" = "1" ] && timeout 60 docker pull -q debian:bookworm >/dev/null 2>&1; then
  echo "lab-image: building $IMAGE from debian:bookworm"
  docker build -q -t "$IMAGE" - <<DOCKERFILE
FROM debian:bookworm
RUN echo '$APT_STAMP_HOOK' > /etc/apt/apt.conf.d/15update-stamp && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      $(echo "$PACKAGES" | tr ',' ' ')
LABEL rehab-scale.recipe=$RECIPE
CMD ["/lib/systemd/systemd"]
DOCKERFILE
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "lab-image: installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  else
    echo "lab-image: no registry answers and debootstrap is missing (apt-get install debootstrap)" >&2
    exit 1
  fi
fi
root="$(mktemp -d /var/tmp/rehab-lab-root.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "lab-image: debootstrap bookworm into $root (about a minute)"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >/tmp/rehab-lab-debootstrap.log 2>&1 || {
  echo "lab-image: debootstrap failed, see /tmp/rehab-lab-debootstrap.log" >&2
  tail -20 /tmp/rehab-lab-debootstrap.log >&2
  exit 1
}
# Apt inside the containers uses the same mirror (and security updates) as the host would.
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
# Keep the package lists: an emptied lists directory gets a fresh mtime, which makes Ansible's
# apt cache_valid_time believe the (empty) cache is current. Fetch them now instead.
echo "$APT_STAMP_HOOK" > "$root/etc/apt/apt.conf.d/15update-stamp"
mkdir -p "$root/var/lib/apt/periodic"
chroot "$root" apt-get update -qq >/dev/null
rm -f "$root"/var/cache/apt/archives/*.deb
# No getty on a headless container; it spins on the missing console.
rm -f "$root"/etc/systemd/system/getty.target.wants/* 2>/dev/null || true
tar -C "$root" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' -c "LABEL rehab-scale.recipe=$RECIPE" - "$IMAGE" >/dev/null
echo "lab-image: $IMAGE built"
