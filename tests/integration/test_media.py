"""Media through the real app over real sockets: upload form, local upload endpoint, the worker
with the real ffmpeg, owner pushes on ``user:{id}``, playback links with ranges, refusals.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.http.media import MEDIA, build_media
from gateway.keys import FEEDS
from gateway.settings import Settings
from handlers.media import StoreLedger
from media.aws import AwsMedia
from media.ffmpeg import find_ffmpeg
from media.signing import Signer, derive_key
from tests.conftest import JWT_SECRET
from tests.support.clients import WsClient, bearer, register
from tests.support.media import TINY_LADDER, make_clip

FAST = {"media_ladder": TINY_LADDER, "media_segment_seconds": 1}


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4").read_bytes()


async def post_form(http: Any, upload: dict[str, Any], data: bytes, **part: Any) -> tuple[int, Any]:
    form = aiohttp.FormData()
    for name, value in upload["fields"].items():
        form.add_field(name, value)
    form.add_field(upload["file_field"], data, filename="clip.mp4", **part)
    async with http.post(upload["url"], data=form) as response:
        body = await response.json() if response.status != 204 else None
        return response.status, body


async def new_upload(client: Any, account: dict[str, Any], size: int, **body: Any) -> Any:
    payload = {"content_type": "video/mp4", "size": size, "title": "my clip", **body}
    async with client.post("/v1/media/uploads", json=payload, headers=bearer(account)) as r:
        return r.status, await r.json()


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_upload_process_push_and_play(
    make_client: Any, tmp_path: Path, clip_bytes: bytes
) -> None:
    client = await make_client(**FAST)
    alice = await register(client, "alice")
    bob = await register(client, "bobby")
    ws = await WsClient.connect(client, alice["access_token"])
    channel = f"user:{alice['user_id']}"
    await ws.result("subscribe", channel=channel)

    status, created = await new_upload(client, alice, len(clip_bytes))
    assert status == 201, created
    video_id = created["video_id"]
    upload = created["upload"]
    assert created["state"] == "uploading"
    assert upload["url"] == str(client.make_url("/v1/media/uploads/local"))
    assert upload["key"] == f"users/{alice['user_id']}/uploads/{video_id}.mp4"
    assert upload["max_bytes"] == len(clip_bytes)

    # Not ready yet: the owner is told so, anyone else finds nothing.
    async with client.get(f"/v1/videos/{video_id}/playback", headers=bearer(alice)) as r:
        assert (r.status, (await r.json())["code"]) == (409, "video_not_ready")
    async with client.get(f"/v1/videos/{video_id}/playback", headers=bearer(bob)) as r:
        assert (r.status, (await r.json())["code"]) == (404, "not_found")

    status, _ = await post_form(client.session, upload, clip_bytes, content_type="video/mp4")
    assert status == 204

    states = []
    while not states or states[-1] not in {"ready", "failed"}:
        push = await ws.next_event(timeout=60)
        assert push["channel"] == channel
        assert push["from"] == "system"
        states.append(push["data"]["state"])
        assert push["data"]["video_id"] == video_id
    assert states == ["processing", "moderating", "ready"]
    assert push["data"] == {
        "type": "video_state",
        "video_id": video_id,
        "state": "ready",
        "moderation": "unmoderated",
    }
    # The pushes are stored events: an owner who was away finds them in the history.
    history = await ws.result("history", channel=channel, limit=10)
    assert [m["data"]["state"] for m in reversed(history["messages"])] == states
    # The transcode was timed, and the ready video's feed walk (alice has no followers; the
    # post follows the ready push), and each state push's delivery to alice's socket.
    walks = ("moosic_feed_fanout_seconds_count", (("author", "narrow"),))
    for _ in range(200):
        async with client.get("/metrics") as r:
            scraped = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(await r.text())
                for s in family.samples
            }
        if walks in scraped and await client.server.app[FEEDS].wait_idle(10):
            break
        await asyncio.sleep(0.05)
    transcodes = ("moosic_transcode_seconds_count", (("backend", "local"), ("outcome", "ok")))
    assert scraped[transcodes] == 1
    assert scraped[walks] == 1
    assert scraped[("moosic_delivery_lag_seconds_count", ())] == len(states)

    async with client.get(f"/v1/videos/{video_id}/playback", headers=bearer(bob)) as r:
        assert r.status == 200
        links = await r.json()
    assert links["type"] == "hls"
    assert links["cookies"] is None
    master_url = links["master_url"]
    async with client.session.get(master_url) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert r.headers["Cache-Control"].startswith("private, max-age=")
        master = await r.text()
    variants = re.findall(r"^(\S+\.m3u8)$", master, re.MULTILINE)
    assert variants == ["72p/index.m3u8", "96p/index.m3u8", "144p/index.m3u8"]
    base = master_url.rsplit("/", 1)[0]
    async with client.session.get(f"{base}/{variants[-1]}") as r:
        playlist = await r.text()
    segment = re.findall(r"^(\S+\.ts)$", playlist, re.MULTILINE)[0]
    async with client.session.get(f"{base}/144p/{segment}") as r:
        assert (r.status, r.headers["Content-Type"]) == (200, "video/mp2t")
        whole = await r.read()
    async with client.session.get(
        f"{base}/144p/{segment}", headers={"Range": "bytes=100-299"}
    ) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes 100-299/{len(whole)}"
        assert await r.read() == whole[100:300]
    async with client.session.get(
        f"{base}/144p/{segment}", headers={"Range": f"bytes={len(whole) + 10}-"}
    ) as r:
        assert r.status == 416
    async with client.session.get(links["thumbnail_url"]) as r:
        assert (r.status, r.headers["Content-Type"]) == (200, "image/jpeg")
        assert (await r.read())[:3] == b"\xff\xd8\xff"
    # What the player fetches decodes: ffmpeg reads the HLS stream over HTTP from the gateway.
    decoded = await asyncio.to_thread(
        subprocess.run,
        [find_ffmpeg(), "-nostdin", "-v", "error", "-i", master_url, "-f", "null", "-"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert decoded.returncode == 0, decoded.stderr

    # Links expire; forged ones point nowhere; nothing outside the video's folder is served.
    token = master_url.split("/v1/media/play/")[1].split("/")[0]
    signer = Signer(derive_key(JWT_SECRET, "local"))
    expired = signer.sign_playback(alice["user_id"], video_id, 1_000_000_000)
    async with client.session.get(f"{base.replace(token, expired)}/master.m3u8") as r:
        assert (r.status, (await r.json())["code"]) == (403, "link_expired")
    forged = token.replace(video_id, video_id[:-1] + ("A" if video_id[-1] != "A" else "B"))
    async with client.session.get(f"{base.replace(token, forged)}/master.m3u8") as r:
        assert (r.status, (await r.json())["code"]) == (404, "not_found")
    uploads = f"{base}/..%2F..%2F..%2Fusers%2F{alice['user_id']}%2Fuploads%2F{video_id}.mp4"
    async with client.session.get(uploads) as r:
        assert r.status == 404
    await ws.close()


@pytest.mark.parametrize("case", ["tampered", "wrong_prefix", "wrong_type", "too_many", "expired"])
async def test_bad_uploads_over_http(
    make_client: Any, tmp_path: Path, settings: Settings, case: str
) -> None:
    client = await make_client(**FAST)
    alice = await register(client, "alice")
    status, created = await new_upload(client, alice, 1000)
    assert status == 201
    upload = created["upload"]
    fields = upload["fields"]
    data = b"\0" * 1000
    if case == "tampered":
        fields["policy"] = fields["policy"][:-4] + "AAAA"
    elif case == "wrong_prefix":
        fields["key"] = fields["key"].replace(alice["user_id"], "someone-else")
    elif case == "wrong_type":
        fields["Content-Type"] = "video/webm"
    elif case == "too_many":
        data = b"\0" * 1001
    elif case == "expired":
        signer = Signer(derive_key(JWT_SECRET, "local"))
        media = client.server.app[MEDIA]
        policy = media.check_form(fields)
        fields["policy"], fields["signature"] = signer.sign_policy(
            type(policy)(**{**{f: getattr(policy, f) for f in policy.__slots__}, "expires_at": 1})
        )
    status, body = await post_form(client.session, upload, data)
    expected = (413, "upload_too_large") if case == "too_many" else (403, "upload_refused")
    assert (status, body["code"]) == expected, body
    media_dir = Path(settings.media.media_dir)
    assert files_under(media_dir) == []


async def test_upload_requests_are_checked(make_client: Any) -> None:
    client = await make_client(max_upload_bytes=4096)
    alice = await register(client, "alice")
    status, body = await new_upload(client, alice, 100, content_type="image/png")
    assert (status, body["code"]) == (415, "unsupported_media_type")
    status, body = await new_upload(client, alice, 4097)
    assert (status, body["code"]) == (413, "upload_too_large")
    status, body = await new_upload(client, alice, 0)
    assert (status, body["code"]) == (400, "invalid_params")
    async with client.post("/v1/media/uploads", json={"content_type": "video/mp4", "size": 9}) as r:
        assert r.status == 401
    async with client.post(
        "/v1/media/uploads/local", data=b"x", headers={"Content-Type": "text/plain"}
    ) as r:
        assert (r.status, (await r.json())["code"]) == (400, "invalid_params")
    form = aiohttp.FormData()
    form.add_field("key", "users/x/uploads/y.mp4")
    form.add_field("file", b"123", filename="a.mp4")
    async with client.post("/v1/media/uploads/local", data=form) as r:
        assert (r.status, (await r.json())["code"]) == (403, "upload_refused")
    async with client.get("/v1/videos/nope/playback", headers=bearer(alice)) as r:
        assert (r.status, (await r.json())["code"]) == (404, "not_found")


async def test_aws_backend_is_built_from_settings(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "cf.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    from gateway.settings import load_settings

    settings = load_settings(
        {
            "MOOSIC_JWT_SECRET": JWT_SECRET,
            "MOOSIC_MEDIA_BACKEND": "aws",
            "MOOSIC_MEDIA_BUCKET": "moosic-media",
            "MOOSIC_MEDIA_MEDIACONVERT_ROLE": "arn:aws:iam::1:role/mc",
            "MOOSIC_CLOUDFRONT_DOMAIN": "d1.cloudfront.net",
            "MOOSIC_CLOUDFRONT_KEY_ID": "K1",
            "MOOSIC_CLOUDFRONT_PRIVATE_KEY_FILE": str(pem),
            "MOOSIC_MEDIA_LADDER": "240:400,360:700,540:1500",
        }
    )
    backend = build_media(settings, StoreLedger(None, None))  # type: ignore[arg-type]
    assert isinstance(backend, AwsMedia)
    assert backend.config.bucket == "moosic-media"
    assert [r.height for r in backend.config.ladder] == [240, 360, 540]
    playback = await backend.playback("u1", "v1", "")
    assert playback.master_url.startswith("https://d1.cloudfront.net/videos/u1/v1/master.m3u8?")


async def test_an_upload_cut_short_leaves_nothing(make_client: Any, settings: Settings) -> None:
    client = await make_client(**FAST)
    alice = await register(client, "alice")
    status, created = await new_upload(client, alice, 200_000)
    assert status == 201
    boundary = "moosicboundary"
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in created["upload"]["fields"].items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    body_length = len(head) + 200_000 + len(f"\r\n--{boundary}--\r\n")
    _reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        (
            "POST /v1/media/uploads/local HTTP/1.1\r\n"
            f"Host: {client.host}:{client.port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {body_length}\r\n\r\n"
        ).encode()
        + head
        + b"\0" * 150_000
    )
    await writer.drain()
    media_dir = Path(settings.media.media_dir)
    incoming = media_dir / ".incoming"
    for _ in range(200):  # the partial upload is being written...
        if incoming.is_dir() and any(incoming.iterdir()):
            break
        await asyncio.sleep(0.01)
    writer.close()  # ...when the phone goes away
    await writer.wait_closed()
    for _ in range(200):
        if files_under(media_dir) == []:
            break
        await asyncio.sleep(0.01)
    assert files_under(media_dir) == []
    async with client.get("/healthz") as r:
        assert r.status == 200
