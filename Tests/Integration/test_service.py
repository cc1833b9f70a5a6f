"""Ferry under a service manager, with the manager played by this test.

* Logs: with JOURNAL_STREAM naming its stderr (as systemd sets it), every line carries the
  `<N>` syslog-priority prefix journald reads; with JOURNAL_STREAM naming another stream it
  stays text; `--log-format json` gives one JSON object per line.
* sd_notify: a unix datagram socket in NOTIFY_SOCKET gets READY=1 (with STATUS=) once Ferry
  is up, WATCHDOG=1 every WATCHDOG_USEC/2, and STOPPING=1 on SIGTERM.

    FERRY_BIN=.build/release/ferry python3 -m pytest -v Tests/Integration/test_service.py
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def binary() -> str:
    path = os.environ.get("FERRY_BIN", str(REPO / ".build" / "release" / "ferry"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"Ferry binary {path} missing: run `swift build -c release --product ferry` or set FERRY_BIN",
                    pytrace=False)
    return path


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class Switch:
    """`ferry run --port sink` with stderr in a file, the environment given, stopped with SIGTERM."""

    def __init__(self, tmp_path: Path, env: dict[str, str], args: list[str] = (), journal_stream: str = "own"):
        self.log = tmp_path / "ferry.log"
        self.out = open(self.log, "wb")
        environment = {k: v for k, v in os.environ.items()
                       if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        stat = os.fstat(self.out.fileno())
        if journal_stream == "own":
            environment["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"
        elif journal_stream == "other":
            environment["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino + 1}"
        environment.update(env)
        self.proc = subprocess.Popen([binary(), "run", "--port", "sink:name=s",
                                      "--control", str(tmp_path / "ctl.sock"), *args],
                                     stdout=subprocess.DEVNULL, stderr=self.out, env=environment)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self):
        wait_for(lambda: "ready (1 ports" in self.text() or self.proc.poll() is not None, 20, "Ferry ready")
        assert self.proc.poll() is None, self.text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.out.close()
        return code


def test_journal_priorities_when_stderr_is_the_journal(tmp_path):
    ferry = Switch(tmp_path, {})
    ferry.wait_ready()
    assert ferry.stop() == 0
    lines = ferry.text().splitlines()
    assert "<5>ferry: ready (1 ports, control " + str(tmp_path / "ctl.sock") + ")" in lines, lines
    assert "<6>ferry: stopped" in lines, lines
    assert all(re.match(r"<[2-7]>ferry: ", line) for line in lines), lines


def test_text_when_journal_stream_names_another_stream(tmp_path):
    ferry = Switch(tmp_path, {}, journal_stream="other")
    ferry.wait_ready()
    assert ferry.stop() == 0
    lines = ferry.text().splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (trace|debug|info|notice) ferry: ", line)
                         for line in lines), lines


def test_json_lines(tmp_path):
    ferry = Switch(tmp_path, {}, args=["--log-format", "json"])
    ferry.wait_ready()
    assert ferry.stop() == 0
    objects = [json.loads(line) for line in ferry.text().splitlines()]
    ready = [o for o in objects if o["message"].startswith("ready (")]
    assert len(ready) == 1 and ready[0]["level"] == "notice" and ready[0]["priority"] == 5, objects
    assert all(set(o) >= {"time", "level", "priority", "label", "message"} for o in objects)


def test_a_runtime_failure_is_logged_critical_with_its_status(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ferry = Switch(tmp_path, {}, args=["--metrics", f"127.0.0.1:{port}"])
        assert ferry.proc.wait(timeout=20) == 69
    assert re.search(rf"^<2>ferry: metrics 127\.0\.0\.1:{port}: ", ferry.text(), re.M), ferry.text()


def test_sd_notify_ready_watchdog_stopping(tmp_path):
    path = str(tmp_path / "notify.sock")
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(path)
    manager.settimeout(10)
    ferry = Switch(tmp_path, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    try:
        ready = manager.recv(4096).decode()
        assert ready.split("\n") == ["READY=1", "STATUS=switching: 1 ports"], ready
        assert "ready (1 ports" in ferry.text(), "READY=1 came before Ferry said it was ready"
        # Half of WATCHDOG_USEC (0.2 s): about ten pings in a second.
        start = time.monotonic()
        pings = 0
        while time.monotonic() - start < 1.0:
            assert manager.recv(4096).decode() == "WATCHDOG=1"
            pings += 1
        assert 6 <= pings <= 14, f"{pings} WATCHDOG=1 in a second, expected ~10"
        ferry.proc.send_signal(signal.SIGTERM)
        while (message := manager.recv(4096).decode()) == "WATCHDOG=1":
            pass
        assert message.split("\n") == ["STOPPING=1", "STATUS=stopping"], message
        assert ferry.proc.wait(timeout=20) == 0
    finally:
        if ferry.proc.poll() is None:
            ferry.proc.kill()
        manager.close()


def test_a_watchdog_meant_for_another_process_is_not_fed(tmp_path):
    path = str(tmp_path / "notify.sock")
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(path)
    manager.settimeout(2)
    ferry = Switch(tmp_path, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
    try:
        assert manager.recv(4096).decode().startswith("READY=1")
        with pytest.raises(socket.timeout):
            manager.recv(4096)
        assert ferry.stop() == 0
    finally:
        if ferry.proc.poll() is None:
            ferry.proc.kill()
        manager.close()
