#!/usr/bin/env bash
# Provide the Debian base image every minihpc image builds FROM, for the Debian
# release (SUITE) that packages the cluster's Slurm
# (minihpc/releases.py says which). Prefer debian:SUITE-slim from a registry;
# where none answers, build one with debootstrap from the host's own Debian
# mirror and import it. Done once per release: an existing image is reused.
set -euo pipefail

SUITE=${SUITE:?set by minihpc up: the Debian release of the Slurm it runs, from minihpc/releases.py}
BASE_IMAGE=${BASE_IMAGE:-minihpc/debian:$SUITE}
log() { printf 'base-image: %s\n' "$*" >&2; }
die() { printf 'base-image: error: %s\n' "$*" >&2; exit 1; }

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  exit 0
fi
if timeout 60 docker pull -q "debian:$SUITE-slim" >/dev/null 2>&1; then
  docker tag "debian:$SUITE-slim" "$BASE_IMAGE"
  log "using debian:$SUITE-slim from the registry as $BASE_IMAGE"
  exit 0
fi

command -v debootstrap >/dev/null || die "no registry answers and debootstrap is missing: run cluster/bootstrap-host.sh"
[[ $(id -u) -eq 0 ]] || die "building the base image with debootstrap needs root (or a reachable registry for debian:$SUITE-slim)"
mirror=$(apt-cache policy | awk '$3 ~ /\/main$/ && $2 ~ /^https?:/ && $3 !~ /security/ {print $2; exit}')
[[ -n "$mirror" ]] || die "no Debian mirror found in the host's apt configuration"

root=$(mktemp -d /var/tmp/minihpc-rootfs.XXXXXX)
cleanup() { rm -rf "$root"; }
trap cleanup EXIT
# A debootstrap older than the release has no script named after it: a release
# still in testing bootstraps as sid does.
script=()
if [[ ! -e /usr/share/debootstrap/scripts/$SUITE ]]; then script=(/usr/share/debootstrap/scripts/sid); fi
log "no registry answers: debootstrap $SUITE from $mirror (about a minute)"
start=$SECONDS
debootstrap --variant=minbase "$SUITE" "$root" "$mirror" "${script[@]}" >"$root.log" 2>&1 ||
  { tail -n 20 "$root.log" >&2; die "debootstrap failed (log above)"; }
rm -f "$root.log"
# A testing release's Release file is valid for days only (Valid-Until); a
# mirror that is a snapshot serves it expired, and apt then refuses the
# release. Only then, and said: apt in this image accepts that date.
valid_until=$(sed -n 's/^Valid-Until: //p' "$root"/var/lib/apt/lists/*_Release 2>/dev/null | head -n 1)
if [[ -n "$valid_until" ]] && (($(date -d "$valid_until" +%s) < $(date +%s))); then
  printf '// minihpc (cluster/base-image.sh): %s mirror %s serves a Release valid until %s only.\nAcquire::Check-Valid-Until "false";\n' \
    "$SUITE" "$mirror" "$valid_until" >"$root/etc/apt/apt.conf.d/99minihpc-expired-release"
  log "the mirror's $SUITE Release expired $valid_until (a snapshot): apt in the image accepts it"
fi
# Slim it like debian:*-slim: no package lists or caches in the layer.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
log "imported $BASE_IMAGE in $((SECONDS - start))s"
