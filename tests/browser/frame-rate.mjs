// Measures the browser app's frame rate in a room, in headless Chromium drawing with
// SwiftShader (no GPU), at 1280x720: for scripts/browser-frame-rate.sh.
//
// Usage: node frame-rate.mjs BASE_URL ROOM PEOPLE SECONDS
//   waits until the tab is in ROOM with PEOPLE others and has drawn 30 frames from each,
//   then counts the app's frames for SECONDS: the app replaces `window.__meetspace`
//   once per frame, and a timer in the page notes each new one.
// Prints the figures and one line `RESULT <json>`; exits 1 with the reason and the
// page's console otherwise.

import { chromium } from "playwright-core";
import { CHROMIUM, COMMON_FLAGS } from "./chromium.mjs";

const [baseUrl, room, peopleArg, secondsArg] = process.argv.slice(2);
const people = Number(peopleArg);
const seconds = Number(secondsArg);
const TIMEOUT_MS = 240_000;

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    ...COMMON_FLAGS,
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
  ],
});
const consoleLines = [];

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  page.on("console", (message) => consoleLines.push(`[${message.type()}] ${message.text()}`));
  page.on("pageerror", (error) => consoleLines.push(`[pageerror] ${error}`));
  await page.goto(`${baseUrl}/#room=${room}&name=Browser`);

  const deadline = Date.now() + TIMEOUT_MS;
  let state = null;
  for (;;) {
    state = await page.evaluate(() => window.__meetspace ?? null);
    const drawing = state?.participants?.filter((p) => p.framesDrawn >= 30).length ?? 0;
    if (state?.state === "in_call" && drawing >= people) break;
    if (Date.now() > deadline) {
      throw new Error(`not drawing ${people} people in time; last hooks: ${JSON.stringify(state)}`);
    }
    await page.waitForTimeout(500);
  }

  const times = await page.evaluate(
    (ms) =>
      new Promise((resolve) => {
        const times = [];
        let last = window.__meetspace;
        const start = performance.now();
        const timer = setInterval(() => {
          const now = performance.now();
          if (window.__meetspace !== last) {
            last = window.__meetspace;
            times.push(now);
          }
          if (now - start >= ms) {
            clearInterval(timer);
            resolve(times);
          }
        }, 1);
      }),
    seconds * 1000,
  );
  if (times.length < 3) throw new Error(`only ${times.length} frames in ${seconds} s`);
  const intervals = times.slice(1).map((time, i) => time - times[i]).sort((a, b) => a - b);
  const at = (share) => intervals[Math.min(intervals.length - 1, Math.floor(share * intervals.length))];
  const mean = intervals.reduce((sum, x) => sum + x, 0) / intervals.length;
  const result = {
    people,
    frames: times.length,
    seconds,
    median_ms: at(0.5),
    p95_ms: at(0.95),
    mean_ms: mean,
    fps: 1000 / mean,
    graphics: state.graphics,
  };
  console.log(
    `browser frame time with ${people} others: median ${result.median_ms.toFixed(1)} ms, ` +
      `p95 ${result.p95_ms.toFixed(1)} ms, mean ${mean.toFixed(1)} ms ` +
      `(${result.fps.toFixed(1)} fps), graphics ${state.graphics}`,
  );
  console.log(`RESULT ${JSON.stringify(result)}`);
} catch (error) {
  for (const line of consoleLines) console.error(line);
  console.error(`frame-rate: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
