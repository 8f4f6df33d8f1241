#!/usr/bin/env bash
# Installs the system packages FI Scale builds, runs and tests with on Debian 12.
# Swift 6 itself is expected on PATH (or at /opt/swift/usr/bin).
set -euo pipefail

packages=(
    pkg-config
    libhdf5-dev hdf5-tools python3-h5py   # HDF5 1.10 (corpus files), h5dump, h5py for interop tests
    libhiredis-dev redis-server redis-tools  # hiredis 0.14 client, Redis 7 for tests
)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
$sudo apt-get install -y --no-install-recommends "${packages[@]}"
