"""The config file: `ferry check FILE` and `ferry run --config FILE`, and SIGHUP.

Run from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_config.py

`ferry check` is run on docs/ferry.example.yaml (which every port type is in) and on broken
files, each with its exact message (the unit tests in Tests/ConfigurationTests hold many
more). `ferry run --config` runs a generator and two sinks from a file, with a `--port`
added on the command line; SIGHUP then re-reads a broken file (nothing changes) and an
edited one (ports are added, removed and replaced while the switch runs).

Environment: FERRY_BIN (see harness.py). Needs no root, testpmd or QEMU; the tests fail (they
do not skip) when the Ferry binary is missing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import textwrap

import pytest

import harness as h

EXAMPLE = str(h.REPO / "docs" / "ferry.example.yaml")
GEN_DST = "02:00:00:00:00:02"
COUNT = 100


# Every test here runs the Ferry binary (conftest.py checks it once).
pytestmark = pytest.mark.usefixtures("ferry_binary")


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([h.ferry_binary(), "check", *args], capture_output=True, text=True, timeout=10)


def write(path, text: str) -> str:
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return str(path)


# --------------------------------------------------------------------------- ferry check


def test_check_accepts_the_documented_example():
    res = check(EXAMPLE)
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout == ("ok: 9 ports (vm0 vhost, vm1 vhost, host tap, uplink xdp, mirror packet, "
                          "probe gen, drop sink, dc2 vxlan, dut-a virtio-user), 2 static addresses\n")


def test_check_json_lists_the_ports():
    res = check("--json", EXAMPLE)
    assert (res.returncode, res.stderr) == (0, "")
    reply = json.loads(res.stdout)
    assert reply["ok"] is True
    assert [p["type"] for p in reply["ports"]] == ["vhost", "vhost", "tap", "xdp", "packet", "gen", "sink", "vxlan",
                                                     "virtio-user"]
    assert reply["ports"][0]["spec"] == \
        "vhost:/run/ferry/vm0.sock,queues=2,group=kvm,mode=0660,vlan=10,name=vm0"


BROKEN = [
    ("ports:\n  - name: a\n    type: sink\n   bad: [\n",
     "{f}:4:4: invalid YAML: did not find expected '-' indicator (while parsing a block collection at line 2, column 3)"),
    ("switchh: {}\nports: [{name: a, type: sink}]\n",
     "{f}:1:1: unknown key 'switchh' (expected one of: switch, control, metrics, ports, fdb)"),
    ("ports:\n  - name: vm0\n    type: vhost\n    path: /tmp/x.sock\n    qeues: 2\n",
     "{f}:5:5: port 'vm0': unknown key 'qeues' (expected one of: name, type, path, client, queues, owner, group, "
     "mode, offloads, vlan, trunk, native, group_fwd_mask)"),
    ("ports:\n  - {name: a, type: sink}\n  - {name: a, type: sink, vlan: 4095}\n",
     "{f}:3:33: port 'a': VLAN id '4095' must be 1...4094"),
    ("switch: {workers: 0}\nports: []\n",
     "{f}:1:19: switch: workers must be a whole number 1...64, not '0'\n{f}:2:8: ports must hold at least one port"),
]


@pytest.mark.parametrize("text,message", BROKEN)
def test_check_names_file_line_column_and_what_is_wrong(tmp_path, text, message):
    f = write(tmp_path / "ferry.yaml", text)
    res = check(f)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == message.format(f=f) + "\n"


def test_check_json_reports_errors(tmp_path):
    f = write(tmp_path / "ferry.yaml", "ports:\n  - {name: a, type: bridge}\n")
    res = check("--json", f)
    assert (res.returncode, res.stderr) == (1, "")
    assert json.loads(res.stdout) == {"ok": False, "file": f, "errors": [{
        "line": 2, "column": 21, "message": "port 'a': unknown port type 'bridge' (vhost, tap, packet, xdp, gen, sink, vxlan, virtio-user)",
        "text": f"{f}:2:21: port 'a': unknown port type 'bridge' (vhost, tap, packet, xdp, gen, sink, vxlan, virtio-user)"}]}


def test_check_of_a_missing_file(tmp_path):
    res = check(str(tmp_path / "none.yaml"))
    assert res.returncode == 1
    assert res.stderr == f"{tmp_path / 'none.yaml'}: cannot read the file: No such file or directory\n"


def test_check_opens_nothing(tmp_path):
    sock = tmp_path / "vm.sock"
    control = tmp_path / "ctl.sock"
    f = write(tmp_path / "ferry.yaml", f"""\
        control: {{path: {control}}}
        ports:
          - {{name: vm, type: vhost, path: {sock}}}
          - {{name: t, type: tap, interface: ferrychk0}}
        """)
    res = check(f)
    assert (res.returncode, res.stdout) == (0, "ok: 2 ports (vm vhost, t tap)\n")
    assert not sock.exists() and not control.exists()
    assert not os.path.exists("/sys/class/net/ferrychk0")


# --------------------------------------------------------------------------- ferry run --config


BASE = f"""\
    switch:
      batch: 64
    ports:
      - name: g
        type: gen
        dst: "{GEN_DST}"
        count: {COUNT}
      - name: s
        type: sink
    """


def show_ports(ferry: h.Ferry) -> list[dict]:
    res = subprocess.run([ferry.binary, "ctl", "show", "ports", "--json", "--control", ferry.control],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["ports"]


def test_run_from_a_config_file_with_a_port_from_the_command_line(lab, tmp_path):
    f = write(tmp_path / "ferry.yaml", BASE)
    ferry = lab.ferry(["sink:name=cli"], extra_args=["--config", f])
    ports = show_ports(ferry)
    assert [(p["name"], p["kind"]) for p in ports] == [("g", "gen"), ("s", "sink"), ("cli", "sink")]
    assert ports[0]["spec"] == f"gen:dst={GEN_DST},count={COUNT},name=g"
    # The generator's frames flood to both sinks.
    h.wait_until(lambda: ferry.port("s")["tx_packets"] == COUNT and ferry.port("cli")["tx_packets"] == COUNT,
                 10, f"{COUNT} frames in each sink")


def test_a_command_line_port_may_not_reuse_a_config_name(tmp_path):
    f = write(tmp_path / "ferry.yaml", BASE)
    res = subprocess.run([h.ferry_binary(), "run", "--config", f, "--port", "sink:name=s",
                          "--control", str(tmp_path / "ctl.sock")], capture_output=True, text=True, timeout=10)
    # The validator `ferry check` runs refuses it: status 1, no usage text.
    assert res.returncode == 1
    assert res.stderr == f"{f}: two ports are named 's'\n"


def run_briefly(binary: str, *args: str) -> subprocess.CompletedProcess:
    """`ferry run ARGS` expected to stop by itself (refused or failed)."""
    return subprocess.run([binary, "run", *args], capture_output=True, text=True, timeout=20)


def test_check_and_run_refuse_the_same_metrics_address(ferry_binary, tmp_path):
    f = write(tmp_path / "ferry.yaml", 'metrics: {listen: "localhost:9469"}\nports: [{name: s, type: sink}]\n')
    checked = check(f)
    ran = run_briefly(ferry_binary, "--config", f, "--control", str(tmp_path / "ctl.sock"))
    assert (checked.returncode, ran.returncode) == (1, 1)
    assert "metrics: 'localhost:9469' is not IPV4:PORT or [IPV6]:PORT" in checked.stderr
    assert ran.stderr == checked.stderr
    # The same text on the command line is a bad option value: the usage error.
    option = run_briefly(ferry_binary, "--metrics", "localhost:9469", "--port", "sink")
    assert option.returncode == 64
    assert "metrics: 'localhost:9469' is not IPV4:PORT" in option.stderr and "Usage:" in option.stderr


def test_check_and_run_accept_metrics_port_zero(lab, tmp_path):
    f = write(tmp_path / "ferry.yaml", BASE + 'metrics: {listen: "127.0.0.1:0"}\n')
    assert check(f).returncode == 0
    ferry = lab.ferry([], extra_args=["--config", f])
    assert re.search(r"metrics: http://127\.0\.0\.1:0/metrics \(port [1-9][0-9]*\)", ferry.log_text()), \
        ferry.log_text()


def test_a_runtime_failure_has_its_own_status_and_no_usage(ferry_binary, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = run_briefly(ferry_binary, "--port", "sink", "--control", str(tmp_path / "ctl.sock"), "--metrics", f"127.0.0.1:{port}")
    assert res.returncode == 69, res.stderr
    assert "Usage" not in res.stderr
    assert f"metrics 127.0.0.1:{port}: " in res.stderr and "critical" in res.stderr
    # A socket directory that cannot be made: 73.
    blocker = write(tmp_path / "file", "")
    res = run_briefly(ferry_binary, "--port", "sink", "--control", f"{blocker}/sub/ctl.sock")
    assert res.returncode == 73, res.stderr
    assert "Usage" not in res.stderr


def test_sighup_with_a_broken_file_changes_nothing(lab, tmp_path):
    f = write(tmp_path / "ferry.yaml", BASE)
    ferry = lab.ferry([], extra_args=["--config", f])
    write(f, "ports:\n  - {name: g, type: gen, size: 10}\n")
    ferry._signal_group(signal.SIGHUP)
    h.wait_until(lambda: "has errors: nothing applied" in ferry.log_text(), 10, "the reload's verdict in the log")
    assert f"{f}:2:32: port 'g': size must be 60...9000" in ferry.log_text()
    assert [p["name"] for p in show_ports(ferry)] == ["g", "s"]


def test_sighup_applies_what_changed(lab, tmp_path):
    f = write(tmp_path / "ferry.yaml", BASE)
    ferry = lab.ferry(["sink:name=cli"], extra_args=["--config", f])
    # s goes, t comes, g changes (a VLAN), the batch size cannot change live.
    edited = (BASE.replace("batch: 64", "batch: 128").replace("name: s", "name: t")
              .replace(f"count: {COUNT}", f"count: {COUNT}\n        vlan: 7"))
    write(f, edited)
    ferry._signal_group(signal.SIGHUP)
    h.wait_until(lambda: "applied;" in ferry.log_text(), 10, "the reload applied")
    log = ferry.log_text()
    assert f"{f}: changes to switch.batch take effect only when Ferry restarts" in log
    assert f"{f}: port s is gone" in log
    assert f"{f}: port g changed; it is removed and added again" in log
    assert f"{f}: port t is new: sink:name=t" in log
    ports = {p["name"]: p for p in show_ports(ferry)}
    assert sorted(ports) == ["cli", "g", "t"]
    assert ports["g"]["vlan"] == "access 7"
    assert ferry.proc.poll() is None

    # The same file again: nothing to do but name the setting that still waits for a restart.
    ferry._signal_group(signal.SIGHUP)
    h.wait_until(lambda: ferry.log_text().count("take effect only when Ferry restarts") == 2, 10, "a second reload")
    assert sorted(p["name"] for p in show_ports(ferry)) == ["cli", "g", "t"]


def test_sighup_brings_back_a_file_port_removed_with_ctl(lab, tmp_path):
    f = write(tmp_path / "ferry.yaml", BASE)
    ferry = lab.ferry([], extra_args=["--config", f])
    for args in (["port", "del", "s"], ["port", "add", "sink:name=extra"]):
        res = subprocess.run([ferry.binary, "ctl", *args, "--control", ferry.control],
                             capture_output=True, text=True, timeout=10)
        assert res.returncode == 0, res.stderr
    ferry._signal_group(signal.SIGHUP)
    h.wait_until(lambda: "applied;" in ferry.log_text(), 10, "the reload applied")
    # s is the file's and comes back; extra was never the file's and stays.
    assert sorted(p["name"] for p in show_ports(ferry)) == ["extra", "g", "s"]


# --------------------------------------------------------------------------- static entries (fdb:)


def show_fdb(ferry: h.Ferry) -> set[tuple]:
    res = subprocess.run([ferry.binary, "ctl", "show", "fdb", "--json", "--control", ferry.control],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    return {(e["mac"], e["vlan"], e["port"]) for e in json.loads(res.stdout)["fdb"] if e["static"]}


STATIC = """\
    ports:
      - {name: s, type: sink, vlan: 10}
      - {name: t, type: sink, trunk: [10, 20]}
    fdb:
      - {mac: "52:54:00:18:00:01", port: s}
      - {mac: "52:54:00:18:00:02", port: t, vlan: 20}
      - {mac: "52:54:00:18:00:03", port: t, vlan: 10}
    """


def test_check_refuses_static_entries_run_could_not_install(tmp_path):
    f = write(tmp_path / "ferry.yaml", STATIC.rstrip(" ") + """\
      - {mac: "52:54:00:18:00:04", port: nope}
      - {mac: "52:54:00:18:00:05", port: s, vlan: 20}
      - {mac: "52:54:00:18:00:06", port: t}
    """)
    res = check(f)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.splitlines() == [
        f"{f}:8:5: fdb: 52:54:00:18:00:04: no port is named 'nope'",
        f"{f}:9:5: fdb: 52:54:00:18:00:05: port 's' does not carry VLAN 20 (access 10)",
        f"{f}:10:5: fdb: 52:54:00:18:00:06: port 't' is a trunk (trunk 10,20) with no native VLAN: give a vlan",
    ]
    assert check(write(tmp_path / "good.yaml", STATIC)).stdout == "ok: 2 ports (s sink, t sink), 3 static addresses\n"


def test_static_entries_are_installed_and_follow_sighup(lab, tmp_path):
    f = write(tmp_path / "ferry.yaml", STATIC)
    ferry = lab.ferry([], extra_args=["--config", f])
    assert show_fdb(ferry) == {("52:54:00:18:00:01", 10, "s"), ("52:54:00:18:00:02", 20, "t"),
                               ("52:54:00:18:00:03", 10, "t")}
    # 01 goes, 03 moves to s, 04 is new; t changes (a VLAN), so its entry 02 comes back with it.
    write(f, STATIC.replace("trunk: [10, 20]}", "trunk: [10, 20, 30]}")
          .replace('      - {mac: "52:54:00:18:00:01", port: s}\n', "")
          .replace('"52:54:00:18:00:03", port: t, vlan: 10}', '"52:54:00:18:00:03", port: s}\n'
                   '      - {mac: "52:54:00:18:00:04", port: t, vlan: 30}'))
    ferry._signal_group(signal.SIGHUP)
    h.wait_until(lambda: "fdb: static 52:54:00:18:00:04" in ferry.log_text(), 10, "the reload's new entry")
    assert show_fdb(ferry) == {("52:54:00:18:00:02", 20, "t"), ("52:54:00:18:00:03", 10, "s"),
                               ("52:54:00:18:00:04", 30, "t")}, ferry.log_tail()


def test_static_entries_from_the_command_line(lab, tmp_path, ferry_binary):
    f = write(tmp_path / "ferry.yaml", STATIC)
    ferry = lab.ferry(["sink:name=u,vlan=30"], extra_args=[
        "--config", f, "--fdb", "52:54:00:18:00:07,port=u", "--fdb", "52:54:00:18:00:08,port=t,vlan=20"])
    everything = {("52:54:00:18:00:01", 10, "s"), ("52:54:00:18:00:02", 20, "t"), ("52:54:00:18:00:03", 10, "t"),
                  ("52:54:00:18:00:07", 30, "u"), ("52:54:00:18:00:08", 20, "t")}
    assert show_fdb(ferry) == everything
    # A reload leaves them: they are the command line's, not the file's.
    ferry._signal_group(signal.SIGHUP)
    h.wait_until(lambda: f"{f}: nothing changed" in ferry.log_text(), 10, "the reload")
    assert show_fdb(ferry) == everything, ferry.log_tail()
    ferry.stop()

    control = str(tmp_path / "refused.sock")
    syntax = run_briefly(ferry_binary, "--port", "sink:name=s", "--fdb", "52:54:00:18:00:09", "--control", control)
    assert syntax.returncode == 64 and "--fdb 52:54:00:18:00:09: needs port=NAME" in syntax.stderr, syntax.stderr
    group = run_briefly(ferry_binary, "--port", "sink:name=s", "--fdb", "01:00:5e:00:00:01,port=s", "--control", control)
    assert group.returncode == 64 and "is a group address" in group.stderr, group.stderr
    unknown = run_briefly(ferry_binary, "--port", "sink:name=s", "--fdb", "52:54:00:18:00:09,port=x", "--control", control)
    assert unknown.returncode == 1 and "fdb: 52:54:00:18:00:09: no port is named 'x'" in unknown.stderr, unknown.stderr
