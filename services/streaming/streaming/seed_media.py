"""Synthesise small real audio files and upload them to the media bucket.

Each track gets a WAV of a few seconds (a tone whose pitch depends on the
track id), so players, range requests and caches work on real audio without
shipping any. Existing objects are left alone, so a re-run is cheap.
"""

from __future__ import annotations

import argparse
import io
import math
import struct
import sys
import wave

from streaming.app import media_key

RATE = 22_050


def wav(track_id: int, seconds: float = 3.0, rate: int = RATE) -> bytes:
    """A mono 16-bit PCM WAV: a tone with a short fade in and out."""
    freq = 220.0 * 2 ** ((track_id % 24) / 12)
    n = int(seconds * rate)
    fade = rate // 20
    frames = bytearray()
    for i in range(n):
        amp = min(1.0, i / fade, (n - 1 - i) / fade)
        frames += struct.pack("<h", int(12_000 * amp * math.sin(2 * math.pi * freq * i / rate)))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return out.getvalue()


def seed(s3, bucket: str, tracks: int, seconds: float = 3.0, log=print) -> int:
    """Upload tracks 1..N that are missing; returns how many were uploaded."""
    existing = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="tracks/"):
        existing.update(o["Key"] for o in page.get("Contents", []))
    uploaded = 0
    for track_id in range(1, tracks + 1):
        key = media_key(track_id)
        if key not in existing:
            s3.put_object(Bucket=bucket, Key=key, Body=wav(track_id, seconds), ContentType="audio/wav")
            uploaded += 1
    log(f"uploaded {uploaded} tracks to s3://{bucket}/tracks/ ({tracks - uploaded} were there)")
    return uploaded


def main(argv=None) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from streaming.config import from_env

    parser = argparse.ArgumentParser(prog="seed-media", description="Upload synthetic track audio.")
    parser.add_argument("--tracks", type=int, default=200, help="tracks 1..N (default 200)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each track")
    parser.add_argument("--bucket", default=from_env().media_bucket, help="default: STREAMING_MEDIA_BUCKET")
    parser.add_argument("--create-bucket", action="store_true", help="create the bucket if it is missing")
    args = parser.parse_args(argv)
    if not args.bucket:
        parser.error("no bucket: set STREAMING_MEDIA_BUCKET or pass --bucket")
    if args.tracks < 1 or not 0 < args.seconds <= 600:
        parser.error("--tracks must be at least 1 and --seconds in (0, 600]")
    s3 = boto3.client("s3")
    try:
        if args.create_bucket:
            try:
                s3.head_bucket(Bucket=args.bucket)
            except ClientError:
                s3.create_bucket(Bucket=args.bucket)
        seed(s3, args.bucket, args.tracks, args.seconds)
    except (BotoCoreError, ClientError) as exc:
        print(f"seed-media: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
