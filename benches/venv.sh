#!/usr/bin/env bash
# Creates (idempotently) the Python virtualenv of the benchmark suite: DuckDB (the reference
# engine the query and storage suites compare against) and matplotlib (the report's charts).
#
# Location: ${EVENTIDE_BENCH_VENV:-$HOME/.cache/eventide/bench-venv}
# The pins are the whole resolved set. A stamp file holds the list; a second run with the
# same list is a no-op. The last line of stdout is the venv's python.
set -euo pipefail

REQUIREMENTS='duckdb==2.0.0
matplotlib==3.11.2
contourpy==1.3.3
cycler==0.12.1
fonttools==4.68.0
kiwisolver==1.5.1
numpy==2.4.6
packaging==26.3
pillow==13.0.0
pyparsing==3.3.3
pytz==2026.6
python-dateutil==4.0.0
tzdata==2026.6'

VENV="${EVENTIDE_BENCH_VENV:-$HOME/.cache/eventide/bench-venv}"
STAMP="$VENV/.eventide-bench-requirements"
VPY="$VENV/bin/python"

if [ -x "$VPY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$REQUIREMENTS" ]; then
  echo "$VPY"
  exit 0
fi
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV" >&2
"$VPY" -m pip install --quiet --disable-pip-version-check $(echo "$REQUIREMENTS" | tr '\n' ' ') >&2
echo "$REQUIREMENTS" > "$STAMP"
echo "$VPY"
