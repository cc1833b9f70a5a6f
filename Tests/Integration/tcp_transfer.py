"""The two ends of a byte-exact TCP transfer, as scripts for `python3 -c` in a namespace.

RECEIVER ADDR PORT: accepts one connection, prints "listening" when bound, then the byte count
and sha256 of everything that arrived. SENDER ADDR PORT FILE: sends FILE, half-closes, and
waits for the receiver to close.
"""

RECEIVER = r"""
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
print("listening", flush=True)
c, _ = s.accept(); d = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    d.update(b); n += len(b)
print(n, d.hexdigest(), flush=True)
"""

SENDER = r"""
import socket, sys
data = open(sys.argv[3], "rb").read()
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
c.sendall(data); c.shutdown(socket.SHUT_WR); c.recv(1)
"""
