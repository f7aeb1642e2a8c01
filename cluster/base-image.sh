#!/usr/bin/env bash
# Provide the Debian 13 base image every minihpc image builds FROM.
# Prefer debian:trixie-slim from a registry; where none answers, build one with
# debootstrap from the host's own Debian mirror and import it. Done once: an
# existing image is reused.
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-minihpc/debian:trixie}
log() { printf 'base-image: %s\n' "$*" >&2; }
die() { printf 'base-image: error: %s\n' "$*" >&2; exit 1; }

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  exit 0
fi
if timeout 60 docker pull -q debian:trixie-slim >/dev/null 2>&1; then
  docker tag debian:trixie-slim "$BASE_IMAGE"
  log "using debian:trixie-slim from the registry as $BASE_IMAGE"
  exit 0
fi

command -v debootstrap >/dev/null || die "no registry answers and debootstrap is missing: run cluster/bootstrap-host.sh"
[[ $(id -u) -eq 0 ]] || die "building the base image with debootstrap needs root (or a reachable registry for debian:trixie-slim)"
mirror=$(apt-cache policy | awk '$3 ~ /\/main$/ && $2 ~ /^https?:/ && $3 !~ /security/ {print $2; exit}')
[[ -n "$mirror" ]] || die "no Debian mirror found in the host's apt configuration"

root=$(mktemp -d /var/tmp/minihpc-rootfs.XXXXXX)
cleanup() { rm -rf "$root"; }
trap cleanup EXIT
log "no registry answers: debootstrap trixie from $mirror (about a minute)"
start=$SECONDS
debootstrap --variant=minbase trixie "$root" "$mirror" >"$root.log" 2>&1 ||
  { tail -n 20 "$root.log" >&2; die "debootstrap failed (log above)"; }
rm -f "$root.log"
# Slim it like debian:*-slim: no package lists or caches in the layer.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
log "imported $BASE_IMAGE in $((SECONDS - start))s"
