"""`ferry run` with no arguments: the embedded default the README's first command ends in.

It must serve the vhost-user socket /run/ferry/vm0.sock, create the TAP ferry0 (up), answer
on the default control socket, print the QEMU options, and on SIGINT or SIGTERM stop cleanly:
sockets removed, the TAP deleted — unless it existed before Ferry started, in which case it
stays. Needs root (the TAP, /run/ferry); fails with the reason otherwise. The paths are
fixed, so a Ferry already running its embedded default on this machine makes the test fail
(it says so) rather than disturbing it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

import harness as h

RUN_DIR = "/run/ferry"
VM0 = f"{RUN_DIR}/vm0.sock"
CONTROL = f"{RUN_DIR}/ferry.sock"
TAP = "ferry0"


def tap_exists() -> bool:
    return os.path.exists(f"/sys/class/net/{TAP}")


def tap_is_up() -> bool:
    with open(f"/sys/class/net/{TAP}/flags") as f:
        return int(f.read(), 16) & 0x1 == 0x1


@pytest.fixture
def clean_machine(ferry_binary):
    if os.geteuid() != 0:
        pytest.fail("the embedded default needs root (creates TAP ferry0 and /run/ferry)")
    for path in (VM0, CONTROL):
        if os.path.exists(path):
            pytest.fail(f"{path} exists: is a Ferry running its embedded default here? Stop it first")
    if tap_exists():
        pytest.fail(f"interface {TAP} exists already; remove it (ip link del {TAP}) before this test")
    yield ferry_binary
    subprocess.run(["ip", "link", "del", TAP], capture_output=True)
    for path in (VM0, CONTROL):
        if os.path.exists(path):
            os.unlink(path)


def start(binary: str, log_path: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "FERRY_CONTROL"}
    log = open(log_path, "wb")
    proc = subprocess.Popen([binary, "run"], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    log.close()

    def ready():
        with open(log_path, errors="replace") as f:
            return "ferry: ready" in f.read()
    try:
        h.wait_until(lambda: ready() or proc.poll() is not None, 20, "'ferry: ready' in the log")
    except Exception:
        proc.kill()
        raise
    assert proc.poll() is None, f"ferry run exited with {proc.returncode}:\n{open(log_path).read()}"
    return proc


def stop(proc: subprocess.Popen, sig) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"ferry run did not stop within 15 s of signal {sig}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_embedded_default_starts_and_cleans_up(clean_machine, tmp_path, sig):
    log_path = str(tmp_path / "ferry.log")
    proc = start(clean_machine, log_path)
    try:
        assert os.path.exists(VM0), f"no vhost-user socket at {VM0}"
        assert tap_exists() and tap_is_up(), f"TAP {TAP} missing or down"
        stats = h.ferry_stats(CONTROL, binary=clean_machine)
        kinds = {p["name"]: p["kind"] for p in stats["ports"]}
        assert kinds == {"vm0": "vhost", TAP: "tap"}, f"ports of the embedded default: {kinds}"
        text = open(log_path).read()
        assert f"path={VM0}" in text and "-netdev vhost-user" in text, f"no QEMU options printed:\n{text}"
    finally:
        rc = stop(proc, sig)
    text = open(log_path).read()
    assert rc == 0, f"ferry run exited with {rc} on {sig!r}:\n{text}"
    assert not os.path.exists(VM0), f"{VM0} left behind"
    assert not os.path.exists(CONTROL), f"{CONTROL} left behind"
    assert not tap_exists(), f"TAP {TAP}, which Ferry created, left behind"


def test_a_tap_that_existed_before_stays(clean_machine, tmp_path):
    subprocess.run(["ip", "tuntap", "add", "dev", TAP, "mode", "tap"], check=True)
    proc = start(clean_machine, str(tmp_path / "ferry.log"))
    try:
        assert tap_is_up(), f"Ferry did not bring the existing {TAP} up"
    finally:
        rc = stop(proc, signal.SIGTERM)
    assert rc == 0
    assert tap_exists(), f"{TAP} existed before Ferry started and must stay after it stops"
    assert not os.path.exists(VM0)
