#!/usr/bin/env bash
# Creates (idempotently) the Python virtualenv used by the client-compatibility
# tests in tests/compat/: real, unmodified PyPI clients (libhoney-py and the
# OpenTelemetry Python SDK + OTLP/HTTP exporter) that send data to Eventide,
# and for the differential query checker in tests/differential/ (DuckDB as the
# reference engine).
#
# Location: ${EVENTIDE_COMPAT_VENV:-$HOME/.cache/eventide/compat-venv}
# Python:   ${EVENTIDE_COMPAT_PYTHON:-python3}
#
# The pins below are the whole resolved set (direct and transitive), so every
# machine gets the same clients. A stamp file in the venv holds the list; a
# second run with the same list is a no-op, a changed list reinstalls.
# pip's own output goes to stderr. The last line of stdout is the venv's python.
set -euo pipefail

REQUIREMENTS='libhoney==2.4.0
opentelemetry-sdk==1.45.2
opentelemetry-exporter-otlp-proto-http==1.45.2
opentelemetry-api==1.45.2
opentelemetry-proto==1.45.2
opentelemetry-exporter-otlp-proto-common==1.45.2
opentelemetry-exporter-otlp-common==0.66b2
opentelemetry-exporter-http-transport==0.66b2
opentelemetry-semantic-conventions==0.66b2
protobuf==7.36.2
googleapis-common-protos==1.76.0
requests==2.34.2
urllib3==2.8.0
idna==3.20
charset-normalizer==3.5.2
certifi==2026.10.18
statsd==4.0.1
typing_extensions==4.16.0
duckdb==2.0.1'

VENV="${EVENTIDE_COMPAT_VENV:-$HOME/.cache/eventide/compat-venv}"
PYTHON="${EVENTIDE_COMPAT_PYTHON:-python3}"
STAMP="$VENV/.eventide-compat-requirements"
VPY="$VENV/bin/python"

mkdir -p "$(dirname "$VENV")"

# Several tests may call this at once: serialize on a lock next to the venv.
LOCK="$VENV.lock"
exec 9>"$LOCK"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

up_to_date() {
    [ -x "$VPY" ] && [ -f "$STAMP" ] \
        && [ "$(cat "$STAMP")" = "$REQUIREMENTS" ] \
        && "$VPY" -c 'import libhoney, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, duckdb' >/dev/null 2>&1
}

if ! up_to_date; then
    if [ ! -x "$VPY" ] || ! "$VPY" -c 'import sys' >/dev/null 2>&1; then
        # Missing or broken venv (e.g. its base python went away). Only clear a
        # directory that is a venv or is empty, never an arbitrary one.
        if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ] && [ -n "$(ls -A "$VENV" 2>/dev/null)" ]; then
            echo "compat-venv: $VENV exists and is not a virtualenv; refusing to touch it" >&2
            exit 1
        fi
        echo "compat-venv: creating $VENV" >&2
        "$PYTHON" -m venv --clear "$VENV" >&2
    fi
    rm -f "$STAMP"
    echo "compat-venv: installing pinned clients into $VENV" >&2
    REQ_FILE="$(mktemp)"
    trap 'rm -f "$REQ_FILE"' EXIT
    printf '%s\n' "$REQUIREMENTS" >"$REQ_FILE"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$VPY" -m pip install --quiet --requirement "$REQ_FILE" >&2
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VPY" -m pip check >&2
    printf '%s' "$REQUIREMENTS" >"$STAMP"
fi

echo "$VPY"
