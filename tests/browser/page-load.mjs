// Opens the browser app in headless Chromium as a new visitor, then once more with the
// files in the browser's cache, and says how long each took: for scripts/page-load.sh,
// which runs it behind a shaped link.
//
// Usage: node page-load.mjs BASE_URL PROFILE_DIR SPKI_HASH
//   PROFILE_DIR: an empty folder for Chromium's profile: its cache is on disk there, as
//   a browser's is, where a private window's would be in memory and keep no file as
//   large as the wasm
//   SPKI_HASH: the base64 SHA-256 of the server certificate's public key, trusted
// Prints a line per visit and one line `RESULT <json>`: for each visit the bytes that
// came over the network (headers included), and the milliseconds from navigation to
// the wasm asked for, to its first byte, to it downloaded, to the app started and to
// the lobby drawn (the app's first frame in the lobby, which needs the signaling
// server's welcome).
// Exits 1 with the reason and the page's console otherwise.

import { chromium } from "playwright-core";
import { CHROMIUM, COMMON_FLAGS } from "./chromium.mjs";

const [baseUrl, profile, spki] = process.argv.slice(2);
const TIMEOUT_MS = 180_000;

// One profile for both visits: the second finds the first one's files in its cache.
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    ...COMMON_FLAGS,
    "--use-fake-ui-for-media-stream",
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
});

const consoleLines = [];
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (message) => consoleLines.push(`[${message.type()}] ${message.text()}`));
  page.on("pageerror", (error) => consoleLines.push(`[pageerror] ${error}`));

  // Notes in the page when the app's first frame ran (its hooks appear), when each
  // frame up to the lobby ran (the app replaces its hooks once a frame) and when it was
  // in the lobby, looking every 10 ms.
  await context.addInitScript(() => {
    const marks = { frameMs: [] };
    window.__pageLoadMarks = marks;
    let seen = null;
    const look = setInterval(() => {
      const hooks = window.__meetspace;
      if (!hooks) return;
      marks.firstFrameMs ??= performance.now();
      if (hooks !== seen) {
        seen = hooks;
        marks.frameMs.push(Math.round(performance.now()));
      }
      if (hooks.room === "lobby") {
        marks.lobbyMs = performance.now();
        clearInterval(look);
      }
    }, 10);
  });

  const visit = async (name, open) => {
    await open();
    await page.waitForFunction(() => window.__pageLoadMarks?.lobbyMs, null, {
      timeout: TIMEOUT_MS,
      polling: 100,
    });
    const figures = await page.evaluate(() => {
      const entries = [
        ...performance.getEntriesByType("navigation"),
        ...performance.getEntriesByType("resource"),
      ];
      const load = window.__meetspaceLoad;
      const marks = window.__pageLoadMarks;
      const wasm = entries.find((entry) => entry.name.endsWith(".wasm"));
      return {
        bytes: entries.reduce((sum, entry) => sum + entry.transferSize, 0),
        files: entries.map((entry) => ({
          name: new URL(entry.name).pathname,
          bytes: entry.transferSize,
          unpacked: entry.decodedBodySize,
        })),
        wasmRequestedMs: Math.round(wasm?.startTime ?? NaN),
        wasmFirstByteMs: Math.round(wasm?.responseStart ?? NaN),
        downloadedMs: Math.round(load.downloadedMs),
        startedMs: Math.round(load.startedMs),
        firstFrameMs: Math.round(marks.firstFrameMs),
        lobbyMs: Math.round(marks.lobbyMs),
        frameMs: marks.frameMs,
      };
    });
    console.log(
      `${name}: ${(figures.bytes / 1048576).toFixed(2)} MiB over the network; ` +
        `wasm asked for at ${figures.wasmRequestedMs} ms, its first byte at ${figures.wasmFirstByteMs} ms, ` +
        `downloaded at ${figures.downloadedMs} ms, app started at ${figures.startedMs} ms, ` +
        `first frame at ${figures.firstFrameMs} ms, in the lobby at ${figures.lobbyMs} ms ` +
        `(frames up to it at ${figures.frameMs.join(", ")} ms)`,
    );
    return figures;
  };

  const page_url = `${baseUrl}/#name=Visitor`;
  const first = await visit("first visit", () => page.goto(page_url));
  const again = await visit("second visit (cached)", () => page.reload());
  console.log(`RESULT ${JSON.stringify({ first, again })}`);
} catch (error) {
  for (const line of consoleLines) console.error(line);
  console.error(`page-load: ${error.message}`);
  process.exitCode = 1;
} finally {
  await context.close();
}
