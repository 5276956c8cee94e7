"""Run `cdp serve` as a real process on a free port, for end-to-end tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

CDP = str(Path(sys.executable).with_name("cdp"))
# Base URL -> pid of the running `cdp serve` (its workers are that process's children).
SERVER_PIDS: dict[str, int] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cdp_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env.update({"CDP_DATA_DIR": str(data_dir), "CDP_LOG_LEVEL": "WARNING", **extra})
    return env


def cdp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CDP, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@contextmanager
def running_server(
    env: dict[str, str], *, workers: int = 1, own_group: bool = False
) -> Iterator[str]:
    """The server's base URL while it runs; with own_group, the server and its workers form
    a process group of their own (SERVER_PIDS[base] is its id), so a test can kill -9 them."""
    port = free_port()
    log = Path(env["CDP_DATA_DIR"]) / f"server-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [CDP, "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )
    base = f"http://127.0.0.1:{port}"
    SERVER_PIDS[base] = proc.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not become ready: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        SERVER_PIDS.pop(base, None)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (the workers), in KiB (Linux /proc)."""
    total, family = 0, {pid}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                family.add(int(entry.name))
    for member in family:
        try:
            status = (Path("/proc") / str(member) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total
