"""Fixtures every integration test may ask for by name (pytest loads this file first; pytest
also puts this directory on sys.path, so tests import harness, qemu_guest, ... directly).

What a test needs that the machine may lack is checked once per run, and a test that cannot
run FAILS with every reason why (it never skips):

* ``ferry_binary``: the Ferry binary (FERRY_BIN, else the release build);
* ``testpmd_machine``: root, dpdk-testpmd and the Ferry binary;
* ``guest_machine``: what QEMU test guests need, the guest image built, namespaces a killed
  earlier run left behind removed;

and what a test makes goes when it ends, however it ends:

* ``lab``: a `harness.Lab` for the test's Ferry and testpmd processes; their logs are kept in
  the test's tmp_path/logs;
* ``guests``: a list the test appends its `qemu_guest.Guest`s to; they stop when the test ends,
  before the lab's processes, and their console logs join the lab's;
* ``namespaces``: ``namespaces(tag)`` makes a network namespace (`qemu_guest.Netns`); each is
  deleted when the test ends, after the fixtures that asked for this one (a Ferry whose TAP was
  moved into it stops first).
"""

from __future__ import annotations

import os
import shutil

import pytest

import harness as h
import qemu_guest as q


def fail_unless_runnable(what: str, problems: list[str]):
    if problems:
        pytest.fail(f"cannot run {what}:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def ferry_binary() -> str:
    problem = h.ferry_binary_problem()
    fail_unless_runnable("tests that start Ferry", [problem] if problem else [])
    return h.ferry_binary()


@pytest.fixture(scope="session")
def testpmd_machine():
    fail_unless_runnable("tests with dpdk-testpmd", h.environment_problems(need_ferry=True, need_testpmd=True))


@pytest.fixture(scope="session")
def guest_machine():
    fail_unless_runnable("tests with QEMU guests", q.environment_problems())
    q.build_guest_image()
    q.Netns.remove_stale()


@pytest.fixture
def lab(request, tmp_path):
    module = request.module.__name__.removeprefix("test_")
    lab = h.Lab(module, keep_logs=str(tmp_path / "logs"))
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def guests(lab):
    """The test's guests: stopped first when it ends, their console logs kept."""
    made: list[q.Guest] = []
    try:
        yield made
    finally:
        for g in made:
            g.stop()
        if lab.keep_logs:
            os.makedirs(lab.keep_logs, exist_ok=True)
            for g in made:
                for f in (g.log, g.err):
                    if os.path.exists(f):
                        shutil.copy(f, lab.keep_logs)


@pytest.fixture
def namespaces():
    made: list[q.Netns] = []

    def make(tag: str) -> q.Netns:
        ns = q.Netns(tag)
        made.append(ns)
        return ns

    try:
        yield make
    finally:
        for ns in reversed(made):
            ns.delete()
