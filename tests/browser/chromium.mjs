// What every script here launches Chromium with: Debian's Chromium, headless, the
// fake camera and microphone, nothing in the background, and WebGL2 without a GPU
// (ANGLE on SwiftShader, software), as on a machine without one.

/** Debian's Chromium, as setup.sh installs it. */
export const CHROMIUM = "/usr/bin/chromium";

/** The flags all of them share; each adds its own. */
export const COMMON_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--use-fake-device-for-media-stream",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--use-angle=swiftshader",
  "--enable-unsafe-swiftshader",
];
