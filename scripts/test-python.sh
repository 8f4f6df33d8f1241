#!/usr/bin/env bash
# The fi-corpus Python package (python/): install it into a fresh virtual environment the way a
# user would (`pip install "./python[pandas,arrow,test]"`, h5py/numpy/pandas/pyarrow wheels from
# PyPI), then run its pytest suite — the partition function against the reference vectors, and
# reads of corpora the Swift code wrote: a store from fi-server (embedded), files a SIGKILLed
# FIStorageCrashWriter left torn, a file being written while it is read and followed, and the
# fi-corpus command. Run after the Swift debug build (the tests start .build/debug/fi-server and
# .build/debug/FIStorageCrashWriter; FI_BIN_DIR points elsewhere). Exits non-zero on any failure.
#
#   scripts/test-python.sh [pytest args…]
#
# Environment: FI_PY_VENV (default /tmp/fi-corpus-venv), FI_PYTHON_BIN (default python3),
# FI_BIN_DIR (default <repo>/.build/debug), FI_REQUIRE_SERVICES (CI sets 1: a missing binary fails
# instead of skipping; this script defaults it to 1 when CI is set).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv=${FI_PY_VENV:-/tmp/fi-corpus-venv}
python=${FI_PYTHON_BIN:-python3}
export FI_BIN_DIR=${FI_BIN_DIR:-$repo/.build/debug}
if [ -n "${CI:-}" ]; then export FI_REQUIRE_SERVICES=${FI_REQUIRE_SERVICES:-1}; fi

if ! "$python" -m venv --clear "$venv"; then
    echo "test-python.sh: '$python -m venv' failed (Debian: apt-get install python3-venv)" >&2
    exit 1
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$repo/python[pandas,arrow,test]"
"$venv/bin/python" - <<'PY'
import fi_corpus, h5py, numpy, pandas, pyarrow
print(f"fi-corpus {fi_corpus.__version__} from {fi_corpus.__file__}; h5py {h5py.__version__} "
      f"(HDF5 {h5py.version.hdf5_version}), numpy {numpy.__version__}, pandas {pandas.__version__}, "
      f"pyarrow {pyarrow.__version__}")
PY
# From the repository root, so the source tree's python/fi_corpus cannot shadow the installed
# package: the tests run against what pip installed.
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$repo/python/tests" "$@"
