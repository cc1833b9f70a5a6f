"""QEMU command lines as docs/QEMU-LIBVIRT.md prints them, turned into test guests.

A block marked `<!-- tested: NAME -->` in the doc is read, its backslash-continued lines joined
and split like a shell would, and only these replaced (the doc says so too): the socket path,
`-accel kvm -cpu host` by `-accel tcg`, the `-drive` option by the test guest's kernel and
initrd (tools/build-test-guest.sh) with a serial console and a command port (qemu_guest.py),
and `vectors=0` added to the virtio-net-pci device (QEMU 7.2 crashes under TCG otherwise).

Python 3 stdlib only.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Optional

import harness as h
import qemu_guest as q

DOC = h.REPO / "docs" / "QEMU-LIBVIRT.md"
GUEST_DIR = os.environ.get("FERRY_GUEST_DIR", "/var/tmp/ferry-guest")


def documented_command(name: str) -> list[str]:
    """The argv of the shell block after `<!-- tested: NAME -->`."""
    text = DOC.read_text()
    m = re.search(rf"<!-- tested: {re.escape(name)} -->\s*```sh\n(.*?)```", text, re.S)
    if not m:
        raise h.HarnessError(f"{DOC} has no block marked 'tested: {name}'")
    return shlex.split(m.group(1).replace("\\\n", " "))


def documented_socket(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "-chardev":
            m = re.search(r"path=([^,]+)", argv[i + 1])
            if m:
                return m.group(1)
    raise h.HarnessError(f"no -chardev socket path in {argv}")


class DocumentedGuest(q.Guest):
    """A test guest whose QEMU runs the documented command line (see the module docstring).
    `run_as`: a prefix such as setpriv ... to run QEMU as another user."""

    def __init__(self, block: str, vhost_socket: str, ip: str, workdir: str, name: str = "doc",
                 run_as: Optional[list[str]] = None):
        super().__init__(name, "52:54:00:12:34:56", vhost_socket, ip, workdir)
        documented = documented_command(block)
        path = documented_socket(documented)
        argv: list[str] = []
        i = 0
        while i < len(documented):
            arg = documented[i]
            if arg == "-accel" and documented[i + 1] == "kvm":
                argv += ["-accel", "tcg"]
                i += 2
                continue
            if arg == "-cpu" and documented[i + 1] == "host":
                i += 2
                continue
            if arg == "-drive":
                argv += ["-kernel", f"{GUEST_DIR}/vmlinuz", "-initrd", f"{GUEST_DIR}/initrd.gz",
                         "-append", f"console=ttyS0 panic=-1 loglevel=4 edd=off ferry.ip={ip} "
                                    "ipv6.disable=1 ferry.commands=ttyS1",
                         "-nographic", "-nodefaults", "-no-user-config", "-monitor", "none",
                         "-no-reboot", "-serial", f"file:{self.log}",
                         "-serial", f"unix:{self.command_socket},server=on,wait=off"]
                i += 2
                continue
            if arg == "-device" and documented[i + 1].startswith("virtio-net-pci,"):
                argv += ["-device", documented[i + 1] + ",vectors=0"]
                i += 2
                continue
            argv.append(arg.replace(path, vhost_socket))
            i += 1
        qemu = os.environ.get("FERRY_QEMU")
        if qemu and argv[0] == "qemu-system-x86_64":
            argv[0] = qemu
        self.documented = documented
        # timeout: QEMU is killed in any case after QEMU_TIMEOUT; setpriv --pdeathsig: and when
        # the test runner dies (see tools/run-test-guest.sh).
        self.cmd = (["timeout", "-k", "5", str(q.QEMU_TIMEOUT), "setpriv", "--pdeathsig", "KILL"]
                    + (run_as or []) + argv)
