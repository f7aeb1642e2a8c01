#!/usr/bin/env bash
# Content tag of the images: a hash of every file the Dockerfile copies or
# depends on. Same inputs, same tag: warm starts skip the build entirely.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Keep in step with the COPY lines of cluster/Dockerfile.
inputs=(cluster/Dockerfile cluster/requirements.lock cluster/db-entrypoint.sh
  cluster/entrypoint.sh cluster/healthcheck.sh cluster/nodecheck.sh cluster/accounting.py nfs/*.py)
sha256sum "${inputs[@]}" | sha256sum | cut -c1-12
