#!/usr/bin/env bash
# Rewrites the configuration reference in Docs/operations.md from the built
# binaries (`config --reference`), between its BEGIN/END markers. Run after
# changing a setting; EndToEndTests checks the two agree.
#   scripts/reference-docs.sh [BIN_DIR]   (default .build/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/debug}
for binary in fi-server fi-worker; do
    "$bin/$binary" config --reference > "/tmp/fi-reference-$binary.md"
done
python3 - <<'PY'
import re
path = "Docs/operations.md"
text = open(path, encoding="utf-8").read()
for binary in ("fi-server", "fi-worker"):
    begin = f"<!-- BEGIN {binary} config --reference -->\n"
    end = f"<!-- END {binary} config --reference -->"
    reference = open(f"/tmp/fi-reference-{binary}.md", encoding="utf-8").read()
    start = text.index(begin) + len(begin)
    stop = text.index(end, start)
    text = text[:start] + reference + text[stop:]
open(path, "w", encoding="utf-8").write(text)
PY
echo "Docs/operations.md: reference regenerated from $bin"
