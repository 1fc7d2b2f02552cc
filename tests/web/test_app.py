"""The web app in headless Chromium against a real gateway: two people chat, one drops off."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect

from tests.support.media import make_clip
from tests.support.servers import GatewayNode
from tests.web.conftest import WAIT_MS, screenshot

PASSWORD = "correct horse battery"


def unique(prefix: str) -> str:
    return f"{prefix}_{os.urandom(3).hex()}"


def sign_up(context: BrowserContext, username: str) -> Page:
    page = context.new_page()
    page.goto("/")
    page.get_by_test_id("username").fill(username)
    page.get_by_test_id("password").fill(PASSWORD)
    page.get_by_test_id("sign-up").click()
    expect(page.get_by_test_id("conversations")).to_be_visible()
    expect(page.get_by_test_id("conn")).to_have_attribute("data-state", "open")
    return page


def session_of(page: Page) -> dict[str, str]:
    raw = page.evaluate("() => localStorage.getItem('moosic.session')")
    session: dict[str, str] = json.loads(raw)
    return session


def open_dm(page: Page, username: str) -> None:
    page.goto("/#/chats")
    page.get_by_test_id("dm-username").fill(username)
    page.get_by_test_id("open-dm").click()
    expect(page.get_by_test_id("chat-title")).to_have_text(username)


def send(page: Page, text: str) -> None:
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("send").click()


def texts(page: Page) -> list[str]:
    return page.get_by_test_id("message-text").all_inner_texts()


def rest(gateway: GatewayNode, token: str, method: str, path: str, body: object) -> object:
    request = urllib.request.Request(
        gateway.base_url + path,
        method=method,
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_dm_both_ways_offline_catch_up_and_live_likes(
    gateway: GatewayNode, new_context: Callable[[], BrowserContext]
) -> None:
    alice_name, bob_name = unique("alice"), unique("bob")
    alice_ctx, bob_ctx = new_context(), new_context()
    alice = sign_up(alice_ctx, alice_name)
    bob = sign_up(bob_ctx, bob_name)
    screenshot(alice, "chats")

    open_dm(alice, bob_name)
    open_dm(bob, alice_name)
    expect(alice.get_by_test_id("peer-status")).to_have_text("online")
    send(alice, "hi bob")
    expect(bob.get_by_test_id("message-text")).to_have_text(["hi bob"])
    bob.get_by_test_id("composer").press_sequentially("hey")
    expect(alice.get_by_test_id("typing")).to_contain_text(f"{bob_name} is typing")
    bob.get_by_test_id("send").click()
    expect(alice.get_by_test_id("message-text")).to_have_text(["hi bob", "hey"])
    # Bob has the chat open: his read receipt reaches Alice under her last message.
    send(alice, "seen?")
    expect(bob.get_by_test_id("message-text")).to_have_text(["hi bob", "hey", "seen?"])
    expect(alice.get_by_test_id("seen")).to_have_text("Seen")
    screenshot(alice, "dm")

    # Bob goes offline; Alice writes; Bob comes back and sees each message once, in order.
    bob_ctx.set_offline(True)
    expect(bob.get_by_test_id("conn")).to_have_attribute("data-state", "offline")
    missed = [f"while away {n}" for n in range(1, 6)]
    for text in missed:
        send(alice, text)
    expect(alice.get_by_test_id("message-text")).to_have_text(["hi bob", "hey", "seen?", *missed])
    screenshot(bob, "dm-offline")
    bob_ctx.set_offline(False)
    expect(bob.get_by_test_id("conn")).to_have_attribute("data-state", "open")
    expect(bob.get_by_test_id("message-text")).to_have_text(["hi bob", "hey", "seen?", *missed])
    assert texts(bob) == ["hi bob", "hey", "seen?", *missed]
    send(bob, "back")
    expect(alice.get_by_test_id("message-text")).to_have_text(
        ["hi bob", "hey", "seen?", *missed, "back"]
    )

    # Unread counts: Alice writes while Bob is on his chat list.
    bob.goto("/#/chats")
    expect(bob.get_by_test_id("conversations")).to_be_visible()
    send(alice, "one more")
    expect(bob.get_by_test_id("unread")).to_have_text("1", timeout=WAIT_MS)
    expect(bob.get_by_test_id("unread-total")).to_have_text("1")
    screenshot(bob, "chats-unread")

    # A like in one browser shows in the other's live counts.
    video = rest(gateway, session_of(alice)["access_token"], "POST", "/v1/videos", {"title": "cat"})
    assert isinstance(video, dict)
    alice.goto(f"/#/v/{video['video_id']}")
    bob.goto(f"/#/v/{video['video_id']}")
    expect(alice.get_by_test_id("video-title")).to_have_text("cat")
    expect(bob.get_by_test_id("likes")).to_have_text("0")
    expect(alice.get_by_test_id("viewers")).to_have_text("2")
    # Each page told the clickstream it began a view: summed, counted, pushed back live.
    expect(alice.get_by_test_id("views")).to_have_text("2", timeout=WAIT_MS)
    alice.get_by_test_id("like").click()
    expect(alice.get_by_test_id("like")).to_have_attribute("aria-pressed", "true")
    expect(bob.get_by_test_id("likes")).to_have_text("1")
    bob.get_by_test_id("comment-input").fill("so cute")
    bob.get_by_test_id("comment-send").click()
    expect(alice.get_by_test_id("comment")).to_contain_text(["so cute"])
    expect(alice.get_by_test_id("comments-count")).to_have_text("1")
    bob.get_by_test_id("share").click()
    expect(alice.get_by_test_id("shares")).to_have_text("1")
    screenshot(bob, "video")


def test_upload_goes_processing_to_ready_plays_and_reaches_followers_feeds(
    gateway: GatewayNode, new_context: Callable[[], BrowserContext], tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=2)
    maker_name, fan_name = unique("maker"), unique("fan")
    maker = sign_up(new_context(), maker_name)
    fan = sign_up(new_context(), fan_name)
    fan.goto("/#/feed")
    fan.get_by_test_id("follow-username").fill(maker_name)
    fan.get_by_test_id("follow").click()
    expect(fan.get_by_test_id("notice")).to_contain_text(f"Following {maker_name}")

    maker.goto("/#/upload")
    maker.get_by_test_id("upload-title").fill("my clip")
    maker.get_by_test_id("upload-file").set_input_files(clip)
    maker.get_by_test_id("upload-send").click()
    states = maker.get_by_test_id("upload-state")
    expect(states.filter(has_text="ready")).to_have_count(1, timeout=90_000)
    shown = states.all_inner_texts()
    assert shown[0] == "uploading"
    assert shown.index("processing") < shown.index("ready")
    screenshot(maker, "upload")

    # The follower, on the home feed, gets it live.
    expect(fan.get_by_test_id("feed-item").filter(has_text="my clip")).to_have_count(1)
    expect(fan.get_by_test_id("feed-fresh")).to_contain_text("my clip")
    screenshot(fan, "feed")

    maker.get_by_test_id("watch").click()
    expect(maker.get_by_test_id("video-title")).to_have_text("my clip")
    video = maker.get_by_test_id("video")
    expect(video).to_be_visible()
    # Plays: frames decoded and the clock moving (HLS, natively in this Chromium).
    maker.wait_for_function(
        "() => { const v = document.querySelector('video');"
        " return v && v.readyState >= 2 && v.currentTime > 0; }",
        timeout=60_000,
    )
    assert maker.evaluate("() => document.querySelector('video').error") is None
    screenshot(maker, "video-playing")
