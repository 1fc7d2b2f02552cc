"""Media test helpers: a generated clip, a tiny ladder, an in-memory ledger."""

from __future__ import annotations

import subprocess
from pathlib import Path

from media.ffmpeg import find_ffmpeg
from media.model import Change, Rung, VideoRef, VideoState

TINY_LADDER = (Rung(72, 96), Rung(96, 128), Rung(144, 192))
"""Small renditions keep the transcodes in tests fast; the pipeline is the same."""
CLIP_SIZE = (320, 240)


def make_clip(path: Path, *, seconds: int = 3, audio: bool = True, size: str = "320x240") -> Path:
    """Write a test clip (moving test pattern, 440 Hz tone) with the real ffmpeg."""
    args = [find_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    subprocess.run([*args, str(path)], check=True, timeout=60)
    return path


class MemoryLedger:
    """Video records in a dict; every recorded change is kept, as the owner's pushes would be."""

    def __init__(self) -> None:
        self.videos: dict[str, VideoRef] = {}
        self.changes: list[Change] = []

    def add(self, video_id: str, owner: str, state: VideoState = VideoState.UPLOADING) -> None:
        self.videos[video_id] = VideoRef(video_id, owner, state)

    async def get(self, video_id: str) -> VideoRef | None:
        return self.videos.get(video_id)

    async def record(self, change: Change) -> bool:
        video = self.videos.get(change.video_id)
        if video is None or video.state is not change.before:
            return False
        self.videos[change.video_id] = VideoRef(video.id, video.owner, change.state)
        self.changes.append(change)
        return True

    def states(self, video_id: str) -> list[str]:
        return [c.state.value for c in self.changes if c.video_id == video_id]
