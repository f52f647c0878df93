#!/usr/bin/env bash
# Makes (once) the Python venv of the Firestore tests' Flutter-flow peer and prints its
# python. Safe to run again: it only installs when the venv or a package is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${MEETSPACE_PY_VENV:-$HOME/.cache/meetspace-flutter-peer-venv}"
if ! "$venv/bin/python" -c "import aiortc, google.cloud.firestore" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q -r "$here/requirements.txt" >&2
fi
echo "$venv/bin/python"
