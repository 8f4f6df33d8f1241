#!/usr/bin/env bash
# The test command: starts the servers the suites need on 127.0.0.1 (a Redis
# and a 3-master Redis Cluster), runs `swift test`, then the Python package's
# suite (scripts/test-python.sh), and stops the servers again. Extra arguments
# go to `swift test` (e.g. --filter FIQueueTests) and skip the Python suite.
set -euo pipefail
cd "$(dirname "$0")/.."

export FI_SERVICES_DIR=${FI_SERVICES_DIR:-$(mktemp -d /tmp/fi-services.XXXXXX)}
trap 'scripts/services.sh stop' EXIT
eval "$(scripts/services.sh start)"
export FI_REQUIRE_SERVICES=1   # suites fail, not skip, when a server is missing

# One test at a time: several suites start servers and child processes and
# assert on timing; run side by side on a 2-core machine they starve each other.
swift test --no-parallel "$@"

# The fi-corpus Python package, on corpora the Swift code just built writes
# (skipped when the run was narrowed with arguments, e.g. --filter).
if [ $# -eq 0 ]; then
    scripts/test-python.sh
fi
