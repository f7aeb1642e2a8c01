#!/usr/bin/env bash
# The host's pip settings that image builds must honour, read from the
# environment first and pip's own configuration second (one place for both).
#   pipconf.sh ca     -> path of a CA bundle for a TLS-intercepting proxy, or ""
#   pipconf.sh args   -> PIP_INDEX_URL=... lines usable as build args
set -euo pipefail

pip_get() { python3 -m pip config get "$1" 2>/dev/null || true; }

ca() {
  local c=${PIP_CERT:-}
  [[ -n "$c" ]] || c=$(pip_get global.cert)
  [[ -n "$c" ]] || c=${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}
  if [[ -n "$c" && ! -r "$c" ]]; then
    echo "pipconf: pip CA bundle '$c' is set but not readable; fix PIP_CERT or pip's global.cert" >&2
    exit 1
  fi
  printf '%s\n' "$c"
}

# Only network indexes make sense inside a build; file:// ones are host paths.
net_only() { tr ' ' '\n' | grep -E '^https?://' | paste -sd' ' - || true; }

args() {
  local idx extra trusted
  idx=$(printf '%s' "${PIP_INDEX_URL:-$(pip_get global.index-url)}" | net_only)
  extra=$(printf '%s' "${PIP_EXTRA_INDEX_URL:-$(pip_get global.extra-index-url)}" | net_only)
  trusted=${PIP_TRUSTED_HOST:-$(pip_get global.trusted-host)}
  printf 'PIP_INDEX_URL=%s\nPIP_EXTRA_INDEX_URL=%s\nPIP_TRUSTED_HOST=%s\n' "$idx" "$extra" "$trusted"
}

case "${1:-}" in
  ca) ca ;;
  args) args ;;
  *) echo "usage: $0 ca|args" >&2; exit 2 ;;
esac
