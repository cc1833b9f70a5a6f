"""A root file system to install a package into without touching this machine, and with no
Swift toolchain in it.

In a private mount namespace (unshare --mount, held open by a sleeping process) an overlay
lies over this machine's /: reads see its userland, writes land in a tmpfs. /proc, /dev, a
fresh /run and /tmp are mounted in it, and every place a Swift toolchain could be is covered
by an empty tmpfs, so nothing Swift is left to find. Commands run chrooted into the overlay
(nsenter into the namespace, then chroot); `share` is a directory of the caller's that the
root sees as /run/share (the package goes in through it). Closing the root kills the holder:
the namespace, its mounts and everything written in the root are gone.

Needs root (mount namespaces, overlayfs, chroot).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

SHARE = "/run/share"


def toolchain_directories() -> list[str]:
    """Where tools/lib/swift-toolchain.sh looks for Swift, and the toolchain PATH has."""
    places = {"/opt/swift", "/usr/share/swift", os.path.expanduser("~/.local/share/swiftly")}
    if os.environ.get("SWIFT_TOOLCHAIN"):
        places.add(os.environ["SWIFT_TOOLCHAIN"])
    swift = shutil.which("swift", path=os.environ.get("PATH", "") + ":/opt/swift/usr/bin")
    if swift:
        places.add(str(Path(os.path.realpath(swift)).parents[2]))  # .../usr/bin/swift -> ...
    return sorted(p for p in places if os.path.isdir(p) and p != "/")


class CleanRoot:
    def __init__(self, workdir: Path):
        self.base = workdir / "root"
        self.share = workdir / "share"
        self.base.mkdir()
        self.share.mkdir()
        self.share.chmod(0o755)
        self.merged = self.base / "merged"
        self.hidden = toolchain_directories()
        hide = "\n".join(f'if [ -d "$m{d}" ]; then mount -t tmpfs -o mode=0755 hidden "$m{d}"; fi'
                         for d in self.hidden)
        setup = f"""
            set -e
            mount -t tmpfs -o mode=0755 root "{self.base}"
            mkdir "{self.base}/upper" "{self.base}/work" "{self.merged}"
            mount -t overlay overlay -o lowerdir=/,upperdir="{self.base}/upper",workdir="{self.base}/work" "{self.merged}"
            m="{self.merged}"
            mount -t proc proc "$m/proc"
            mount --rbind /dev "$m/dev"
            mount -t tmpfs -o mode=0755 run "$m/run"
            mount -t tmpfs -o mode=1777 tmp "$m/tmp"
            mkdir "$m{SHARE}"
            mount --bind "{self.share}" "$m{SHARE}"
            {hide}
            echo ready
            exec sleep infinity
        """
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", setup],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline().strip()
        if line != "ready":
            self.holder.kill()
            raise RuntimeError(f"cannot make the clean root: {self.holder.stderr.read().strip()}")

    def command(self, *argv: str) -> list[str]:
        """argv run as root inside the clean root (for Popen)."""
        return ["nsenter", "-t", str(self.holder.pid), "-m", "--", "chroot", str(self.merged), *argv]

    def run(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **(env or {})}
        return subprocess.run(self.command(*argv), capture_output=True, text=True, env=environment, timeout=120)

    def sh(self, script: str) -> subprocess.CompletedProcess:
        return self.run("sh", "-c", script)

    def close(self):
        self.holder.send_signal(signal.SIGKILL)
        self.holder.wait()
        self.holder.stdout.close()
        self.holder.stderr.close()
