#!/usr/bin/env bash
# Installs what building and testing meetspace needs: the Debian packages, the Firestore
# emulator (Google's apt repository) and Java for its tests, the wasm32 target and
# wasm-bindgen-cli for the browser build. Safe to run again: it only installs what is
# missing.
set -euo pipefail

packages=(
  # build: -sys crates of bevy (windowing, input) need these headers
  pkg-config libudev-dev libwayland-dev libxkbcommon-dev
  # codecs: VP8 (libvpx) and Opus (libopus), linked through pkg-config
  libvpx-dev libopus-dev
  # sound devices: cpal talks to ALSA; ALSA's PulseAudio plugin reaches the sound
  # server; the sound test runs its own PulseAudio with a null sink and records it
  libasound2-dev libasound2-plugins pulseaudio pulseaudio-utils
  # the echo test's voices: speech synthesised to WAV files
  espeak-ng
  # cameras: nokhwa reads V4L2 through libv4l; its bindings are made with bindgen (clang)
  libv4l-dev libclang-dev
  # screen sharing: xcap captures X11 through libxcb (randr), Wayland through PipeWire
  # (bindgen against libpipewire) and libgbm
  libxcb1-dev libxcb-randr0-dev libpipewire-0.3-dev libgbm-dev libegl-dev
  # run time of the window: winit loads the X11 libraries when it starts
  libx11-6 libxcursor1 libxrandr2 libxi6 libxkbcommon-x11-0 libvulkan1
  # headless rendering and screenshots (tests, machines without a GPU); the screen-share
  # tests' window manager (it lists windows, as desktops do)
  xvfb mesa-vulkan-drivers imagemagick openbox
  # the impaired-network harness: namespaces and veth (ip), loss (nft), the NFQUEUE
  # rule for delay (iptables), bandwidth caps (tc)
  iproute2 nftables iptables
  # the NAT lab of the TURN tests (tests/nat): coturn's turnserver on its "internet",
  # sysctl and kill for its routers and processes
  coturn procps
  # rooms past the mesh: the SFU (Janus's VideoRoom), which tests/sfu.rs starts
  janus
  # the browser build's end-to-end tests (tests/browser.rs) drive real Chromium
  chromium
  # the size-optimised browser bundle (scripts/build-web.sh --release): the brotli
  # twins `serve` sends to browsers that accept them; scripts/page-load.sh serves the
  # page over https (browsers ask for brotli only there) with a certificate it makes
  brotli openssl
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all system packages present"
fi

# The Firestore tests: the emulator (Google's apt repository, not Debian's) and Java.
if ! dpkg-query -W -f='${Status}' google-cloud-cli-firestore-emulator 2>/dev/null | grep -q "install ok installed" \
   || ! command -v java >/dev/null; then
  if [ ! -e /usr/share/keyrings/cloud.google.gpg ]; then
    curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | $sudo gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg
  fi
  echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
    | $sudo tee /etc/apt/sources.list.d/google-cloud-sdk.list >/dev/null
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    google-cloud-cli-firestore-emulator default-jre-headless
fi

# The browser build (scripts/build-web.sh): the wasm target and wasm-bindgen-cli at
# exactly the version of the wasm-bindgen crate in Cargo.lock.
rustup target add wasm32-unknown-unknown >/dev/null 2>&1
wasm_bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print }' \
  "$(dirname "$0")/Cargo.lock")
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wasm_bindgen_version" ]; then
  echo "setup: installing wasm-bindgen-cli $wasm_bindgen_version"
  cargo install -q wasm-bindgen-cli --version "$wasm_bindgen_version"
fi
