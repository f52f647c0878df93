"""A peer that follows the original Flutter app's Firestore flow step by step, written
with other people's code (google-cloud-firestore, aiortc): the tests call meetspace
against it to show that both layouts agree.

    flutter_peer.py --project P create            # prints "call ID", waits for an answer
    flutter_peer.py --project P join ID           # answers the call ID

Either way it sends a video and an audio track, counts the video frames it receives,
and prints one JSON line {"video_frames": N, "width": W, "height": H} when it has
--frames of them (or --seconds passed); it hangs up when its stdin closes. FIRESTORE_EMULATOR_HOST selects
the emulator, as for every Firestore client.
"""

import argparse
import asyncio
import json
import sys

import aioice.ice
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.sdp import candidate_from_sdp
from google.cloud import firestore

# Loopback only: the tests never leave the machine.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

NAMES = {
    "flutter": ("calls", "offerCandidates", "answerCandidates"),
    "codelab": ("rooms", "callerCandidates", "calleeCandidates"),
}


def candidates_of(description):
    """The candidates of a gathered description, as RTCIceCandidate.toMap() gives them
    (aiortc gathers before it returns instead of trickling)."""
    mid, index = None, -1
    for line in description.sdp.splitlines():
        if line.startswith("m="):
            index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:"):]
        elif line.startswith("a=candidate:"):
            yield {"candidate": line[2:], "sdpMid": mid, "sdpMLineIndex": index}


def add_candidate(pc, loop, data):
    candidate = candidate_from_sdp(data["candidate"].split(":", 1)[1])
    candidate.sdpMid = data.get("sdpMid")
    candidate.sdpMLineIndex = data.get("sdpMLineIndex")
    asyncio.run_coroutine_threadsafe(pc.addIceCandidate(candidate), loop)


def listen_candidates(collection, pc, loop):
    def on_snapshot(_docs, changes, _read_time):
        for change in changes:
            if change.type.name == "ADDED":
                add_candidate(pc, loop, change.document.to_dict())
    return collection.on_snapshot(on_snapshot)


async def count_frames(pc, args):
    tracks = asyncio.Queue()
    pc.on("track", lambda track: tracks.put_nowait(track) if track.kind == "video" else None)
    track = await tracks.get()
    frames, width, height = 0, 0, 0
    while frames < args.frames:
        frame = await track.recv()
        frames, width, height = frames + 1, frame.width, frame.height
    return {"video_frames": frames, "width": width, "height": height}


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--project", required=True)
    parser.add_argument("--names", choices=NAMES, default="flutter")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("mode", choices=["create", "join"])
    parser.add_argument("call_id", nargs="?")
    args = parser.parse_args()
    calls, caller_candidates, callee_candidates = NAMES[args.names]

    loop = asyncio.get_running_loop()
    db = firestore.Client(project=args.project)
    pc = RTCPeerConnection()
    pc.addTrack(AudioStreamTrack())
    pc.addTrack(VideoStreamTrack())
    received = asyncio.ensure_future(count_frames(pc, args))
    watches = []

    if args.mode == "create":
        # createRoom(): the offer goes into a new call document, the caller's candidates
        # into its subcollection; the answer and the callee's candidates are listened for.
        room = db.collection(calls).document()
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription
        room.set({"offer": {"type": offer.type, "sdp": offer.sdp}})
        for candidate in candidates_of(offer):
            room.collection(caller_candidates).add(candidate)
        print(f"call {room.id}", flush=True)

        def on_room(docs, _changes, _read_time):
            data = docs[0].to_dict() if docs and docs[0].exists else None
            if data and data.get("answer") and pc.remoteDescription is None:
                answer = RTCSessionDescription(data["answer"]["sdp"], data["answer"]["type"])
                asyncio.run_coroutine_threadsafe(pc.setRemoteDescription(answer), loop)
        watches.append(room.on_snapshot(on_room))
        watches.append(listen_candidates(room.collection(callee_candidates), pc, loop))
    else:
        # joinRoom(id): read the offer, answer with an update, trickle into the callee's
        # subcollection, listen to the caller's.
        room = db.collection(calls).document(args.call_id)
        snapshot = room.get()
        if not snapshot.exists:
            print("no such call", file=sys.stderr)
            sys.exit(3)
        offer = snapshot.to_dict()["offer"]
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription
        for candidate in candidates_of(answer):
            room.collection(callee_candidates).add(candidate)
        room.update({"answer": {"type": answer.type, "sdp": answer.sdp}})
        watches.append(listen_candidates(room.collection(caller_candidates), pc, loop))

    try:
        report = await asyncio.wait_for(received, args.seconds)
    except asyncio.TimeoutError:
        report = {"video_frames": 0, "width": 0, "height": 0}
    print(json.dumps(report), flush=True)
    # Stay in the call until the test closes our stdin: the other side counts too.
    await loop.run_in_executor(None, sys.stdin.read)
    for watch in watches:
        watch.unsubscribe()
    await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
