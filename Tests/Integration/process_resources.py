"""What a process holds, read from /proc/PID: open descriptors, mappings and resident memory.
A test takes a snapshot in a steady state, repeats what might leak, takes another in the same
state and compares (`leaks`).

Descriptors and mappings must match exactly. Resident memory is split the way the kernel
counts it: guest RAM that Ferry maps from the front-end's memfds is shared memory (RssShmem),
which grows with every guest page Ferry touches and starts again from zero when a table is
mapped anew; file-backed memory (RssFile) is the binary's and the libraries' pages, faulted in
the first time a code path runs (a first memory hot-plug added 1.5 MiB of it) and bounded by
their size. Neither says anything about a leak. Ferry's own memory is anonymous (RssAnon: heap,
stacks, rings it allocated) and must come back within a slack the caller names with its
reason.

Python 3 stdlib only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass


@dataclass
class Resources:
    descriptors: dict[int, str]     # fd -> what it points at (readlink)
    mappings: list[str]             # /proc/PID/maps lines, addresses dropped
    rss_kb: dict[str, int]          # VmRSS, RssAnon, RssFile, RssShmem

    @staticmethod
    def of(pid: int) -> "Resources":
        fds = {}
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                fds[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
            except FileNotFoundError:
                pass   # closed while we listed
        with open(f"/proc/{pid}/maps") as f:
            # "start-end perms offset dev inode path": the addresses and the offset change
            # when a table is mapped again; what is mapped, with which rights, does not.
            maps = [" ".join([line.split()[1]] + line.split()[3:]) for line in f]
        rss = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                m = re.match(r"(VmRSS|RssAnon|RssFile|RssShmem):\s+(\d+) kB", line)
                if m:
                    rss[m.group(1)] = int(m.group(2))
        return Resources(fds, sorted(maps), rss)

    @property
    def own_kb(self) -> int:
        """Resident memory that is Ferry's own: anonymous."""
        return self.rss_kb.get("RssAnon", 0)

    def summary(self) -> str:
        return (f"{len(self.descriptors)} descriptors, {len(self.mappings)} mappings, "
                + ", ".join(f"{k} {v} kB" for k, v in sorted(self.rss_kb.items())))


def kinds(descriptors: dict[int, str]) -> dict[str, int]:
    """How many descriptors point at each kind of thing (anon_inode:[eventfd], socket, /memfd:..)."""
    out: dict[str, int] = {}
    for target in descriptors.values():
        kind = re.sub(r"\[\d+\]$", "", target)   # socket:[123] -> socket:
        kind = re.sub(r" \(deleted\)$", "", kind)
        out[kind] = out.get(kind, 0) + 1
    return out


def leaks(before: Resources, after: Resources, own_slack_kb: int) -> list[str]:
    """Every way `after` holds more than `before`: descriptors and mappings exactly (by kind,
    so the message names what leaked), own resident memory beyond `own_slack_kb`."""
    problems = []
    kb, ka = kinds(before.descriptors), kinds(after.descriptors)
    if len(after.descriptors) != len(before.descriptors):
        diff = {k: ka.get(k, 0) - kb.get(k, 0) for k in set(ka) | set(kb)
                if ka.get(k, 0) != kb.get(k, 0)}
        problems.append(f"open descriptors {len(before.descriptors)} -> "
                        f"{len(after.descriptors)}: {diff}")
    if len(after.mappings) != len(before.mappings):
        gone = [m for m in before.mappings if m not in after.mappings]
        new = [m for m in after.mappings if m not in before.mappings]
        problems.append(f"mappings {len(before.mappings)} -> {len(after.mappings)}: "
                        f"new {new[:10]}, gone {gone[:10]}")
    growth = after.own_kb - before.own_kb
    if growth > own_slack_kb:
        problems.append(f"own resident memory (RssAnon) grew {growth} kB, "
                        f"more than {own_slack_kb} kB: {before.rss_kb} -> {after.rss_kb}")
    return problems
