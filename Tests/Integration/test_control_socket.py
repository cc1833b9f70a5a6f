"""The control socket under abuse, while Ferry forwards (docs/CONTROL.md, "Robustness").

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_control_socket.py

One Ferry for the whole module, `vhost:SOCK,name=vm` and `sink:name=s`, with dpdk-testpmd's
virtio-user front-end sending 64-byte frames on vm (txonly; their destination is unknown, so
they flood to s). Each test abuses the control socket — garbage bytes, truncated JSON, lines
over the 65536-byte limit, unknown commands, ten clients interleaving requests, a client that
never reads its replies, more connections than Ferry serves — and checks, by their exact text,
that each bad request got its documented error reply, that the same connection then answers a
good request, and that frames kept flowing (vm's rx_packets still rising). The last test stops
testpmd and reconciles the counters: what testpmd sent = what Ferry took from vm + its drops,
and the sink got all of it.

Fails (does not skip) without root, testpmd or the Ferry binary.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

import harness as h

MAX_LINE = 65536
NOT_AN_OBJECT = {"error": "request is not a JSON object"}
OVERSIZED = {"error": f"request longer than {MAX_LINE} bytes"}
MAX_CLIENTS = 64


class Connection:
    """One control-socket client that reads replies line by line."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.pending = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def reply(self) -> dict:
        while b"\n" not in self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"Ferry closed the connection (pending {self.pending[:200]!r})")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return json.loads(line)

    def ask(self, data: bytes) -> dict:
        self.send(data + b"\n")
        return self.reply()

    def stats(self) -> dict:
        reply = self.ask(b'{"cmd":"stats"}')
        assert "ports" in reply, f"a good request after a bad one got {reply}"
        return reply

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------- the running switch


class Traffic:
    def __init__(self, lab: h.Lab):
        self.lab = lab
        sock = lab.path("vm.sock")
        self.ferry = lab.ferry([f"vhost:{sock},name=vm", "sink:name=s"], cpu=0)
        h.wait_for_socket(sock, proc=self.ferry)
        self.testpmd = lab.virtio_user(sock, "txonly", cpu=1, txpkts=64).start()
        self.control = self.ferry.control
        h.wait_until(lambda: self.received() > 0, 20, "frames from testpmd through Ferry")

    def received(self) -> int:
        return self.ferry.port("vm")["rx_packets"]

    def assert_still_forwarding(self, before: int):
        h.wait_until(lambda: self.received() > before, 10,
                     f"vm's rx_packets to rise past {before} (Ferry must keep forwarding)")
        assert self.ferry.running(), f"Ferry exited\n{self.lab.logs()}"


@pytest.fixture(scope="module")
def traffic(testpmd_machine, tmp_path_factory):
    lab = h.Lab("ctlsock", keep_logs=str(tmp_path_factory.mktemp("logs")))
    try:
        yield Traffic(lab)
    finally:
        lab.close()


@pytest.fixture
def conn(traffic):
    c = Connection(traffic.control)
    yield c
    c.close()


# --------------------------------------------------------------------------- malformed requests


@pytest.mark.parametrize("garbage", [
    b"\x00\x01\x02\xff\xfe\xfd",
    b"\x80\x81 not utf-8 \xc3\x28",
    b"hello",
    b"   ",
    b"",
    b"\x1b[2J\x1b[1;1H",
], ids=["binary", "invalid-utf8", "word", "blanks", "empty-line", "escapes"])
def test_garbage_gets_an_error_and_the_connection_stays_usable(traffic, conn, garbage):
    before = traffic.received()
    assert conn.ask(garbage) == NOT_AN_OBJECT
    conn.stats()
    traffic.assert_still_forwarding(before)


@pytest.mark.parametrize("truncated", [
    b'{"cmd":"sta', b'{"cmd":"stats"', b'{"cmd":', b"{", b'{"cmd":"fdb-add","mac":"02:00:00:00:00:99",',
])
def test_truncated_json_gets_an_error(traffic, conn, truncated):
    assert conn.ask(truncated) == NOT_AN_OBJECT
    conn.stats()


@pytest.mark.parametrize("not_object", [b"[1]", b'"stats"', b"42", b"null", b"true", b'[{"cmd":"stats"}]'])
def test_json_that_is_not_an_object_gets_an_error(traffic, conn, not_object):
    assert conn.ask(not_object) == NOT_AN_OBJECT
    conn.stats()


@pytest.mark.parametrize("request_line, error", [
    (b'{"cmd":"flush"}', "unknown command 'flush' (one of: hello, stats, stats-clear, show, fdb-add, fdb-del, fdb-flush, port, capture)"),
    (b'{"cmd":""}', "unknown command '' (one of: hello, stats, stats-clear, show, fdb-add, fdb-del, fdb-flush, port, capture)"),
    (b'{"command":"stats"}', 'request has no "cmd"'),
    (b'{}', 'request has no "cmd"'),
    (b'{"cmd":5}', '"cmd" must be a string'),
    (b'{"cmd":["stats"]}', '"cmd" must be a string'),
    (b'{"cmd":"show"}', 'request has no "what" (one of: ports, fdb, stats, vteps)'),
    (b'{"cmd":"show","what":"routes"}', "cannot show 'routes' (one of: ports, fdb, stats, vteps)"),
    (b'{"cmd":"fdb-add","mac":"nonsense","port":"s"}', "'nonsense' is not a MAC address (want aa:bb:cc:dd:ee:ff)"),
])
def test_unknown_and_refused_commands_get_the_documented_error(traffic, conn, request_line, error):
    before = traffic.received()
    assert conn.ask(request_line) == {"error": error}
    conn.stats()
    traffic.assert_still_forwarding(before)


def test_every_reply_carries_its_request_id_back(traffic, conn):
    """Pipelined requests with ids, good and refused: each reply names its request, in order."""
    conn.send(b'{"cmd":"hello","version":1,"id":1}\n{"cmd":"stats","id":"two"}\n'
              b'{"cmd":"flush","id":3}\n{"cmd":"show","what":"ports","id":-4}\n{"cmd":"stats","id":true}\n')
    hello, stats, flush, ports, bad_id = (conn.reply() for _ in range(5))
    assert hello == {"id": 1, "version": 1, "ferry": hello["ferry"],
                     "commands": ["hello", "stats", "stats-clear", "show", "fdb-add", "fdb-del", "fdb-flush", "port",
                                  "capture"]}
    assert stats["id"] == "two" and "ports" in stats
    assert flush == {"id": 3, "error": "unknown command 'flush' (one of: hello, stats, stats-clear, show, fdb-add, "
                                       "fdb-del, fdb-flush, port, capture)"}
    assert ports["id"] == -4 and [p["name"] for p in ports["ports"]] == ["vm", "s"]
    assert bad_id == {"error": '"id" must be a string or a whole number'}
    # A client asking for a newer version is told the one Ferry speaks; an older one is refused.
    assert conn.ask(b'{"cmd":"hello","version":9}')["version"] == 1
    assert conn.ask(b'{"cmd":"hello","version":0}') == \
        {"error": "protocol version 0 is older than the oldest this Ferry speaks (1)"}


# --------------------------------------------------------------------------- size limit


def test_a_line_over_the_limit_gets_exactly_one_error(traffic, conn):
    """The rest of the refused line is thrown away, not read as a second request: the next
    reply on the connection answers the next request."""
    before = traffic.received()
    conn.send(b"a" * (4 * MAX_LINE) + b"\n" + b'{"cmd":"show","what":"ports"}\n')
    assert conn.reply() == OVERSIZED
    second = conn.reply()
    assert "ports" in second and "workers" not in second, f"want the show ports reply next, got {second}"
    traffic.assert_still_forwarding(before)


def test_a_line_just_over_the_limit_is_refused_and_one_at_it_is_read(traffic, conn):
    padding = MAX_LINE - len(b'{"cmd":"stats","pad":""}')
    at_limit = b'{"cmd":"stats","pad":"' + b"x" * padding + b'"}'
    assert len(at_limit) == MAX_LINE
    assert "ports" in conn.ask(at_limit), "a request of exactly the limit must be answered"
    over = b'{"cmd":"stats","pad":"' + b"x" * (padding + 1) + b'"}'
    assert conn.ask(over) == OVERSIZED
    conn.stats()


def test_an_endless_line_is_refused_while_it_is_still_arriving(traffic):
    """A client that never sends a newline gets its error once the limit passes, and Ferry
    does not buffer the rest."""
    c = Connection(traffic.control)
    try:
        c.send(b"z" * (MAX_LINE + 1))
        assert c.reply() == OVERSIZED
        for _ in range(16):
            c.send(b"z" * MAX_LINE)
        c.send(b"\n")
        c.stats()
    finally:
        c.close()


# --------------------------------------------------------------------------- many clients


def test_ten_concurrent_clients_interleaving_requests(traffic):
    """Ten connections, each pipelining good and bad requests in its own pattern; every
    reply answers its own request, in order, on its own connection."""
    before = traffic.received()
    rounds = 40
    failures: list[str] = []

    def client(n: int):
        try:
            c = Connection(traffic.control)
            expected = []
            batch = b""
            for i in range(rounds):
                kind = (i + n) % 4
                if kind == 0:
                    batch += b'{"cmd":"stats"}\n'
                    expected.append(lambda r: "ports" in r and "workers" in r)
                elif kind == 1:
                    batch += b'{"cmd":"nope%d"}\n' % n
                    text = f"unknown command 'nope{n}' (one of: hello, stats, stats-clear, show, fdb-add, fdb-del, fdb-flush, port, capture)"
                    expected.append(lambda r, text=text: r == {"error": text})
                elif kind == 2:
                    batch += b"\xff garbage\n"
                    expected.append(lambda r: r == NOT_AN_OBJECT)
                else:
                    batch += b'{"cmd":"show","what":"fdb"}\n'
                    expected.append(lambda r: "fdb" in r and "counters" in r)
                if i % (n + 1) == 0:  # each client flushes after a different number of requests
                    c.send(batch)
                    batch = b""
                    time.sleep(0.001 * n)
            c.send(batch)
            for i, check in enumerate(expected):
                r = c.reply()
                if not check(r):
                    failures.append(f"client {n} request {i}: unexpected reply {str(r)[:200]}")
                    break
            c.close()
        except Exception as exc:  # reported below, with the client's number
            failures.append(f"client {n}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a client got no replies within 60 s"
    assert not failures, "\n".join(failures)
    traffic.assert_still_forwarding(before)


def test_a_client_that_never_reads_blocks_no_one(traffic):
    """It pipelines requests and never reads. Its replies fill its socket buffer; Ferry then
    holds a bounded amount for it and stops reading its requests (so the client's own sends
    block), while every other client is answered at once and frames keep flowing. When it
    finally reads, every request it managed to send has its reply, in order."""
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.connect(traffic.control)
    slow.setblocking(False)
    request = b'{"cmd":"stats"}\n'
    sent_bytes = 0
    stalled_since = None
    deadline = time.monotonic() + 30
    # Send until Ferry stops taking requests for a whole second: backpressure reached.
    while time.monotonic() < deadline:
        try:
            chunk = request * 64
            n = slow.send(chunk[(sent_bytes % len(request)):])
            sent_bytes += n
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    assert stalled_since is not None, "Ferry kept reading a client that never reads for 30 s"
    sent_requests = sent_bytes // len(request)
    partial = sent_bytes % len(request)
    if partial:
        # Finish the last request, so the count of replies to expect is exact.
        slow.setblocking(True)
        slow.settimeout(None)
        pending = request[partial:]
        finisher = threading.Thread(target=slow.sendall, args=(pending,))
        finisher.start()
    else:
        finisher = None

    # Meanwhile: others are served promptly, and frames flow.
    before = traffic.received()
    for _ in range(5):
        c = Connection(traffic.control, timeout=2.0)
        t0 = time.monotonic()
        c.stats()
        assert time.monotonic() - t0 < 1.0, "a client waited over 1 s behind one that never reads"
        c.close()
    traffic.assert_still_forwarding(before)
    assert traffic.ferry.running()

    # Now it reads: one reply per request, all stats, nothing lost or doubled.
    slow.setblocking(True)
    slow.settimeout(10)
    expected = sent_requests + (1 if partial else 0)
    buffer = b""
    replies = 0
    while replies < expected:
        chunk = slow.recv(1 << 20)
        assert chunk, f"Ferry closed the slow client after {replies} of {expected} replies"
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            assert "ports" in json.loads(line), f"reply {replies}: {line[:200]!r}"
            replies += 1
    if finisher is not None:
        finisher.join(10)
    assert replies == expected and buffer == b"", f"{replies} replies for {expected} requests"
    # And the connection still works both ways.
    slow.sendall(b'{"cmd":"bogus"}\n')
    line = b""
    while not line.endswith(b"\n"):
        line += slow.recv(65536)
    assert json.loads(line)["error"].startswith("unknown command 'bogus'")
    slow.close()


def test_more_connections_than_served_get_an_error_and_the_rest_work(traffic):
    held = [Connection(traffic.control) for _ in range(MAX_CLIENTS)]
    try:
        for c in held[:3]:
            c.stats()
        # Every held connection is accepted before the extra one: each has answered a request.
        for c in held:
            assert "ports" in c.ask(b'{"cmd":"stats"}')
        extra = Connection(traffic.control)
        assert extra.reply() == {"error": f"too many control connections ({MAX_CLIENTS})"}
        extra.close()
    finally:
        for c in held:
            c.close()
    # Once they are gone, new clients are served again.
    h.wait_until(lambda: "ports" in Connection(traffic.control).ask(b'{"cmd":"stats"}'), 5,
                 "a new connection to be served after the others closed")


def test_a_client_that_hangs_up_mid_request_leaves_no_trace(traffic):
    for data in (b'{"cmd":"sta', b"\xff" * 1000, b"y" * (MAX_LINE * 2)):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(traffic.control)
        s.sendall(data)
        s.close()
    c = Connection(traffic.control)
    c.stats()
    c.close()


# --------------------------------------------------------------------------- and it all adds up


def test_zz_counters_reconcile_after_the_abuse(traffic):
    """Runs last (pytest keeps file order): stop the front-end and check that every frame
    testpmd sent is accounted for, exactly as in test_vhost_testpmd.py."""
    totals = traffic.testpmd.stop()
    assert "TX-packets" in totals, f"testpmd printed no totals\n{traffic.testpmd.log_tail()}"
    vm, sink = h.wait_stable(lambda: (traffic.ferry.port("vm"), traffic.ferry.port("s")),
                             quiet=1.0, timeout=30)
    ctx = f"testpmd {totals}\nvm {vm}\nsink {sink}"
    assert totals["TX-packets"] > 0, ctx
    assert totals["TX-packets"] == vm["rx_packets"] + h.drop_total(vm), ctx
    assert sink["tx_packets"] == vm["rx_packets"] - h.drop_total(sink), ctx
