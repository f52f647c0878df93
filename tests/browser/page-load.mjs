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
// the wasm asked for, to its first byte, to it downloaded, to the app started, to the
// lobby drawn (the first frame the browser showed that looks as the page does once in
// the lobby: from the browser's screencast, which starts when the wasm is downloaded)
// and to the app in the lobby (its first frame there, which needs the signaling
// server's welcome; the overlay says "Connecting…" until then).
// Exits 1 with the reason and the page's console otherwise.

import { inflateSync } from "node:zlib";
import { chromium } from "playwright-core";
import { CHROMIUM, COMMON_FLAGS } from "./chromium.mjs";

/** A screencast frame that differs from the page in the lobby by less than this (mean
 * difference per colour channel, 0 to 255) shows the lobby: the loading screen and the
 * app's first, still empty, frame differ by over a hundred; the lobby before the
 * server's welcome (the overlay's "Connecting…") by three or four. */
const DRAWN_DIFFERENCE = 8;

/** The RGB bytes of a PNG that Chromium encoded (8 bits a channel, RGB or RGBA, not
 * interlaced), with its width and height. */
function decodePng(png) {
  let offset = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const compressed = [];
  while (offset < png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString("latin1", offset + 4, offset + 8);
    const data = png.subarray(offset + 8, offset + 8 + length);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colour, , , interlace] = data.subarray(8, 13);
      channels = { 2: 3, 6: 4 }[colour];
      if (depth !== 8 || !channels || interlace !== 0) {
        throw new Error(`an unexpected PNG: depth ${depth}, colour type ${colour}, interlace ${interlace}`);
      }
    } else if (type === "IDAT") {
      compressed.push(data);
    }
    offset += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(compressed));
  const stride = width * channels;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = pixels.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? pixels.subarray((y - 1) * stride, y * stride) : Buffer.alloc(stride);
    for (let x = 0; x < stride; x++) {
      const left = x >= channels ? out[x - channels] : 0;
      const upLeft = x >= channels ? up[x - channels] : 0;
      let predicted = 0;
      if (filter === 1) predicted = left;
      else if (filter === 2) predicted = up[x];
      else if (filter === 3) predicted = (left + up[x]) >> 1;
      else if (filter === 4) {
        const base = left + up[x] - upLeft;
        const [a, b, c] = [Math.abs(base - left), Math.abs(base - up[x]), Math.abs(base - upLeft)];
        predicted = a <= b && a <= c ? left : b <= c ? up[x] : upLeft;
      }
      out[x] = (row[x] + predicted) & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

/** The mean difference per colour channel between two decoded frames of one size. */
function difference(a, b) {
  if (a.width !== b.width || a.height !== b.height) return Infinity;
  let sum = 0;
  let count = 0;
  for (let i = 0, j = 0; i < a.pixels.length; i += a.channels, j += b.channels) {
    for (let c = 0; c < 3; c++) sum += Math.abs(a.pixels[i + c] - b.pixels[j + c]);
    count += 3;
  }
  return sum / count;
}

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

  // The frames the browser shows, from when the wasm is downloaded (the page's script
  // says so through the binding below) to the app in the lobby: what a visitor sees.
  // Started earlier, encoding each frame of the progress bar would take the CPU the
  // download and the wasm's compilation need.
  const screencast = await context.newCDPSession(page);
  let shown = [];
  screencast.on("Page.screencastFrame", (frame) => {
    shown.push({ seconds: frame.metadata.timestamp, png: frame.data });
    screencast.send("Page.screencastFrameAck", { sessionId: frame.sessionId }).catch(() => {});
  });
  await context.exposeBinding("__pageLoadDownloaded", () =>
    screencast.send("Page.startScreencast", { format: "png" }),
  );

  // When the page first showed the lobby: the first frame it showed that looks like the
  // page in the lobby now (ms since navigation, or null if none did). The screencast's
  // frames come late on a busy machine: the frames up to the app's in the lobby are
  // waited for (a few seconds at most).
  const lobbyDrawnMs = async (timeOrigin, lobbyMs) => {
    const shownMs = (frame) => frame.seconds * 1000 - timeOrigin;
    for (let waited = 0; waited < 3000 && !shown.some((f) => shownMs(f) >= lobbyMs); waited += 50) {
      await page.waitForTimeout(50);
    }
    await screencast.send("Page.stopScreencast");
    const { data } = await screencast.send("Page.captureScreenshot", { format: "png" });
    const inLobby = decodePng(Buffer.from(data, "base64"));
    const frames = shown;
    shown = [];
    const drawn = frames.find(
      (frame) => difference(decodePng(Buffer.from(frame.png, "base64")), inLobby) < DRAWN_DIFFERENCE,
    );
    return drawn ? Math.round(shownMs(drawn)) : null;
  };

  // Notes in the page when the app's first frame ran (its hooks appear), when each
  // frame up to the lobby ran (the app replaces its hooks once a frame) and when it was
  // in the lobby, looking every 10 ms; and tells the binding above when the wasm is
  // downloaded.
  await context.addInitScript(() => {
    const marks = { frameMs: [] };
    window.__pageLoadMarks = marks;
    let seen = null;
    let downloaded = false;
    const look = setInterval(() => {
      if (!downloaded && window.__meetspaceLoad?.downloadedMs) {
        downloaded = true;
        window.__pageLoadDownloaded();
      }
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
        timeOrigin: performance.timeOrigin,
      };
    });
    figures.drawnMs = await lobbyDrawnMs(figures.timeOrigin, figures.lobbyMs);
    console.log(
      `${name}: ${(figures.bytes / 1048576).toFixed(2)} MiB over the network; ` +
        `wasm asked for at ${figures.wasmRequestedMs} ms, its first byte at ${figures.wasmFirstByteMs} ms, ` +
        `downloaded at ${figures.downloadedMs} ms, app started at ${figures.startedMs} ms, ` +
        `first frame at ${figures.firstFrameMs} ms, lobby drawn at ${figures.drawnMs} ms, ` +
        `in the lobby at ${figures.lobbyMs} ms ` +
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
