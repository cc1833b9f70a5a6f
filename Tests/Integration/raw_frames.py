"""Real frames sent and watched on a packet socket (run it inside a namespace): IEEE 802.1D
link-local ones and a broadcast, each untagged or 802.1Q-tagged. Python 3 stdlib only; the
frames are built byte by byte from their standards.

    raw_frames.py send IFACE SRC-MAC KIND[@VLAN] [KIND[@VLAN] ...]
        sends one frame of each KIND, in order, from SRC-MAC (tagged VLAN when given, the tag
        inline); prints "sent N"
    raw_frames.py listen IFACE SECONDS
        prints "listening" once bound, then for SECONDS one line per incoming frame: its
        destination MAC, its length without a tag, its VLAN or "-" when untagged (the kernel
        takes a received tag out of the frame and reports it in PACKET_AUXDATA), its source MAC

KIND: bpdu (STP configuration BPDU, 802.1D §9.3.1, to 01:80:C2:00:00:00), pause (802.3x
PAUSE, Annex 31B, to :01), lacp (LACPDU, 802.1AX §6.4.2, to :02), eapol (EAPOL-Start,
802.1X §11.3, to :03), lldp (LLDPDU with chassis, port and TTL TLVs, 802.1AB §8, to :0E),
broadcast (an ARP request, the control that crosses any switch).
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import time

ETH_P_ALL, ETH_P_8021Q = 0x0003, 0x8100
SOL_PACKET, PACKET_AUXDATA = 263, 8                  # <linux/if_packet.h>
TP_STATUS_VLAN_VALID = 1 << 4
PACKET_OUTGOING = 4


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def group(last: int) -> bytes:
    return bytes([0x01, 0x80, 0xC2, 0x00, 0x00, last])


def bpdu(src: bytes) -> bytes:
    # 802.3 length/LLC framing: DSAP 0x42, SSAP 0x42, UI; then a configuration BPDU: protocol 0,
    # version 0, type 0, flags, root id, root path cost, bridge id, port id and four timers.
    bridge_id = struct.pack("!H", 0x8000) + src
    body = struct.pack("!HBBB", 0, 0, 0, 0) + bridge_id + struct.pack("!I", 0) + bridge_id \
        + struct.pack("!HHHHH", 0x8001, 0, 20 * 256, 2 * 256, 15 * 256)
    llc = bytes([0x42, 0x42, 0x03]) + body
    return group(0x00) + src + struct.pack("!H", len(llc)) + llc


def pause(src: bytes) -> bytes:
    return group(0x01) + src + struct.pack("!HHH", 0x8808, 0x0001, 0xFFFF)


def lacp(src: bytes) -> bytes:
    def port_info(tlv: int, system: bytes, port: int) -> bytes:
        # type, length 20, system priority, system, key, port priority, port, state, 3 reserved
        return struct.pack("!BBH", tlv, 20, 0x8000) + system + struct.pack("!HHHB", 1, 0x8000, port, 0x3D) + bytes(3)
    pdu = bytes([0x01, 0x01]) + port_info(0x01, src, 1) + port_info(0x02, bytes(6), 0) \
        + struct.pack("!BBH", 0x03, 16, 0) + bytes(12) + bytes([0x00, 0x00]) + bytes(50)
    return group(0x02) + src + struct.pack("!H", 0x8809) + pdu


def eapol(src: bytes) -> bytes:
    return group(0x03) + src + struct.pack("!HBBH", 0x888E, 2, 1, 0)


def lldp(src: bytes) -> bytes:
    def tlv(kind: int, value: bytes) -> bytes:
        return struct.pack("!H", kind << 9 | len(value)) + value
    pdu = tlv(1, bytes([4]) + src) + tlv(2, bytes([7]) + b"eth0") + tlv(3, struct.pack("!H", 120)) + tlv(0, b"")
    return group(0x0E) + src + struct.pack("!H", 0x88CC) + pdu


def broadcast(src: bytes) -> bytes:
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + src + socket.inet_aton("198.18.0.1") \
        + bytes(6) + socket.inet_aton("198.18.0.2")
    return b"\xff" * 6 + src + struct.pack("!H", 0x0806) + arp


KINDS = {"bpdu": bpdu, "pause": pause, "lacp": lacp, "eapol": eapol, "lldp": lldp, "broadcast": broadcast}


def open_socket(iface: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.bind((iface, ETH_P_ALL))
    return s


def tagged(frame: bytes, vlan: int) -> bytes:
    return frame[:12] + struct.pack("!HH", ETH_P_8021Q, vlan) + frame[12:]


def built(item: str, src: bytes) -> bytes:
    kind, _, vlan = item.partition("@")
    frame = KINDS[kind](src).ljust(60, b"\0")   # the minimum frame without FCS
    return tagged(frame, int(vlan)) if vlan else frame


def vlan_of(data: bytes, ancillary) -> str:
    for level, kind, cdata in ancillary:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(cdata) >= 20:
            status, _len, _snap, _mac, _net, tci = struct.unpack_from("=IIIHHH", cdata)
            if status & TP_STATUS_VLAN_VALID:
                return str(tci & 0x0FFF)
    if len(data) >= 18 and struct.unpack_from("!H", data, 12)[0] == ETH_P_8021Q:
        return str(struct.unpack_from("!H", data, 14)[0] & 0x0FFF)
    return "-"


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "send":
        s = open_socket(argv[1])
        src = mac(argv[2])
        for item in argv[3:]:
            s.send(built(item, src))
        print(f"sent {len(argv) - 3}", flush=True)
        return 0
    if len(argv) == 3 and argv[0] == "listen":
        s = open_socket(argv[1])
        print("listening", flush=True)
        end = time.monotonic() + float(argv[2])
        while (left := end - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                continue
            data, ancillary, _flags, addr = s.recvmsg(65535, socket.CMSG_SPACE(32))
            if addr[2] != PACKET_OUTGOING:
                vlan = vlan_of(data, ancillary)
                length = len(data) - 4 if vlan != "-" and data[12:14] == b"\x81\x00" else len(data)
                print(f"{data[:6].hex(':')} {length} {vlan} {data[6:12].hex(':')}", flush=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
