#!/usr/bin/env bash
# Builds the browser app into target/web (what `meetspace serve` serves at /):
# the wasm32 build of the meetspace binary, its JS glue from wasm-bindgen (the CLI at
# the exact version of the wasm-bindgen crate), index.html, egui's emoji fonts in
# fonts/ (the app fetches them as it starts, see src/ui/fonts.rs), and gzip twins of
# the wasm, the JS and the fonts (`serve` sends them to browsers that accept gzip).
# Usage: scripts/build-web.sh [--release]
#   default: the dev profile (dependencies optimised, as for native tests; what CI builds)
#   --release: the web-release profile (size-optimised, LTO; a long cold build), and
#     brotli twins beside the gzip ones (a minute and a half; the dev bundle goes without)
# No wasm-opt: Debian's binaryen (108) makes a bundle that Chromium refuses
# (`WebAssembly.Table.set(): Argument 1 is invalid for table`), and with brotli what
# it saved on disk was not saved on the wire.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=dev
[ "${1:-}" = "--release" ] && profile=web-release
out=target/web
# A target folder of its own, so this long build does not hold the native one's lock.
export CARGO_TARGET_DIR=${MEETSPACE_WASM_TARGET_DIR:-$HOME/.cache/meetspace-wasm-target}

cargo build --locked --bin meetspace --target wasm32-unknown-unknown --profile "$profile"
built_dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/$built_dir/meetspace.wasm"

rm -rf "$out" && mkdir -p "$out"
# The name section only labels stack traces; without it the dev bundle is a quarter smaller.
wasm-bindgen --target web --no-typescript --remove-name-section \
  --out-dir "$out" --out-name meetspace "$wasm"
# The page's progress bar counts to the wasm's size (it may arrive compressed).
wasm_bytes=$(stat -c %s "$out/meetspace_bg.wasm")
sed "s/__WASM_BYTES__/$wasm_bytes/" web/index.html > "$out/index.html"
# The emoji fonts from the crate the native build embeds them from (its licences too).
fonts_crate=$(cargo metadata --locked --format-version 1 --filter-platform wasm32-unknown-unknown |
  grep -o '"manifest_path":"[^"]*/epaint_default_fonts-[^"/]*/Cargo.toml"' | head -n 1 |
  sed 's/^"manifest_path":"//; s#/Cargo.toml"$##')
[ -d "$fonts_crate/fonts" ] || { echo "build-web: epaint_default_fonts not found" >&2; exit 1; }
mkdir -p "$out/fonts"
cp "$fonts_crate"/fonts/{NotoEmoji-Regular.ttf,emoji-icon-font.ttf,OFL.txt,emoji-icon-font-mit-license.txt} \
  "$out/fonts/"
size=$(du -cb "$out"/* | tail -n 1 | cut -f1)
# The gzip twins `meetspace serve` sends to browsers that accept them.
packed=("$out/meetspace_bg.wasm" "$out/meetspace.js" "$out"/fonts/*.ttf)
gzip -9 -k "${packed[@]}"
if [ "$profile" = web-release ]; then
  if command -v brotli >/dev/null; then
    brotli -q 11 -k "${packed[@]}"
  else
    echo "build-web: brotli not installed (Debian package brotli); gzip twins only"
  fi
fi
sent=$(du -cb "$out/index.html" "$out"/*.gz | tail -n 1 | cut -f1)
# What is sent counts what the page needs to start (the emoji fonts come after).
echo "build-web: bundle in $out: $size bytes ($(( size / 1048576 )) MiB); sent gzipped: $sent bytes ($(( sent / 1048576 )) MiB)"
if compgen -G "$out/*.br" >/dev/null; then
  sent=$(du -cb "$out/index.html" "$out"/*.br | tail -n 1 | cut -f1)
  echo "build-web: sent with brotli: $sent bytes ($(( sent / 1048576 )) MiB)"
fi
