#!/usr/bin/env bash
# The browser app's frame rate without a GPU: headless Chromium (WebGL2 on SwiftShader)
# at 1280x720 in a room with N bots, all on this machine, as `meetspace --demo room
# --demo-bots N --frame-stats` measures the native client under llvmpipe.
#
# Usage: scripts/browser-frame-rate.sh [BOTS [SECONDS]]   (defaults: 3 bots, 15 s)
# Needs the bundle (`scripts/build-web.sh`, served from target/web), the meetspace
# binary (MEETSPACE_BIN_DIR, else the target folder's release or debug build), and node
# with tests/browser's packages (`npm ci --prefix tests/browser`) and Chromium, as
# setup.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."

bots=${1:-3}
seconds=${2:-15}
target=${CARGO_TARGET_DIR:-target}
bin_dir=${MEETSPACE_BIN_DIR:-$([ -x "$target/release/meetspace" ] && echo "$target/release" || echo "$target/debug")}
meetspace=$bin_dir/meetspace
[ -x "$meetspace" ] || { echo "browser-frame-rate: no $meetspace (cargo build)" >&2; exit 1; }
[ -f target/web/index.html ] || { echo "browser-frame-rate: no bundle in target/web (scripts/build-web.sh)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# first_match FILE EXPR: the first line the sed expression EXPR prints from FILE,
# waited for up to 10 s (empty if none came).
first_match() {
  local found=""
  for _ in $(seq 100); do
    found=$(sed -n "$2" "$1" | head -1)
    [ -n "$found" ] && break
    sleep 0.1
  done
  echo "$found"
}

"$meetspace" serve --listen 127.0.0.1:0 --web-root target/web 2>"$work/serve.log" &
pids+=($!)
address=$(first_match "$work/serve.log" 's|.*listening at ws://\([^/]*\)/ws.*|\1|p')
[ -n "$address" ] || { cat "$work/serve.log" >&2; echo "browser-frame-rate: the server did not start" >&2; exit 1; }

# The first bot makes the room and prints `room ID`; the others join it.
"$meetspace" bot --signal "ws://$address" --create --name "Bot 1" --tone-hz 440 >"$work/first" 2>/dev/null &
pids+=($!)
room=$(first_match "$work/first" 's/^room \(.*\)/\1/p')
[ -n "$room" ] || { echo "browser-frame-rate: the first bot made no room" >&2; exit 1; }
for n in $(seq 2 "$bots"); do
  "$meetspace" bot --signal "ws://$address" --room "$room" --name "Bot $n" --tone-hz $((440 + 60 * n)) >/dev/null 2>&1 &
  pids+=($!)
done

node tests/browser/frame-rate.mjs "http://$address" "$room" "$bots" "$seconds"
