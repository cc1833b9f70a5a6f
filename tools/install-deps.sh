#!/usr/bin/env bash
# Installs what Ferry needs on a fresh Debian 12 machine (run as root), for one
# of two purposes:
#
#   tools/install-deps.sh run  [--hugepages N]   build and run the switch (tools/run.sh)
#   tools/install-deps.sh test [--hugepages N]   that, plus the test stack (tools/test.sh)
#
# Before installing, it says which packages it is about to install and why;
# apt's own output goes to /tmp/ferry-install-deps.log.
# Idempotent and quick when everything is there: it asks dpkg what is already
# installed and only runs apt-get (and its slow `update`) when something is
# missing. A machine handed to a new session may lack anything that was
# installed by hand before, so CI and every session should call this first.
#
# The Swift toolchain (>= 6.1) is not a Debian package: it is checked, not
# installed (where it is looked for: tools/lib/swift-toolchain.sh). When it is
# found off PATH, /etc/profile.d/swift-toolchain.sh puts it on PATH for new
# login shells.
#
# --hugepages N  reserve at least N 2 MiB hugepages and mount hugetlbfs on
#                /dev/hugepages (DPDK and hugepage-backed guests need both;
#                neither is set up by default on this machine).
set -euo pipefail

source "$(dirname "$0")/lib/swift-toolchain.sh"

say() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: ERROR: %s\n' "$*" >&2; exit 1; }

purpose=""
hugepages=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        run|test)
            purpose="$1"; shift ;;
        --hugepages)
            [[ $# -ge 2 ]] || die "--hugepages needs a number"
            hugepages="$2"; shift 2 ;;
        --hugepages=*)
            hugepages="${1#*=}"; shift ;;
        -h|--help)
            # The header comment above is the help text.
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0 ;;
        *)
            die "unknown option: $1 (usage: $0 run|test [--hugepages N])" ;;
    esac
done
[[ -n "$purpose" ]] || die "say what for: $0 run (build and run Ferry) or $0 test (also the test stack)"
if [[ -n "$hugepages" && ! "$hugepages" =~ ^[0-9]+$ ]]; then
    die "--hugepages wants a non-negative integer, got '$hugepages'"
fi
[[ $(id -u) -eq 0 ]] || die "run as root (apt-get, sysctl and mount need it)"

# Every package with the reason it is installed, "name|why". Running needs
# only the first list; the tests add the second.
run_packages=(
    "libbpf-dev|the XDP target links libbpf (found through pkg-config) and the BPF program includes <bpf/bpf_helpers.h>"
    "libelf-dev|libbpf parses the embedded BPF object with libelf"
    "zlib1g-dev|libbpf's other link dependency"
    "pkg-config|how the build finds libbpf"
    "git|SwiftPM fetches Ferry's Swift dependencies with git"
    "iproute2|ip(8): give the TAP ferry0 an address, look at interfaces"
)
test_packages=(
    "dpdk-dev|dpdk-testpmd (virtio-user, net_vhost): the vhost-user test peer and benchmark reference"
    "qemu-system-x86|QEMU: the real vhost-user front-end for guest tests"
    "linux-image-cloud-amd64|the test guest's kernel"
    "busybox-static|the test guest's userland"
    "cpio|packs the test guest's initramfs"
    "kmod|modinfo finds the test guest's virtio modules"
    "tcpdump|packet capture checks in integration tests"
    "procps|pgrep/ps in integration tests"
    "python3|runs the integration tests (pytest is handled below)"
    "iperf3|the TCP load of tools/bench-tcp.py; copied into the test guest with its libraries"
    "ethtool|turns a TAP's or veth's offloads on and off (test_tcp_offload.py, tools/bench-tcp.py)"
    "binutils|readelf and strip: tools/package.sh checks the binary needs no Swift library and strips it"
    "systemd|systemd-analyze verify checks the packaged unit (test_package.py)"
    "man-db|man -l renders the packaged man page (test_package.py)"
    "frr|zebra and bgpd as Debian ships them: the BGP EVPN control plane of test_evpn.py"
)
packages=("${run_packages[@]}")
[[ "$purpose" == test ]] && packages+=("${test_packages[@]}")

apt_updated=0
apt_install() {
    # `apt-get update` is slow and needs the network: do it once, and only
    # when we really have something to install.
    if [[ $apt_updated -eq 0 ]]; then
        say "running apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>/tmp/ferry-install-deps.log 2>&1 \
        || die "apt-get install $* failed (see /tmp/ferry-install-deps.log)"
}

# One dpkg-query call for all packages (fast). A package counts as present only
# when its status is "install ok installed": a removed-but-configured package
# (status "deinstall ok config-files") still has a dpkg record.
is_installed() {
    dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'
}
missing=()
for entry in "${packages[@]}"; do
    p="${entry%%|*}"
    if is_installed "$p"; then
        say "present:   $p"
    else
        missing+=("$p")
        say "to install: $p (${entry#*|})"
    fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
    say "installing ${#missing[@]} package(s) with apt-get for '$purpose' (a minute or more); log: /tmp/ferry-install-deps.log"
    apt_install "${missing[@]}"
    for p in "${missing[@]}"; do
        is_installed "$p" || die "apt-get did not install $p"
        say "installed: $p"
    done
fi

# pytest (tests only): whatever python3 is first on PATH must be able to import it, since
# that is the interpreter the tests run under. Debian's python3 gets Debian's
# package; a foreign python3 (pyenv, /usr/local) cannot see Debian's
# dist-packages, so it gets pytest from PyPI into its own site-packages.
if [[ "$purpose" == test ]]; then
    if pytest_ver=$(python3 -m pytest --version 2>&1); then
        say "present:   pytest (${pytest_ver%%$'\n'*})"
    else
        # A pyenv shim on PATH is a shell script, not the interpreter, so ask the
        # interpreter itself where it lives; dpkg knows the file only if it is
        # Debian's (/usr/bin/python3 -> python3.11, owned by python3.11-minimal).
        py_exe=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || command -v python3)
        if dpkg-query -S "$(readlink -f "$py_exe")" >/dev/null 2>&1; then
            say "to install: python3-pytest (the integration tests' runner, for $py_exe)"
            apt_install python3-pytest
            say "installed: python3-pytest (apt, for $py_exe)"
        else
            say "to install: pytest from PyPI (the integration tests' runner, for the non-Debian $py_exe)"
            python3 -m pip install --quiet pytest
            say "installed: pytest (pip, for non-Debian $py_exe)"
        fi
        python3 -m pytest --version >/dev/null 2>&1 || die "pytest still not importable by $py_exe"
    fi
fi

# Swift: checked, not installed (see the header). A toolchain found off PATH
# goes on PATH for every new login shell, so `swift build` and the README's
# commands work there too; this shell's PATH cannot be changed from a child.
ferry_use_swift install-deps || exit 1
say "present:   swift $(ferry_swift_version) in $(dirname "$(command -v swift)")"
if ! env -i HOME="${HOME:-/root}" bash -lc "command -v swift" >/dev/null 2>&1; then
    swift_dir=$(dirname "$(command -v swift)")
    printf '# Written by Ferry'"'"'s tools/install-deps.sh: the Swift toolchain is not a Debian package.\nexport PATH="$PATH:%s"\n' "$swift_dir" \
        > /etc/profile.d/swift-toolchain.sh
    say "added:     $swift_dir to PATH in /etc/profile.d/swift-toolchain.sh (new login shells); in this shell: export PATH=\"\$PATH:$swift_dir\""
fi

# Hugepages. Only ever raise the reservation: lowering it could pull pages from
# under a running DPDK process or guest.
if [[ -n "$hugepages" ]]; then
    have=$(cat /proc/sys/vm/nr_hugepages)
    if (( have >= hugepages )); then
        say "present:   $have hugepages reserved (wanted $hugepages)"
    else
        echo "$hugepages" > /proc/sys/vm/nr_hugepages
        got=$(cat /proc/sys/vm/nr_hugepages)
        # The kernel reserves what it can find contiguous memory for, silently.
        (( got >= hugepages )) || die "asked for $hugepages hugepages, kernel reserved only $got (memory fragmented?)"
        say "reserved:  $got hugepages of 2 MiB (was $have)"
    fi
    # Check /proc/mounts rather than `mountpoint` so we also know it is the
    # right filesystem type, not something else mounted there.
    if awk '$2 == "/dev/hugepages" && $3 == "hugetlbfs" {found=1} END {exit !found}' /proc/mounts; then
        say "present:   hugetlbfs on /dev/hugepages"
    else
        mkdir -p /dev/hugepages
        mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages
        say "mounted:   hugetlbfs on /dev/hugepages"
    fi
fi

say "done"
