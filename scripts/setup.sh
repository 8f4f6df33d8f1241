#!/usr/bin/env bash
# Installs the system packages FI Scale builds, runs and tests with on Debian 12.
# Swift 6 itself is expected on PATH (or at /opt/swift/usr/bin).
set -euo pipefail

packages=(
    pkg-config
    libhdf5-dev hdf5-tools python3-h5py   # HDF5 1.10 (corpus files), h5dump/h5clear, h5py for interop tests
    python3-venv python3-pip              # scripts/test-python.sh: the fi-corpus package in a venv (PyPI wheels)
    libhiredis-dev redis-server redis-tools  # hiredis 0.14 client, Redis 7 for tests
    nginx haproxy prometheus python3-yaml    # deploy/check-configs.sh: nginx -t, haproxy -c, promtool
    curl                                     # deploy/local-cluster.sh health checks
)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
# nginx, haproxy and prometheus start their services on install (nginx on
# :80, prometheus on :9090); we only need their binaries. Unless the machine
# already has one (Docker images do), a policy-rc.d refusing every start is in
# place for the install only.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get install -y --no-install-recommends "${packages[@]}"
