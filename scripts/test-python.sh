#!/usr/bin/env bash
# The fi-corpus Python package (python/): install it the way a user would and run its pytest
# suite — the partition function against the reference vectors, and reads of corpora the Swift
# code wrote: a store from fi-server (embedded), files a SIGKILLed FIStorageCrashWriter left torn,
# a file being written while it is read and followed, and the fi-corpus command.
#
#   scripts/test-python.sh [pytest args…]
#
# 1. PyPI: a fresh venv, `pip install "./python[pandas,arrow,test]"` (h5py, numpy, pandas, pyarrow
#    wheels; h5py's bundles its own HDF5), the whole suite.
# 2. Debian: a venv over Debian's python3-h5py/python3-numpy (HDF5 1.10, the library the Swift
#    writer links), `pip install --no-deps ./python` plus pytest; the suite without the pandas and
#    Arrow parts. Skipped when /usr/bin/python3 has no h5py or FI_PY_DEBIAN=0.
#
# Run after the Swift debug build: the tests start .build/debug/fi-server and
# .build/debug/FIStorageCrashWriter (FI_BIN_DIR points elsewhere), and tear a file with h5clear
# (hdf5-tools). Exits non-zero if either pass fails.
#
# Environment: FI_PY_VENV (default .build/python-venv of this checkout, so two checkouts never share one;
# the Debian pass uses "$FI_PY_VENV-debian"),
# FI_PYTHON_BIN (default python3), FI_BIN_DIR (default <repo>/.build/debug), FI_REQUIRE_SERVICES
# (1: a missing binary or h5clear fails instead of skipping; defaults to 1 when CI is set),
# FI_PY_DEBIAN (0 skips pass 2).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv=${FI_PY_VENV:-$repo/.build/python-venv}
python=${FI_PYTHON_BIN:-python3}
export FI_BIN_DIR=${FI_BIN_DIR:-$repo/.build/debug}
if [ -n "${CI:-}" ]; then export FI_REQUIRE_SERVICES=${FI_REQUIRE_SERVICES:-1}; fi
pip_quiet=(--quiet --disable-pip-version-check)

make_venv() {  # python, dir, [venv options]
    local py=$1 dir=$2
    shift 2
    if ! "$py" -m venv --clear "$@" "$dir"; then
        echo "test-python.sh: '$py -m venv' failed (Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
}

# From the repository root, so the source tree's python/fi_corpus cannot shadow the installed
# package: the tests run against what pip installed.
status=0

echo "== fi-corpus from PyPI wheels: pip install \"./python[pandas,arrow,test]\""
make_venv "$python" "$venv"
"$venv/bin/python" -m pip install "${pip_quiet[@]}" "$repo/python[pandas,arrow,test]"
"$venv/bin/python" -c 'import fi_corpus, h5py, numpy, pandas, pyarrow; print(f"fi-corpus {fi_corpus.__version__} ({fi_corpus.__file__}); h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version}, numpy {numpy.__version__}, pandas {pandas.__version__}, pyarrow {pyarrow.__version__}")'
"$venv/bin/python" -m pytest -p no:cacheprovider "$repo/python/tests" "$@" || status=1

if [ "${FI_PY_DEBIAN:-1}" != 0 ] && /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
    echo "== fi-corpus over Debian's python3-h5py: pip install --no-deps ./python"
    make_venv /usr/bin/python3 "$venv-debian" --system-site-packages
    # Debian's h5py registers as another distribution name, so without --no-deps pip would fetch
    # h5py from PyPI; pytest and its dependencies come from PyPI.
    "$venv-debian/bin/python" -m pip install "${pip_quiet[@]}" --no-deps "$repo/python"
    "$venv-debian/bin/python" -m pip install "${pip_quiet[@]}" pytest
    "$venv-debian/bin/python" -c 'import fi_corpus, h5py, numpy; print(f"fi-corpus {fi_corpus.__version__} ({fi_corpus.__file__}); h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version}, numpy {numpy.__version__}")'
    "$venv-debian/bin/python" -m pytest -p no:cacheprovider "$repo/python/tests" "$@" || status=1
elif [ -n "${CI:-}" ] && [ "${FI_PY_DEBIAN:-1}" != 0 ]; then
    echo "test-python.sh: /usr/bin/python3 has no h5py (Debian: apt-get install python3-h5py)" >&2
    status=1
fi
exit $status
