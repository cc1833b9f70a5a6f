"""A minimal QMP client (QEMU Machine Protocol, docs/interop/qmp-spec.rst): JSON lines on a
unix socket. Connect, leave the capabilities negotiation, then `execute` commands; the
asynchronous events that arrive meanwhile (DEVICE_DELETED, RESET, ...) are kept for
`wait_event`.

Python 3 stdlib only.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Optional


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        # QEMU creates the socket once it parsed its command line: wait for it.
        while not os.path.exists(path):
            if time.monotonic() >= deadline:
                raise QMPError(f"no QMP socket at {path} within {timeout:.0f}s")
            time.sleep(0.05)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError(f"not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QMPError("QEMU closed the QMP socket")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def execute(self, command: str, **arguments: Any) -> Any:
        """The command's `return` value; a QMPError with QEMU's error text otherwise."""
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise QMPError(f"{command} {arguments}: {reply['error'].get('desc', reply)}")
            elif "return" in reply:
                return reply["return"]

    def wait_event(self, name: str, timeout: float,
                   data: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """The first event `name` (whose data includes `data`) seen since the last one taken."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event["event"] == name and all(event.get("data", {}).get(k) == v
                                                  for k, v in (data or {}).items()):
                    return self.events.pop(i)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QMPError(f"no QMP event {name} {data or ''} within {timeout:.0f}s "
                               f"(seen: {[e['event'] for e in self.events]})")
            self.sock.settimeout(remaining)
            try:
                reply = self._read()
            except socket.timeout:
                continue
            if "event" in reply:
                self.events.append(reply)

    def close(self):
        self.sock.close()
