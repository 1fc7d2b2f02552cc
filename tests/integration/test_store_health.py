"""A SQLite store that cannot keep writes says so and refuses them (issue 21, item 6).

Real gateway processes on a SQLite file in ``tmp_path``, broken from outside the way an
operator or a disk breaks them: the folder deleted, the WAL made immutable (``chattr +i``: we
run as root, so permissions would not stop the writes), ``-shm`` unwritable before the start.
Each time the node must answer ``unavailable`` (never acknowledge), report ``store: false``
with a 503 on ``/readyz``, log one ERROR naming the reason and show it in ``/metrics``; after a
restart every acknowledged message is still there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import JWT_SECRET
from tests.integration.test_ws import token_for
from tests.support.clients import PASSWORD
from tests.support.servers import ROOT, GatewayNode

CHANNEL = "room:health"
PUBLISHER = "pub"


def env_for(path: Path) -> dict[str, str]:
    return {
        "MOOSIC_DEV": "1",
        "MOOSIC_JWT_SECRET": JWT_SECRET,
        "MOOSIC_SQLITE_PATH": str(path),
        "MOOSIC_SCRYPT_N": "1024",
        "MOOSIC_LOG_LEVEL": "INFO",
    }


def store_lines(node: GatewayNode, level: str) -> list[str]:
    """Lines the SQLite store logged at ``level`` (format of gateway/__main__.py)."""
    text = node.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if f" {level} storage.sqlite: " in line]


async def publish(http: aiohttp.ClientSession, node: GatewayNode, n: int) -> tuple[int, Any]:
    async with http.post(
        f"{node.base_url}/v1/channels/{CHANNEL}/messages",
        json={"data": {"n": n}, "client_msg_id": f"m{n}"},
        headers={"Authorization": f"Bearer {token_for(PUBLISHER)}"},
    ) as r:
        return r.status, await r.json()


async def register(http: aiohttp.ClientSession, node: GatewayNode, name: str) -> tuple[int, Any]:
    async with http.post(
        f"{node.base_url}/v1/auth/register", json={"username": name, "password": PASSWORD}
    ) as r:
        return r.status, await r.json()


async def login_status(http: aiohttp.ClientSession, node: GatewayNode, name: str) -> int:
    async with http.post(
        f"{node.base_url}/v1/auth/login", json={"username": name, "password": PASSWORD}
    ) as r:
        return r.status


async def readyz(http: aiohttp.ClientSession, node: GatewayNode) -> tuple[int, Any]:
    async with http.get(f"{node.base_url}/readyz") as r:
        return r.status, await r.json()


async def metrics(http: aiohttp.ClientSession, node: GatewayNode) -> dict[str, float]:
    async with http.get(f"{node.base_url}/metrics") as r:
        text = await r.text()
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines())
        if not name.startswith("#")
    }


async def stored_ids(http: aiohttp.ClientSession, node: GatewayNode) -> set[str]:
    async with http.get(
        f"{node.base_url}/v1/channels/{CHANNEL}/messages?limit=50",
        headers={"Authorization": f"Bearer {token_for(PUBLISHER)}"},
    ) as r:
        body = await r.json()
        assert r.status == 200, body
    return {m["message_id"] for m in body["messages"]}


async def publish_acked(http: aiohttp.ClientSession, node: GatewayNode, n: int) -> str:
    status, body = await publish(http, node, n)
    assert status == 201, body
    return str(body["message_id"])


async def assert_refusing(
    http: aiohttp.ClientSession, node: GatewayNode, n: int, reason: str
) -> None:
    """Writes answered ``unavailable``, /readyz 503, one ERROR naming ``reason``, metrics."""
    status, body = await publish(http, node, n)
    assert (status, body["code"]) == (503, "unavailable"), body
    status, body = await register(http, node, f"refused{n}")
    assert (status, body["code"]) == (503, "unavailable"), body
    status, body = await readyz(http, node)
    assert (status, body["store"], body["status"]) == (503, False, "not_ready"), body
    errors = store_lines(node, "ERROR")
    assert len(errors) == 1, errors
    assert reason in errors[0], errors
    assert "refusing writes" in errors[0], errors
    figures = await metrics(http, node)
    assert figures["moosic_store_healthy"] == 0
    assert figures["moosic_store_refused_writes_total"] >= 2


def chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Files a test made immutable: made mutable again whatever happened."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        if path.exists():
            subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)


def test_chattr_works_here(tmp_path: Path) -> None:
    """The write-failure tests rely on it: root ignores permissions, not the immutable flag."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    chattr("+i", probe)
    try:
        with pytest.raises(PermissionError):
            probe.open("ab")
    finally:
        chattr("-i", probe)


async def test_a_deleted_folder_refuses_writes_and_keeps_every_acknowledged_message(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    folder = tmp_path / "db"
    path = folder / "moosic.db"
    env = env_for(path)
    node = GatewayNode(env, tmp_path / "node.log").start()
    kept = tmp_path / "kept"
    try:
        acked = [await publish_acked(http, node, n) for n in range(1, 6)]
        assert (await register(http, node, "alice"))[0] == 201
        assert (await metrics(http, node))["moosic_store_healthy"] == 1
        # Hard links keep the inodes the node writes: what it commits after the delete would
        # be there, which is how the finding lost acknowledged messages without a trace.
        kept.mkdir()
        for file in folder.iterdir():
            os.link(file, kept / file.name)
        shutil.rmtree(folder)

        await assert_refusing(http, node, 6, f"{path} is gone")
        # More checks and probes (one a second) pass; the transition is logged once only.
        for n in range(7, 10):
            status, body = await publish(http, node, n)
            assert (status, body["code"]) == (503, "unavailable"), body
        await asyncio.sleep(2.5)  # a few more checks and probes (not a timed assertion)
        assert len(store_lines(node, "ERROR")) == 1
        assert not folder.exists(), "the node must not make a new folder behind the operator"
    finally:
        node.stop()

    # Restart on the files as they were (the operator restores the folder): every
    # acknowledged message and account is there.
    kept.rename(folder)
    node = GatewayNode(env, tmp_path / "node-2.log").start()
    try:
        assert set(acked) <= await stored_ids(http, node)
        assert await login_status(http, node, "alice") == 200
        assert (await metrics(http, node))["moosic_store_healthy"] == 1
    finally:
        node.stop()


async def test_a_deleted_folder_with_nothing_kept_starts_empty(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Nothing is acknowledged after the delete, so the restart on a new file loses none."""
    folder = tmp_path / "db"
    env = env_for(folder / "moosic.db")
    node = GatewayNode(env, tmp_path / "node.log").start()
    try:
        await publish_acked(http, node, 1)
        shutil.rmtree(folder)
        await assert_refusing(http, node, 2, "is gone")
    finally:
        node.stop()
    node = GatewayNode(env, tmp_path / "node-2.log").start()
    try:
        assert await stored_ids(http, node) == set()
        assert await publish_acked(http, node, 3)
    finally:
        node.stop()


async def test_a_wal_that_cannot_be_written_refuses_writes_until_it_can(
    tmp_path: Path, http: aiohttp.ClientSession, immutable: list[Path]
) -> None:
    path = tmp_path / "db" / "moosic.db"
    wal = Path(f"{path}-wal")
    env = env_for(path)
    node = GatewayNode(env, tmp_path / "node.log").start()
    try:
        acked = [await publish_acked(http, node, n) for n in range(1, 4)]
        immutable.append(wal)
        chattr("+i", wal)
        await assert_refusing(http, node, 4, "disk I/O error")

        # Writable again: the probe write (once a second) succeeds and the node recovers.
        chattr("-i", wal)

        async with asyncio.timeout(60):
            while (await readyz(http, node))[0] != 200:
                await asyncio.sleep(0.1)
        infos = [line for line in store_lines(node, "INFO") if "healthy again" in line]
        assert len(infos) == 1, infos
        assert (await metrics(http, node))["moosic_store_healthy"] == 1
        acked.append(await publish_acked(http, node, 5))
        assert (await register(http, node, "bob"))[0] == 201
    finally:
        node.stop()
    node = GatewayNode(env, tmp_path / "node-2.log").start()
    try:
        assert set(acked) <= await stored_ids(http, node)
        assert await login_status(http, node, "bob") == 200
    finally:
        node.stop()


@pytest.mark.parametrize("kind", ["immutable", "directory"])
async def test_an_unwritable_shm_refuses_to_start_without_sigbus(
    tmp_path: Path, http: aiohttp.ClientSession, immutable: list[Path], kind: str
) -> None:
    """Exit status 1 with a message naming the file: never SIGBUS, never a ready node.

    The file is one a node has used (schema in place), so opening it needs no write: before
    the check, the node came up ready and died of SIGBUS on the first publish.
    """
    path = tmp_path / "db" / "moosic.db"
    first = GatewayNode(env_for(path), tmp_path / "first.log").start()
    try:
        await publish_acked(http, first, 1)
    finally:
        first.stop()
    expected = break_shm(path, kind, immutable)
    node = GatewayNode(env_for(path), tmp_path / "node.log")
    returncode = run_to_exit(node)
    text = node.log_path.read_text()
    assert returncode == 1, text
    errors = store_lines(node, "ERROR")
    assert len(errors) == 1, text
    assert "cannot start" in errors[0], text
    assert expected in errors[0], text


def break_shm(path: Path, kind: str, immutable: list[Path]) -> str:
    """Put an unwritable ``-shm`` beside ``path``; return what the refusal must say."""
    shm = Path(f"{path}-shm")
    assert not shm.exists(), "the last connection to close removes -shm"
    if kind == "immutable":
        shm.write_bytes(b"")
        immutable.append(shm)
        chattr("+i", shm)
        return f"{shm} cannot be opened for writing"
    shm.mkdir()
    return f"{shm} is not a regular file"


def run_to_exit(node: GatewayNode) -> int:
    """Run the node's process until it exits by itself; fail if it answers HTTP instead."""
    with node.log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway"], env=node.env, cwd=ROOT, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(node.base_url + "/readyz", timeout=2) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                time.sleep(0.1)
                continue
            raise AssertionError(f"the node serves (/readyz {status}) on an unwritable -shm")
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
