"""A small vhost-user *front-end* in pure Python (stdlib only), for Ferry's integration tests.

It plays the part QEMU or virtio-user plays: connects to a back-end's unix socket, negotiates
(VERSION_1 + PROTOCOL_FEATURES; protocol features REPLY_ACK + STATUS), hands over one memfd as
"guest memory", lays out a split ring pair in it (queue 0 = RX, queue 1 = TX) and starts the
device. It can then put valid frames on the TX ring, and it can misbehave on purpose: bad
descriptors, looping chains, impossible avail indexes, bad ring sizes, malformed messages and
plain garbage on the socket.

Wire format (QEMU docs/interop/vhost-user.rst): header = request u32, flags u32 (version 1 in
bits 0-1, bit 2 reply, bit 3 need_reply), size u32, then `size` payload bytes, little-endian;
file descriptors ride along as SCM_RIGHTS.

Address spaces of the fake guest (kept consistent throughout):

* the memory table declares ONE region: guest physical addresses ``gpa_base .. +mem_size``,
  front-end ("userspace") addresses ``user_base .. +mem_size``, mmap offset 0 in the memfd;
* SET_VRING_ADDR carries front-end addresses (``user_base + offset``);
* descriptors carry guest physical addresses (``gpa_base + offset``).

Memory layout (offsets into the memfd; ring size up to 1024):

    queue q rings at q * 0x8000: descriptor table +0x0000, avail ring +0x4000, used ring +0x5000
    TX buffers from TX_BUFFERS, one BUFFER_SIZE slot per descriptor (descriptor i <-> slot i)
    RX buffers from TX_BUFFERS + size * BUFFER_SIZE, likewise

Typical use::

    fe = VhostUserFrontend(path)
    fe.connect()
    fe.setup()                      # whole handshake, device running
    fe.send_frame(make_frame())     # one valid TX frame
    fe.wait_consumed()              # until the back-end has returned it (used index)
    fe.close()

Hostile operations return right after the fault is in place; the test then watches the
back-end (its stats, its log, GET_STATUS).
"""

from __future__ import annotations

import errno
import mmap
import os
import socket
import struct
import time
from typing import Optional, Sequence

# --------------------------------------------------------------------------- protocol constants

GET_FEATURES = 1
SET_FEATURES = 2
SET_OWNER = 3
RESET_OWNER = 4
SET_MEM_TABLE = 5
SET_VRING_NUM = 8
SET_VRING_ADDR = 9
SET_VRING_BASE = 10
GET_VRING_BASE = 11
SET_VRING_KICK = 12
SET_VRING_CALL = 13
SET_VRING_ERR = 14
GET_PROTOCOL_FEATURES = 15
SET_PROTOCOL_FEATURES = 16
GET_QUEUE_NUM = 17
SET_VRING_ENABLE = 18
SET_STATUS = 39
GET_STATUS = 40

REQUEST_NAMES = {v: k for k, v in globals().items() if k.isupper() and isinstance(v, int)}

VERSION = 0x1
FLAG_REPLY = 1 << 2
FLAG_NEED_REPLY = 1 << 3
HEADER = struct.Struct("<III")

# virtio / vhost-user feature bits
F_VERSION_1 = 1 << 32
F_PROTOCOL_FEATURES = 1 << 30
PF_REPLY_ACK = 1 << 3
PF_STATUS = 1 << 16

# virtio device status bits
S_ACKNOWLEDGE = 1
S_DRIVER = 2
S_DRIVER_OK = 4
S_FEATURES_OK = 8
S_NEEDS_RESET = 0x40
S_FAILED = 0x80
STATUS_RUNNING = S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK  # 15

# split ring
DESC_F_NEXT = 1
DESC_F_WRITE = 2
AVAIL_F_NO_INTERRUPT = 1
DESC = struct.Struct("<QIHH")  # addr, len, flags, next

# VERSION_1 header: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers
NET_HDR_LEN = 12

RX_QUEUE = 0
TX_QUEUE = 1

RING_STRIDE = 0x8000
AVAIL_OFFSET = 0x4000
USED_OFFSET = 0x5000
TX_BUFFERS = 0x10000
BUFFER_SIZE = 2048
MAX_QUEUE_SIZE = 1024


class FrontendError(RuntimeError):
    pass


class BackendClosed(FrontendError):
    """The back-end closed the connection (EOF or reset) while we talked to it."""


def make_frame(size: int = 64, dst: str = "02:00:00:00:00:02", src: str = "02:00:00:00:00:01",
               ethertype: int = 0x88B5, seq: int = 0) -> bytes:
    """An Ethernet frame of `size` bytes (no FCS); 0x88B5 is the IEEE local experimental type."""
    if size < 14:
        raise ValueError("an Ethernet frame has at least 14 bytes")
    head = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) \
        + struct.pack("!H", ethertype)
    body = struct.pack("!I", seq & 0xFFFFFFFF)
    body = (body * (size // 4 + 1))[: size - 14]
    return head + body


class VhostUserFrontend:
    """One vhost-user connection acting as the driver side of a virtio-net device."""

    def __init__(self, path: str, queue_size: int = 256, user_base: int = 0x7F0000000000,
                 gpa_base: int = 0, timeout: float = 5.0):
        if queue_size < 1 or queue_size > MAX_QUEUE_SIZE or queue_size & (queue_size - 1):
            raise ValueError(f"queue_size {queue_size}: a power of two up to {MAX_QUEUE_SIZE}")
        self.path = path
        self.size = queue_size
        self.user_base = user_base
        self.gpa_base = gpa_base
        self.timeout = timeout
        self.rx_buffers = TX_BUFFERS + queue_size * BUFFER_SIZE
        need = self.rx_buffers + queue_size * BUFFER_SIZE
        self.mem_size = (need + 0x1FFFFF) & ~0x1FFFFF  # whole 2 MiB
        self.sock: Optional[socket.socket] = None
        self.mem_fd = -1
        self.mem: Optional[mmap.mmap] = None
        self._u16: Optional[memoryview] = None
        self.kick_fds: dict[int, int] = {}
        self.call_fds: dict[int, int] = {}
        self.features = 0
        self.protocol_features = 0
        # driver-side ring state
        self.avail_idx = {RX_QUEUE: 0, TX_QUEUE: 0}
        self.rx_seen_used = 0
        self.sent = 0
        self.last_bad_address = 0

    # ----------------------------------------------------------------- addresses

    def ring_offset(self, q: int) -> int:
        return q * RING_STRIDE

    def desc_offset(self, q: int) -> int:
        return self.ring_offset(q)

    def avail_offset(self, q: int) -> int:
        return self.ring_offset(q) + AVAIL_OFFSET

    def used_offset(self, q: int) -> int:
        return self.ring_offset(q) + USED_OFFSET

    def user_addr(self, offset: int) -> int:
        """Front-end address of a memfd offset (what SET_VRING_ADDR carries)."""
        return self.user_base + offset

    def guest_addr(self, offset: int) -> int:
        """Guest physical address of a memfd offset (what descriptors carry)."""
        return self.gpa_base + offset

    def tx_buffer_offset(self, slot: int) -> int:
        return TX_BUFFERS + slot * BUFFER_SIZE

    def rx_buffer_offset(self, slot: int) -> int:
        return self.rx_buffers + slot * BUFFER_SIZE

    # ----------------------------------------------------------------- connection

    def connect(self, retry_for: float = 5.0) -> "VhostUserFrontend":
        deadline = time.monotonic() + retry_for
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        s.settimeout(self.timeout)
        self.sock = s
        return self

    def close(self):
        """Closes the socket, the eventfds and the memory. Safe to call more than once."""
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        for fd in list(self.kick_fds.values()) + list(self.call_fds.values()):
            try:
                os.close(fd)
            except OSError:
                pass
        self.kick_fds.clear()
        self.call_fds.clear()
        if self._u16 is not None:
            self._u16.release()
            self._u16 = None
        if self.mem is not None:
            try:
                self.mem.close()
            except (BufferError, ValueError):
                pass
            self.mem = None
        if self.mem_fd >= 0:
            os.close(self.mem_fd)
            self.mem_fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _require_sock(self) -> socket.socket:
        if self.sock is None:
            raise FrontendError("not connected")
        return self.sock

    # ----------------------------------------------------------------- raw messages

    def send_raw(self, data: bytes, fds: Sequence[int] = ()):
        """Writes bytes as they are (one sendmsg; fds as SCM_RIGHTS)."""
        s = self._require_sock()
        try:
            if fds:
                socket.send_fds(s, [data], list(fds))
            else:
                s.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise BackendClosed(f"back-end closed the connection while we sent: {exc}") from None

    def send_message(self, request: int, payload: bytes = b"", fds: Sequence[int] = (),
                     need_reply: bool = False, flags: Optional[int] = None,
                     size: Optional[int] = None):
        """Sends one message. flags/size override the header fields (for malformed messages)."""
        if flags is None:
            flags = VERSION | (FLAG_NEED_REPLY if need_reply else 0)
        if size is None:
            size = len(payload)
        self.send_raw(HEADER.pack(request, flags, size) + payload, fds)

    def _recv_exact(self, n: int) -> bytes:
        s = self._require_sock()
        chunks = []
        left = n
        while left > 0:
            try:
                chunk = s.recv(left)
            except socket.timeout:
                raise FrontendError(f"no answer from the back-end within {self.timeout:.0f}s") \
                    from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise BackendClosed("back-end closed the connection")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def recv_reply(self, request: int) -> bytes:
        """Reads one reply and checks it answers `request`; returns its payload."""
        req, flags, size = HEADER.unpack(self._recv_exact(HEADER.size))
        payload = self._recv_exact(size) if size else b""
        if req != request:
            raise FrontendError(f"reply to request {req} ({REQUEST_NAMES.get(req, '?')}), "
                                f"expected {request} ({REQUEST_NAMES.get(request, '?')})")
        if flags & 0x3 != VERSION or not flags & FLAG_REPLY:
            raise FrontendError(f"reply to {REQUEST_NAMES.get(req, req)} has flags 0x{flags:x}")
        return payload

    def request_u64(self, request: int) -> int:
        """A request with no payload whose reply is a u64 (GET_FEATURES, GET_STATUS, ...)."""
        self.send_message(request)
        payload = self.recv_reply(request)
        if len(payload) != 8:
            raise FrontendError(f"{REQUEST_NAMES.get(request)} reply has {len(payload)} bytes")
        return struct.unpack("<Q", payload)[0]

    def command(self, request: int, payload: bytes = b"", fds: Sequence[int] = (),
                check: bool = True) -> Optional[int]:
        """A request without a reply of its own. With REPLY_ACK negotiated, need_reply is set and
        the ack status returned (0 = success); check=True raises on a non-zero status."""
        ack = bool(self.protocol_features & PF_REPLY_ACK)
        self.send_message(request, payload, fds, need_reply=ack)
        if not ack:
            return None
        status = self._read_ack(request)
        if check and status != 0:
            raise FrontendError(f"back-end refused {REQUEST_NAMES.get(request, request)} "
                                f"(REPLY_ACK status {status})")
        return status

    def _read_ack(self, request: int) -> int:
        payload = self.recv_reply(request)
        if len(payload) != 8:
            raise FrontendError(f"REPLY_ACK for {REQUEST_NAMES.get(request)} has "
                                f"{len(payload)} bytes")
        return struct.unpack("<Q", payload)[0]

    # ----------------------------------------------------------------- requests

    def get_features(self) -> int:
        return self.request_u64(GET_FEATURES)

    def set_features(self, features: int):
        self.command(SET_FEATURES, struct.pack("<Q", features))
        self.features = features

    def get_protocol_features(self) -> int:
        return self.request_u64(GET_PROTOCOL_FEATURES)

    def set_protocol_features(self, features: int):
        # Not acked: REPLY_ACK only binds once this message has been processed.
        self.send_message(SET_PROTOCOL_FEATURES, struct.pack("<Q", features))
        self.protocol_features = features

    def set_owner(self):
        self.command(SET_OWNER)

    def get_status(self) -> int:
        return self.request_u64(GET_STATUS)

    def set_status(self, status: int):
        self.command(SET_STATUS, struct.pack("<Q", status))

    def set_vring_num(self, q: int, num: int, check: bool = True) -> Optional[int]:
        return self.command(SET_VRING_NUM, struct.pack("<II", q, num), check=check)

    def set_vring_base(self, q: int, base: int):
        self.command(SET_VRING_BASE, struct.pack("<II", q, base))

    def get_vring_base(self, q: int) -> int:
        self.send_message(GET_VRING_BASE, struct.pack("<II", q, 0))
        index, num = struct.unpack("<II", self.recv_reply(GET_VRING_BASE))
        if index != q:
            raise FrontendError(f"GET_VRING_BASE reply for queue {index}, asked for {q}")
        return num

    def set_vring_addr(self, q: int, desc: int, used: int, avail: int, flags: int = 0):
        self.command(SET_VRING_ADDR, struct.pack("<IIQQQQ", q, flags, desc, used, avail, 0))

    def set_vring_kick(self, q: int, fd: int):
        self.command(SET_VRING_KICK, struct.pack("<Q", q), fds=[fd])

    def set_vring_call(self, q: int, fd: int):
        self.command(SET_VRING_CALL, struct.pack("<Q", q), fds=[fd])

    def set_vring_enable(self, q: int, enable: bool = True):
        self.command(SET_VRING_ENABLE, struct.pack("<II", q, 1 if enable else 0))

    def set_mem_table(self):
        """One region: the whole memfd, at gpa_base (guest) and user_base (front-end)."""
        region = struct.pack("<QQQQ", self.gpa_base, self.mem_size, self.user_base, 0)
        self.command(SET_MEM_TABLE, struct.pack("<II", 1, 0) + region, fds=[self.mem_fd])

    # ----------------------------------------------------------------- set-up

    def _make_memory(self):
        if self.mem is not None:
            return
        self.mem_fd = os.memfd_create("ferry-test-guest", os.MFD_CLOEXEC)
        os.ftruncate(self.mem_fd, self.mem_size)
        self.mem = mmap.mmap(self.mem_fd, self.mem_size, flags=mmap.MAP_SHARED,
                             prot=mmap.PROT_READ | mmap.PROT_WRITE)
        # Native-order u16 view (little-endian on x86, as virtio 1.x wants) for single stores.
        self._u16 = memoryview(self.mem).cast("H")

    def _init_ring(self, q: int):
        """Zeroed descriptor table, avail and used rings; avail flags ask for no interrupts."""
        mem = self.mem
        base = self.ring_offset(q)
        mem[base:base + RING_STRIDE] = bytes(RING_STRIDE)
        struct.pack_into("<H", mem, self.avail_offset(q), AVAIL_F_NO_INTERRUPT)

    def negotiate(self, features: int = F_VERSION_1 | F_PROTOCOL_FEATURES,
                  protocol_features: int = PF_REPLY_ACK | PF_STATUS):
        """SET_OWNER, GET/SET_FEATURES, GET/SET_PROTOCOL_FEATURES (in QEMU's order)."""
        self.set_owner()
        offered = self.get_features()
        missing = features & ~offered
        if missing:
            raise FrontendError(f"back-end does not offer features 0x{missing:x} "
                                f"(offers 0x{offered:x})")
        if features & F_PROTOCOL_FEATURES:
            poffered = self.get_protocol_features()
            pmissing = protocol_features & ~poffered
            if pmissing:
                raise FrontendError(f"back-end does not offer protocol features 0x{pmissing:x} "
                                    f"(offers 0x{poffered:x})")
            self.set_protocol_features(protocol_features)
        self.set_features(features)

    def setup_queue(self, q: int, num: Optional[int] = None, base: int = 0):
        self._init_ring(q)
        self.avail_idx[q] = base
        self.set_vring_num(q, num or self.size)
        self.set_vring_base(q, base)
        self.set_vring_addr(q, desc=self.user_addr(self.desc_offset(q)),
                            used=self.user_addr(self.used_offset(q)),
                            avail=self.user_addr(self.avail_offset(q)))
        if q in self.kick_fds:
            os.close(self.kick_fds.pop(q))
        if q in self.call_fds:
            os.close(self.call_fds.pop(q))
        self.kick_fds[q] = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.call_fds[q] = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.set_vring_call(q, self.call_fds[q])
        self.set_vring_kick(q, self.kick_fds[q])

    def setup(self, rx_buffers: int = 0) -> "VhostUserFrontend":
        """The whole handshake; afterwards the device runs (status 15). rx_buffers: post that
        many RX buffers before starting, so the back-end can deliver frames to us."""
        self._make_memory()
        self.negotiate()
        self.set_status(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK)
        self.set_mem_table()
        for q in (RX_QUEUE, TX_QUEUE):
            self.setup_queue(q)
        if rx_buffers:
            self.post_rx_buffers(rx_buffers)
        for q in (RX_QUEUE, TX_QUEUE):
            self.set_vring_enable(q, True)
        self.set_status(STATUS_RUNNING)
        return self

    # ----------------------------------------------------------------- ring access

    def _write_desc(self, q: int, i: int, addr: int, length: int, flags: int = 0, nxt: int = 0):
        DESC.pack_into(self.mem, self.desc_offset(q) + 16 * i, addr, length, flags, nxt)

    def _publish(self, q: int, heads: Sequence[int], kick: bool = True):
        """Puts chain heads in the avail ring, then moves the avail index (after the entries)."""
        idx = self.avail_idx[q]
        for h in heads:
            struct.pack_into("<H", self.mem, self.avail_offset(q) + 4 + 2 * (idx % self.size), h)
            idx = (idx + 1) & 0xFFFF
        self._set_avail_idx(q, idx)
        if kick:
            self.kick(q)

    def _set_avail_idx(self, q: int, idx: int):
        # One 16-bit store, through a memoryview: struct.pack_into first zero-fills its target
        # and then writes the value, so a back-end polling the index could catch a transient 0
        # (and rightly call it a jump). x86 keeps stores in order: the ring entries written
        # before are visible before the new index.
        self._u16[(self.avail_offset(q) + 2) // 2] = idx & 0xFFFF
        self.avail_idx[q] = idx & 0xFFFF

    def kick(self, q: int):
        fd = self.kick_fds.get(q)
        if fd is not None:
            try:
                os.eventfd_write(fd, 1)
            except BlockingIOError:
                pass

    def used_idx(self, q: int) -> int:
        return struct.unpack_from("<H", self.mem, self.used_offset(q) + 2)[0]

    def used_flags(self, q: int) -> int:
        return struct.unpack_from("<H", self.mem, self.used_offset(q))[0]

    def used_entry(self, q: int, slot: int) -> tuple[int, int]:
        return struct.unpack_from("<II", self.mem, self.used_offset(q) + 4 + 8 * (slot % self.size))

    def in_flight(self, q: int = TX_QUEUE) -> int:
        return (self.avail_idx[q] - self.used_idx(q)) & 0xFFFF

    def wait_consumed(self, q: int = TX_QUEUE, timeout: float = 5.0) -> bool:
        """Until the back-end has used everything we made available on q. False on timeout."""
        deadline = time.monotonic() + timeout
        while self.in_flight(q):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True

    # ----------------------------------------------------------------- valid traffic

    def send_frame(self, frame: bytes, wait_room: float = 5.0, kick: bool = True):
        """One frame, one descriptor: 12-byte zero virtio-net header + frame. Descriptor i is
        used for avail index i (mod ring size); waits for the back-end to free it if needed."""
        if len(frame) + NET_HDR_LEN > BUFFER_SIZE:
            raise ValueError(f"frame of {len(frame)} bytes does not fit a "
                             f"{BUFFER_SIZE}-byte buffer")
        deadline = time.monotonic() + wait_room
        while self.in_flight(TX_QUEUE) >= self.size:
            if time.monotonic() >= deadline:
                raise FrontendError(f"TX ring full for {wait_room:.0f}s: the back-end stopped "
                                    f"consuming (used idx {self.used_idx(TX_QUEUE)}, avail idx "
                                    f"{self.avail_idx[TX_QUEUE]})")
            time.sleep(0.001)
        slot = self.avail_idx[TX_QUEUE] % self.size
        off = self.tx_buffer_offset(slot)
        data = bytes(NET_HDR_LEN) + frame
        self.mem[off:off + len(data)] = data
        self._write_desc(TX_QUEUE, slot, self.guest_addr(off), len(data))
        self._publish(TX_QUEUE, [slot], kick=kick)
        self.sent += 1

    def send_frames(self, count: int, size: int = 64, **frame_kw) -> int:
        for i in range(count):
            self.send_frame(make_frame(size, seq=self.sent, **frame_kw), kick=(i == count - 1))
        return count

    def post_rx_buffers(self, count: Optional[int] = None):
        """Makes `count` (default: the ring size) device-writable buffers available on RX."""
        count = self.size if count is None else min(count, self.size)
        heads = []
        for _ in range(count):
            slot = (self.avail_idx[RX_QUEUE] + len(heads)) % self.size
            off = self.rx_buffer_offset(slot)
            self._write_desc(RX_QUEUE, slot, self.guest_addr(off), BUFFER_SIZE, DESC_F_WRITE)
            heads.append(slot)
        self._publish(RX_QUEUE, heads)

    def received_frames(self) -> list[bytes]:
        """Frames the back-end put in our RX buffers since the last call (header stripped)."""
        frames = []
        used = self.used_idx(RX_QUEUE)
        while self.rx_seen_used != used:
            ident, length = self.used_entry(RX_QUEUE, self.rx_seen_used)
            off = self.rx_buffer_offset(ident % self.size)
            frames.append(bytes(self.mem[off + NET_HDR_LEN:off + length]))
            self.rx_seen_used = (self.rx_seen_used + 1) & 0xFFFF
        return frames

    # ----------------------------------------------------------------- hostile operations

    def send_descriptor_outside_memory(self, length: int = 64) -> int:
        """A TX descriptor whose buffer lies beyond the end of the only memory region.
        Returns the guest physical address used."""
        slot = self.avail_idx[TX_QUEUE] % self.size
        addr = self.guest_addr(self.mem_size) + 0x10000000
        self._write_desc(TX_QUEUE, slot, addr, length)
        self._publish(TX_QUEUE, [slot])
        return addr

    def send_descriptor_straddling_memory_end(self, length: int = 64) -> int:
        """A TX descriptor that starts inside the region and ends past it (the last `length/2`
        bytes are outside guest memory). Returns the guest physical address used."""
        slot = self.avail_idx[TX_QUEUE] % self.size
        addr = self.guest_addr(self.mem_size) - length // 2
        self._write_desc(TX_QUEUE, slot, addr, length)
        self._publish(TX_QUEUE, [slot])
        return addr

    def set_vring_addr_outside_memory(self, q: int = TX_QUEUE) -> int:
        """SET_VRING_ADDR (need_reply set) moving queue q's descriptor table to a front-end
        address no memory region covers, on a running device. Returns the REPLY_ACK status.
        Returns the bad address in self.last_bad_address."""
        bad = self.user_base + self.mem_size + 0x100000
        self.last_bad_address = bad
        payload = struct.pack("<IIQQQQ", q, 0, bad, self.user_addr(self.used_offset(q)),
                              self.user_addr(self.avail_offset(q)), 0)
        self.send_message(SET_VRING_ADDR, payload, need_reply=True)
        return self._read_ack(SET_VRING_ADDR)

    def send_looping_chain(self, length: int = 72) -> int:
        """A TX chain whose descriptor has NEXT set and points to itself (a valid buffer, so
        only the loop is wrong). Returns the descriptor index."""
        slot = self.avail_idx[TX_QUEUE] % self.size
        off = self.tx_buffer_offset(slot)
        self.mem[off:off + length] = bytes(NET_HDR_LEN) + make_frame(length - NET_HDR_LEN)
        self._write_desc(TX_QUEUE, slot, self.guest_addr(off), length, DESC_F_NEXT, slot)
        self._publish(TX_QUEUE, [slot])
        return slot

    def jump_avail_index(self, by: Optional[int] = None) -> int:
        """Moves the TX avail index forward by more than the ring size (default size + 44)
        without filling anything in. Returns the new index."""
        by = self.size + 44 if by is None else by
        new = (self.avail_idx[TX_QUEUE] + by) & 0xFFFF
        self._set_avail_idx(TX_QUEUE, new)
        self.kick(TX_QUEUE)
        return new

    def set_vring_num_unchecked(self, q: int, num: int) -> int:
        """SET_VRING_NUM with need_reply set whatever was negotiated; returns the REPLY_ACK
        status (non-zero = refused). Raises BackendClosed if the back-end hung up instead."""
        self.send_message(SET_VRING_NUM, struct.pack("<II", q, num), need_reply=True)
        return self._read_ack(SET_VRING_NUM)

    def send_malformed(self, request: int = SET_VRING_NUM, payload: bytes = b"\x01\x00\x00\x00",
                       need_reply: bool = True) -> Optional[int]:
        """A known request whose payload has the wrong size (default: SET_VRING_NUM with 4 bytes
        instead of 8). Returns the REPLY_ACK status, or None if the back-end closed the
        connection instead of answering."""
        self.send_message(request, payload, need_reply=need_reply)
        if not need_reply:
            return None
        try:
            return self._read_ack(request)
        except BackendClosed:
            return None

    def send_garbage(self, data: Optional[bytes] = None) -> bytes:
        """Bytes that are no vhost-user message (default: 0xdeadbeef repeated, whose 'flags'
        word has version bits 2)."""
        data = data if data is not None else b"\xde\xad\xbe\xef" * 16
        self.send_raw(data)
        return data

    def send_oversized_header(self, size: int = 0x40000000, request: int = SET_MEM_TABLE):
        """A well-formed header announcing a payload of `size` bytes (1 GiB by default), followed
        by a few bytes of it."""
        self.send_message(request, b"\x00" * 64, size=size)

    def hand_over(self, request: int, q: int, fd: int) -> int:
        """SET_VRING_KICK, CALL or ERR for queue q carrying `fd`, whatever it is (a pipe, a
        socket, a file, a blocking eventfd), with need_reply set; returns the REPLY_ACK status
        (non-zero = refused). Raises BackendClosed if the back-end hung up instead."""
        self.send_message(request, struct.pack("<Q", q), fds=[fd], need_reply=True)
        return self._read_ack(request)

    def restart_with_kick(self, q: int, fd: int) -> int:
        """Stops queue q (GET_VRING_BASE) and starts it again with `fd` as its kick, so the
        back-end meets the new descriptor as a ring starts; afterwards kick() writes to `fd`
        (the caller keeps owning it). Returns the REPLY_ACK status of SET_VRING_KICK."""
        self.get_vring_base(q)
        status = self.hand_over(SET_VRING_KICK, q, fd)
        if status == 0:
            old = self.kick_fds.pop(q, None)
            if old is not None:
                os.close(old)
            self.kick_fds[q] = os.dup(fd)
        return status

    def shrink_memory(self, size: int = 0):
        """Truncates the guest-memory file to `size` bytes under the running rings, as a
        front-end that frees its guest's RAM would. From here on the memory past `size` is gone:
        this front-end touches it no more (its own access would raise SIGBUS too), it only
        kicks."""
        if self._u16 is not None:
            self._u16.release()
            self._u16 = None
        os.ftruncate(self.mem_fd, size)
        self.mem_size_now = size

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """True once the back-end has closed the connection (EOF/reset) within timeout.
        Whatever the back-end still sends meanwhile is read and dropped."""
        s = self._require_sock()
        deadline = time.monotonic() + timeout
        old = s.gettimeout()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                s.settimeout(min(left, 0.5))
                try:
                    data = s.recv(4096)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    return True
                except OSError as exc:
                    if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                        return True
                    raise
                if not data:
                    return True
        finally:
            try:
                s.settimeout(old)
            except OSError:
                pass
