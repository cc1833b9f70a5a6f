#!/usr/bin/env bash
# Installs what Ferry's tests need on a fresh Debian 12 machine (run as root).
#
#   tools/install-deps.sh [--hugepages N]
#
# Idempotent and quick when everything is there: it asks dpkg what is already
# installed and only runs apt-get (and its slow `update`) when something is
# missing. A machine handed to a new session may lack anything that was
# installed by hand before, so CI and every session should call this first.
#
# --hugepages N  reserve at least N 2 MiB hugepages and mount hugetlbfs on
#                /dev/hugepages (DPDK and hugepage-backed guests need both;
#                neither is set up by default on this machine).
set -euo pipefail

say() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: ERROR: %s\n' "$*" >&2; exit 1; }

hugepages=""
while [[ $# -gt 0 ]]; do
    case "$1" in
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
            die "unknown option: $1 (usage: $0 [--hugepages N])" ;;
    esac
done
if [[ -n "$hugepages" && ! "$hugepages" =~ ^[0-9]+$ ]]; then
    die "--hugepages wants a non-negative integer, got '$hugepages'"
fi
[[ $(id -u) -eq 0 ]] || die "run as root (apt-get, sysctl and mount need it)"

# Why each package:
#   dpdk-dev          dpdk-testpmd lives here (not in the `dpdk` package): our
#                     virtio-user / net_vhost / icmpecho test peer
#   qemu-system-x86   the real vhost-user front-end for guest tests
#   linux-image-cloud-amd64, busybox-static, cpio, kmod
#                     build the tiny test guest (kernel, userland, initramfs,
#                     modinfo to find the virtio modules)
#   iproute2, tcpdump, procps   namespaces/veths, packet capture, pgrep/ps
#   python3           runs the integration tests (pytest handled below)
#   iperf3, ethtool   TCP through Ferry (tools/bench-tcp.py, test_tcp_offload.py):
#                     the load, and a TAP's or veth's offloads turned on and off
#   libbpf-dev, libelf-dev, pkg-config
#                     the XDP target links libbpf (found through pkg-config;
#                     libelf is what libbpf parses the embedded object with), and
#                     the BPF program's build includes <bpf/bpf_helpers.h>
packages=(dpdk-dev qemu-system-x86 linux-image-cloud-amd64 busybox-static
          iproute2 cpio kmod tcpdump procps python3 libbpf-dev libelf-dev pkg-config iperf3 ethtool)

apt_updated=0
apt_install() {
    # `apt-get update` is slow and needs the network: do it once, and only
    # when we really have something to install.
    if [[ $apt_updated -eq 0 ]]; then
        say "running apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# One dpkg-query call for all packages (fast). A package counts as present only
# when its status is "install ok installed": a removed-but-configured package
# (status "deinstall ok config-files") still has a dpkg record.
is_installed() {
    dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'
}
missing=()
for p in "${packages[@]}"; do
    if is_installed "$p"; then
        say "present:   $p"
    else
        missing+=("$p")
    fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
    apt_install "${missing[@]}"
    for p in "${missing[@]}"; do
        is_installed "$p" || die "apt-get did not install $p"
        say "installed: $p"
    done
fi

# pytest: whatever python3 is first on PATH must be able to import it, since
# that is the interpreter the tests run under. Debian's python3 gets Debian's
# package; a foreign python3 (pyenv, /usr/local) cannot see Debian's
# dist-packages, so it gets pytest from PyPI into its own site-packages.
if pytest_ver=$(python3 -m pytest --version 2>&1); then
    say "present:   pytest (${pytest_ver%%$'\n'*})"
else
    # A pyenv shim on PATH is a shell script, not the interpreter, so ask the
    # interpreter itself where it lives; dpkg knows the file only if it is
    # Debian's (/usr/bin/python3 -> python3.11, owned by python3.11-minimal).
    py_exe=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || command -v python3)
    if dpkg-query -S "$(readlink -f "$py_exe")" >/dev/null 2>&1; then
        apt_install python3-pytest
        say "installed: python3-pytest (apt, for $py_exe)"
    else
        python3 -m pip install --quiet pytest
        say "installed: pytest (pip, for non-Debian $py_exe)"
    fi
    python3 -m pytest --version >/dev/null 2>&1 || die "pytest still not importable by $py_exe"
fi

# Swift is not a Debian package here: it comes with the machine in /opt/swift.
# We cannot fetch it (no network beyond apt/PyPI), so only check it.
if ! command -v swift >/dev/null 2>&1 && [[ -x /opt/swift/usr/bin/swift ]]; then
    export PATH="/opt/swift/usr/bin:$PATH"
    say "note: swift is not on PATH; add /opt/swift/usr/bin to PATH"
fi
if swift_ver=$(swift --version 2>&1) ; then
    say "present:   swift ($(printf '%s\n' "$swift_ver" | grep -m1 -o 'Swift version [^ ]*' || echo "${swift_ver%%$'\n'*}"))"
else
    die "the Swift toolchain does not work ('swift --version' failed). It is expected preinstalled at /opt/swift (PATH must include /opt/swift/usr/bin); it cannot be installed from apt."
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
