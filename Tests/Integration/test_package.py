"""The Debian package (tools/package.sh), installed with dpkg into a root with no Swift toolchain.

Run as root from the repository root:

    FERRY_DEB=.build/ferry_0.1.0_amd64.deb python3 -m pytest -v Tests/Integration/test_package.py

Without FERRY_DEB the test builds the package first (tools/package.sh: a release build with
the Swift runtime linked statically, several minutes). The root (clean_root.py) is this
machine's userland under an overlay, every Swift toolchain directory covered, in a private
mount namespace: `dpkg -i` runs the package's maintainer scripts there, and nothing it does
reaches this machine. Checked:

* dpkg installs it (its Depends are met by Debian packages), the postinst makes the system
  user and group `ferry`; the files are where the unit and the docs say;
* with no toolchain to be found, `ferry version` and `ferry check /etc/ferry/ferry.yaml` run,
  and ldd shows that no Swift library is needed;
* `systemd-analyze verify` accepts the unit; its ExecStart= is the packaged binary and config;
* the man page renders with man(1) and covers every command; the completions load;
* the default config starts as the unit would start it (user ferry, group kvm, exactly the
  unit's capabilities, /run/ferry made for it; in its own network namespace so its TAP
  ferry0 is nobody else's): READY=1 to NOTIFY_SOCKET, its sockets made with the config's
  group and mode, `ferry ctl` answers, SIGTERM gives STOPPING=1 and exit status 0;
* `dpkg -r` keeps the conffile, `dpkg --purge` removes it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from clean_root import SHARE, CleanRoot

REPO = Path(__file__).resolve().parents[2]
SWIFT_LIBRARY = re.compile(r"lib(swift\w*|Foundation\w*|_Foundation\w*|dispatch|BlocksRuntime)\.so")


@pytest.fixture(scope="session")
def package(tmp_path_factory) -> Path:
    if os.geteuid() != 0:
        pytest.fail("installing the package into a clean root needs root (mount namespace, overlayfs, chroot)",
                    pytrace=False)
    given = os.environ.get("FERRY_DEB")
    if given:
        if not os.path.isfile(given):
            pytest.fail(f"FERRY_DEB={given}: no such file (tools/package.sh builds it)", pytrace=False)
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("deb")
    built = subprocess.run([str(REPO / "tools" / "package.sh"), "--output", str(out)], capture_output=True,
                           text=True, cwd=REPO)
    if built.returncode != 0:
        pytest.fail(f"tools/package.sh failed ({built.returncode}):\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}",
                    pytrace=False)
    return Path(built.stdout.strip().splitlines()[-1]).resolve()


def install(root: CleanRoot, deb: Path):
    (root.share / deb.name).write_bytes(deb.read_bytes())
    done = root.run("dpkg", "-i", f"{SHARE}/{deb.name}")
    assert done.returncode == 0, f"dpkg -i failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed(package, tmp_path_factory):
    root = CleanRoot(tmp_path_factory.mktemp("package-root"))
    try:
        install(root, package)
        yield root
    finally:
        root.close()


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(deb), field], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_dpkg_installs_it_with_its_user_and_files(installed, package):
    status = installed.run("dpkg-query", "--show", "--showformat=${Status} ${Version}\n${Conffiles}\n", "ferry")
    assert status.stdout.startswith(f"install ok installed {deb_field(package, 'Version')}\n"), status
    assert "/etc/ferry/ferry.yaml" in status.stdout, "the config is not a conffile"
    user = installed.run("getent", "passwd", "ferry").stdout.split(":")
    assert user[0] == "ferry" and int(user[2]) < 1000 and user[6].strip() == "/usr/sbin/nologin", user
    group = installed.run("id", "-gn", "ferry").stdout.strip()
    assert group == "ferry", group
    for path in ("/usr/bin/ferry", "/lib/systemd/system/ferry.service", "/etc/ferry/ferry.yaml",
                 "/usr/share/man/man1/ferry.1.gz", "/usr/share/bash-completion/completions/ferry",
                 "/usr/share/zsh/vendor-completions/_ferry", "/usr/share/doc/ferry/CONFIG.md"):
        assert installed.run("test", "-s", path).returncode == 0, f"{path} missing or empty"


def test_runs_without_a_swift_toolchain(installed, package):
    assert installed.hidden, "no Swift toolchain directory found to hide: is this the machine the package was built on?"
    assert installed.sh("command -v swift swiftc").stdout == "", "a swift is still on PATH in the root"
    for directory in installed.hidden:
        listing = installed.run("ls", "-A", directory)
        assert listing.returncode == 0 and listing.stdout == "", f"{directory} is visible in the root"

    version = installed.run("ferry", "version")
    assert version.returncode == 0, version.stderr
    lines = version.stdout.splitlines()
    assert lines[0] == f"ferry {deb_field(package, 'Version')}" and lines[1].startswith("kernel "), lines

    ldd = installed.run("ldd", "/usr/bin/ferry")
    assert ldd.returncode == 0, ldd.stderr
    print("\n$ ldd /usr/bin/ferry\n" + ldd.stdout)
    assert "not found" not in ldd.stdout, ldd.stdout
    assert not SWIFT_LIBRARY.search(ldd.stdout), f"a Swift library is still needed:\n{ldd.stdout}"


def test_the_default_config_passes_check(installed):
    check = installed.run("ferry", "check", "/etc/ferry/ferry.yaml")
    print(f"\n$ ferry check /etc/ferry/ferry.yaml\n{check.stdout}{check.stderr}")
    assert check.returncode == 0 and check.stdout == "ok: 2 ports (vm0 vhost, ferry0 tap)\n", check


def test_the_unit_verifies_and_runs_the_packaged_binary(installed):
    unit = installed.run("cat", "/lib/systemd/system/ferry.service").stdout
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert settings["ExecStart"] == "/usr/bin/ferry run --config /etc/ferry/ferry.yaml", settings
    assert (settings["Type"], settings["User"], settings["RuntimeDirectory"]) == ("notify", "ferry", "ferry"), settings
    verify = installed.run("systemd-analyze", "verify", "/lib/systemd/system/ferry.service")
    assert verify.returncode == 0 and verify.stderr.strip() == "", \
        f"systemd-analyze verify ({verify.returncode}):\n{verify.stdout}{verify.stderr}"


def command_paths(installed) -> list[str]:
    dump = json.loads(installed.run("ferry", "--experimental-dump-help").stdout)

    def walk(command, path):
        yield path
        for sub in command.get("subcommands", []):
            if sub.get("shouldDisplay", True) and sub["commandName"] != "help":
                yield from walk(sub, f"{path} {sub['commandName']}")
    return list(walk(dump["command"], "ferry"))


def test_the_man_page_renders_every_command(installed):
    page = installed.run("man", "-l", "/usr/share/man/man1/ferry.1.gz", env={"MANWIDTH": "100"})
    assert page.returncode == 0, page.stderr
    errors = [line for line in page.stderr.splitlines() if "can't break line" not in line]
    assert not errors, f"man -l: {errors}"
    assert page.stdout.startswith("FERRY(1)"), page.stdout[:200]
    missing = [path for path in command_paths(installed) if path not in page.stdout]
    assert not missing, f"the man page lacks {missing}"
    assert "--config <file>" in page.stdout and "/etc/ferry/ferry.yaml" in page.stdout


def test_the_completions_load(installed):
    bash = installed.run("bash", "-c", "source /usr/share/bash-completion/completions/ferry && complete -p ferry")
    assert bash.returncode == 0 and bash.stdout.startswith("complete "), bash
    zsh = installed.run("head", "-n1", "/usr/share/zsh/vendor-completions/_ferry").stdout
    assert zsh.startswith("#compdef ferry"), zsh


def unit_capabilities(installed) -> list[str]:
    unit = installed.run("cat", "/lib/systemd/system/ferry.service").stdout
    ambient = re.search(r"^AmbientCapabilities=(.*)$", unit, re.M).group(1).split()
    return sorted(c.removeprefix("CAP_").lower() for c in ambient)


def test_the_default_config_starts_as_the_unit_starts_it(installed, tmp_path):
    # What systemd does for the unit: RuntimeDirectory=ferry, then User=, Group=,
    # SupplementaryGroups=, the capability sets and NOTIFY_SOCKET/WATCHDOG_USEC.
    made = installed.run("install", "-d", "-o", "ferry", "-g", "ferry", "-m", "0755", "/run/ferry")
    assert made.returncode == 0, made.stderr
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(installed.share / "notify.sock"))
    os.chmod(installed.share / "notify.sock", 0o666)
    manager.settimeout(20)
    caps = ",".join(f"+{c}" for c in unit_capabilities(installed))
    sets = f"-all,{caps}"
    log = tmp_path / "ferry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            installed.command("unshare", "--net", "--", "setpriv", "--reuid=ferry", "--regid=ferry", "--groups=kvm",
                              f"--inh-caps={sets}", f"--ambient-caps={sets}", f"--bounding-set={sets}",
                              "/usr/bin/ferry", "run", "--config", "/etc/ferry/ferry.yaml"),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET": f"{SHARE}/notify.sock",
                 "WATCHDOG_USEC": "400000"})
    try:
        messages = []
        while not any(m.startswith("READY=1") for m in messages):
            try:
                messages.append(manager.recv(4096).decode())
            except socket.timeout:
                pytest.fail(f"no READY=1 in 20 s (got {messages}); exit {proc.poll()}; log:\n{log.read_text()}")
        print(f"\nsd_notify: {messages}\n{log.read_text()}")
        with open(f"/proc/{proc.pid}/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        ferry_uid = installed.run("id", "-u", "ferry").stdout.strip()
        assert status["Uid"].split()[0] == ferry_uid, f"ferry runs as uid {status['Uid']}, not ferry ({ferry_uid})"

        sockets = installed.run("stat", "-c", "%n %U %G %a", "/run/ferry/vm0.sock", "/run/ferry/ferry.sock")
        assert sockets.stdout.splitlines() == ["/run/ferry/vm0.sock ferry kvm 660",
                                               "/run/ferry/ferry.sock ferry ferry 755"], sockets
        ports = installed.run("ferry", "ctl", "show", "ports")
        print(f"$ ferry ctl show ports\n{ports.stdout}")
        assert ports.returncode == 0 and "vm0" in ports.stdout and "ferry0" in ports.stdout, ports

        while not any(m == "WATCHDOG=1" for m in messages):
            messages.append(manager.recv(4096).decode())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
        while not any(m.startswith("STOPPING=1") for m in messages):
            messages.append(manager.recv(4096).decode())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        manager.close()


def test_remove_keeps_the_config_and_purge_deletes_it(package, tmp_path):
    root = CleanRoot(tmp_path)
    try:
        install(root, package)
        removed = root.run("dpkg", "-r", "ferry")
        assert removed.returncode == 0, removed.stderr
        assert root.run("test", "-e", "/usr/bin/ferry").returncode == 1, "dpkg -r left /usr/bin/ferry"
        assert root.run("test", "-f", "/etc/ferry/ferry.yaml").returncode == 0, "dpkg -r removed the conffile"
        purged = root.run("dpkg", "--purge", "ferry")
        assert purged.returncode == 0, purged.stderr
        assert root.run("test", "-e", "/etc/ferry").returncode == 1, "dpkg --purge left /etc/ferry"
        assert root.run("dpkg-query", "--show", "ferry").returncode == 1, "dpkg still knows ferry"
    finally:
        root.close()
