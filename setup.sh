#!/usr/bin/env bash
# Installs the Debian packages that building and testing meetspace needs.
# Safe to run again: it only calls apt-get when something is missing.
set -euo pipefail

packages=(
  # build: -sys crates of bevy (windowing, input) need these headers
  pkg-config libudev-dev libwayland-dev libxkbcommon-dev
  # codecs: VP8 (libvpx) and Opus (libopus), linked through pkg-config
  libvpx-dev libopus-dev
  # sound devices: cpal talks to ALSA; ALSA's PulseAudio plugin reaches the sound
  # server; the sound test runs its own PulseAudio with a null sink and records it
  libasound2-dev libasound2-plugins pulseaudio pulseaudio-utils
  # cameras: nokhwa reads V4L2 through libv4l; its bindings are made with bindgen (clang)
  libv4l-dev libclang-dev
  # run time of the window: winit loads the X11 libraries when it starts
  libx11-6 libxcursor1 libxrandr2 libxi6 libxkbcommon-x11-0 libvulkan1
  # headless rendering and screenshots (tests, machines without a GPU)
  xvfb mesa-vulkan-drivers imagemagick
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all system packages present"
fi
