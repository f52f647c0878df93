#!/usr/bin/env bash
# How long the browser app takes to open for a new visitor on a 20 Mbit/s link with
# 40 ms round trips, and once more from the browser's cache: bytes sent, and the time
# to the wasm downloaded, to the app started and to the lobby drawn (headless
# Chromium drawing with SwiftShader, as in the browser tests).
#
# Usage: scripts/page-load.sh [WEB_ROOT]
#   WEB_ROOT: the bundle to serve (default target/web: `scripts/build-web.sh --release`
#   makes the one to measure; the dev bundle is four times larger)
#   PAGE_LOAD_RATE (default 20mbit) and PAGE_LOAD_ONE_WAY_MS (default 20) shape the link.
#
# The server and the browser run in two network namespaces the script makes, joined by
# a veth pair. Each end's egress goes through `tc tbf` at the rate; what arrives at each
# end waits for the delay in an NFQUEUE rule and `meetspace-delay-queue` (this kernel
# has no netem; held on the way out instead, a TCP packet would still count against
# its sender's socket, whose window then stayed at a tenth of the link). The page is
# served over https with a certificate made here, as a real deployment is: browsers
# ask for brotli only from secure origins.
# Needs root, iproute2, iptables, openssl, node with tests/browser's packages (`npm ci`
# there) and Chromium, as setup.sh installs, and the meetspace binaries (`cargo build
# --release --bins`; MEETSPACE_BIN_DIR says where they are if not in the target folder).
set -euo pipefail
cd "$(dirname "$0")/.."

root=$(realpath "${1:-target/web}")
rate=${PAGE_LOAD_RATE:-20mbit}
one_way_ms=${PAGE_LOAD_ONE_WAY_MS:-20}
target=${CARGO_TARGET_DIR:-target}
bin_dir=${MEETSPACE_BIN_DIR:-$([ -x "$target/release/meetspace" ] && echo "$target/release" || echo "$target/debug")}
for program in meetspace meetspace-delay-queue; do
  [ -x "$bin_dir/$program" ] || { echo "page-load: no $bin_dir/$program (cargo build --release --bins)" >&2; exit 1; }
done
[ -f "$root/index.html" ] || { echo "page-load: no bundle in $root (scripts/build-web.sh --release)" >&2; exit 1; }

server_ns=meetspace-load-server-$$
browser_ns=meetspace-load-browser-$$
server_ip=10.79.0.1
browser_ip=10.79.0.2
port=8480
pids=()
scratch=$(mktemp -d)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$server_ns" 2>/dev/null || true
  ip netns del "$browser_ns" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

ip netns add "$server_ns"
ip netns add "$browser_ns"
ip link add veth0 netns "$server_ns" type veth peer name veth0 netns "$browser_ns"
for side in "$server_ns:$server_ip" "$browser_ns:$browser_ip"; do
  ns=${side%%:*}
  ip -n "$ns" addr add "${side#*:}/24" dev veth0
  ip -n "$ns" link set lo up
  ip -n "$ns" link set veth0 up
  # The rate, with a queue of up to 200 ms; then the delay, for every packet out.
  ip netns exec "$ns" tc qdisc add dev veth0 root tbf rate "$rate" burst 32kb latency 200ms
  ip netns exec "$ns" "$bin_dir/meetspace-delay-queue" --queue 0 --delay-ms "$one_way_ms" \
    > "$scratch/$ns.out" &
  pids+=("$!")
  for _ in $(seq 100); do grep -q ready "$scratch/$ns.out" && break; sleep 0.1; done
  grep -q ready "$scratch/$ns.out" || { echo "page-load: the delay helper did not start" >&2; exit 1; }
  ip netns exec "$ns" iptables -A INPUT -i veth0 -j NFQUEUE --queue-num 0
done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=$server_ip" -addext "subjectAltName=IP:$server_ip" \
  -keyout "$scratch/key.pem" -out "$scratch/cert.pem" 2>/dev/null
# Chromium trusts that certificate by its key's hash, as it would one from a
# certificate authority (a page with a certificate error is not cached).
spki=$(openssl x509 -in "$scratch/cert.pem" -pubkey -noout | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64)
ip netns exec "$server_ns" "$bin_dir/meetspace" serve --listen "$server_ip:$port" --web-root "$root" \
  --tls-cert "$scratch/cert.pem" --tls-key "$scratch/key.pem" 2>/dev/null &
pids+=("$!")
for _ in $(seq 100); do
  ip netns exec "$browser_ns" bash -c "exec 3<>/dev/tcp/$server_ip/$port" 2>/dev/null && break
  sleep 0.1
done

echo "page-load: serving $root at https://$server_ip:$port over $rate, ${one_way_ms} ms each way"
ip netns exec "$browser_ns" node tests/browser/page-load.mjs "https://$server_ip:$port" "$scratch/profile" "$spki"
