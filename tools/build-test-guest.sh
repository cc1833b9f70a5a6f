#!/usr/bin/env bash
# Builds the small Linux guest that Ferry's integration tests boot under QEMU:
# Debian's cloud kernel plus a busybox initramfs whose /init configures eth0
# (virtio-net) from the kernel command line, optionally pings a peer, prints
# machine-readable result lines on the serial console and powers off. Its TCP
# tools: busybox nc and sha256sum (byte-exact transfers) and Debian's iperf3
# with the libraries it links (throughput).
#
#   tools/build-test-guest.sh [--force]
#
# Output: ${FERRY_GUEST_DIR:-/var/tmp/ferry-guest}/{vmlinuz,initrd.gz}
# Rebuilds only when an output is missing, when this script differs from the
# one that built the output (the /init lives in here), when the newest
# installed cloud kernel is not the one the initramfs modules were taken from,
# or when iperf3 or a library it links changed on the host.
# --force always rebuilds.
#
# Needs (tools/install-deps.sh installs them): linux-image-cloud-amd64,
# busybox-static, cpio, kmod, gzip, iperf3. Run as root (the kernel image in /boot is
# readable by root only, and /dev/console is a device node).
#
# Kernel command line understood by the guest's /init:
#   ferry.ip=ADDR/LEN    address for eth0 (none if absent)
#   ferry.mtu=N          MTU of eth0 (default 1500)
#   ferry.ping=ADDR[+ADDR...]  ping each ADDR in turn, retrying each up to
#                        ~60 s of uptime until replies come
#   ferry.count=N        pings per attempt (default 5)
#   ferry.size=N         ping payload size, ping -s (default 56)
#   ferry.commands=ttyS1 after the pings, read commands from /dev/ttyS1 (a
#                        test drives the guest: run-test-guest.sh --command-socket)
#   ferry.done=poweroff  power off at the end; otherwise stay up (ping target)
# Commands on the command tty, one per line; ID is the caller's tag, echoed in
# the result so a test can wait for the answer to one command:
#   ping ID ADDR COUNT SIZE WAIT   one ping run: ping -c COUNT -s SIZE -i 0.2
#                                  -W WAIT ADDR (no retries)
#   flush ID                       forget the neighbour (ARP) table of eth0
#   counters ID                    print eth0's counters
#   tcprecv ID PORT                take one TCP connection on PORT, keep what
#                                  arrives until the peer closes in
#                                  /tmp/tcp-data (in the guest's RAM: --mem
#                                  must hold it), and hash it
#   tcpsend ID ADDR PORT           send what the last tcprecv kept to
#                                  ADDR:PORT over TCP, then close (busybox nc)
#   iperf3 ID PORT                 start an iperf3 server on PORT in the
#                                  background (it serves until power-off)
#   reload ID                      unload virtio_net and load it again (the
#                                  device is reset and set up anew), then
#                                  configure eth0 as at boot
#   reboot ID                      reboot at once (reboot -f: no DONE line;
#                                  the guest boots again with the same command
#                                  line, see run-test-guest.sh --allow-reboot)
#   memory ID                      print the RAM the kernel has and how many
#                                  memory blocks are online (hot-plug)
# Console lines for tests to match (strip CRs and ANSI escapes first):
#   FERRY-GUEST-READY ip=ADDR mtu=N
#   FERRY-PING-RESULT target=ADDR size=N transmitted=T received=R [id=ID]
#                        (one per ferry.ping target, in order; id= for commands)
#   eth0 counters: rx_packets=N ... tx_errors=N [id=ID]
#   FERRY-GUEST-COMMANDS tty=ttyS1     (reading commands from now on)
#   FERRY-TCP-LISTENING port=N id=ID              (tcprecv: connect now)
#   FERRY-TCP-RECEIVED bytes=N sha256=HEX id=ID   (tcprecv)
#   FERRY-TCP-SENT status=N id=ID                 (tcpsend; nc's exit status)
#   FERRY-IPERF3-LISTENING port=N id=ID           (iperf3)
#   FERRY-MEMORY total_kb=N online_blocks=N id=ID (memory)
#   FERRY-COMMAND-DONE id=ID status=N  (after every command, also unknown ones)
set -euo pipefail

say() { printf 'build-test-guest: %s\n' "$*" >&2; }
die() { printf 'build-test-guest: ERROR: %s\n' "$*" >&2; exit 1; }

force=0
case "${1:-}" in
    "") ;;
    --force) force=1 ;;
    -h|--help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0 ;;
    *) die "unknown option: $1 (usage: $0 [--force])" ;;
esac

out_dir="${FERRY_GUEST_DIR:-/var/tmp/ferry-guest}"
self="$(readlink -f "${BASH_SOURCE[0]}")"

# Load order matters: insmod (unlike modprobe) does not resolve dependencies,
# so each module comes after the ones whose symbols it uses.
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
         failover net_failover virtio_net)

# Newest cloud kernel by version order (not mtime: a reinstall of an older one
# would otherwise win).
kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' -printf '%f\n' | sort -V | tail -n 1)
[[ -n "$kernel" ]] || die "no /boot/vmlinuz-*-cloud-amd64: install linux-image-cloud-amd64 (tools/install-deps.sh)"
kver="${kernel#vmlinuz-}"

busybox=/bin/busybox
[[ -x "$busybox" ]] || die "$busybox missing: install busybox-static"
# The initramfs has no libc: a dynamically linked busybox (package `busybox`)
# would make the kernel panic with "No working init found".
if command -v file >/dev/null 2>&1 && ! file -L "$busybox" | grep -q 'statically linked'; then
    die "$busybox is not statically linked: install busybox-static"
fi

# iperf3 is linked dynamically: it goes in with every library ldd resolves for
# it, each at its own path, so the dynamic loader finds them without a cache.
iperf3=$(command -v iperf3 || true)
[[ -n "$iperf3" ]] || die "iperf3 missing: install iperf3 (tools/install-deps.sh test)"
iperf3_libs=$(ldd "$iperf3") || die "ldd $iperf3 failed"
! grep -q 'not found' <<< "$iperf3_libs" || die "a library of $iperf3 is missing: $iperf3_libs"
mapfile -t host_files < <(printf '%s\n' "$iperf3"
                          awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<< "$iperf3_libs")
[[ ${#host_files[@]} -ge 2 ]] || die "ldd named no libraries for $iperf3: $iperf3_libs"

mkdir -p "$out_dir"
# Two tests may boot guests at the same moment and both call this script:
# serialise them so neither sees a half-written initrd.
exec 9>"$out_dir/.lock"
flock 9

script_sha=$(sha256sum "$self" | cut -d' ' -f1)
host_files_sha=$(sha256sum "${host_files[@]}" | sha256sum | cut -d' ' -f1)
up_to_date() {
    [[ -s "$out_dir/vmlinuz" && -s "$out_dir/initrd.gz" && -f "$out_dir/kernel-version" ]] || return 1
    # The script's hash, not its mtime: worktrees with different versions of
    # this script share the output directory, and an older script must not
    # keep the /init of a newer one (nor the other way round).
    [[ "$(cat "$out_dir/script-sha256" 2>/dev/null)" == "$script_sha" ]] || return 1
    [[ "$(cat "$out_dir/kernel-version")" == "$kver" ]] || return 1
    [[ "$(cat "$out_dir/host-files-sha256" 2>/dev/null)" == "$host_files_sha" ]] || return 1
    return 0
}
if [[ $force -eq 0 ]] && up_to_date; then
    say "up to date: $out_dir (kernel $kver)"
    exit 0
fi

say "building guest in $out_dir (kernel $kver)"
work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,etc,lib/modules}

# --- busybox and its applet links ---------------------------------------------
cp "$busybox" "$root/bin/busybox"
# --list-full names bin/busybox itself: linking that entry would replace the
# binary with a symlink to itself.
"$busybox" --list-full | while read -r applet; do
    [[ "$applet" == bin/busybox ]] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
done
[[ -f "$root/bin/busybox" && ! -L "$root/bin/busybox" ]] || die "bin/busybox got overwritten"

for f in "${host_files[@]}"; do
    mkdir -p "$root$(dirname "$f")"
    # -L: the loader and libraries are often symlinks; the guest needs the files.
    cp -L "$f" "$root$f"
done

# The kernel opens /dev/console for init's stdin/out/err before /init can
# mount devtmpfs; without the node init starts with no output at all.
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3

# --- virtio modules ------------------------------------------------------------
: > "$root/etc/ferry-modules"
for m in "${modules[@]}"; do
    f=$(modinfo -k "$kver" -F filename "$m" 2>/dev/null) || die "modinfo cannot find module $m for $kver (is linux-image-$kver complete? try depmod $kver)"
    case "$f" in
        "(builtin)")
            say "module $m is built into $kver: nothing to load"
            continue ;;
        # busybox insmod may not understand compressed modules: unpack here.
        *.ko)     cp "$f" "$root/lib/modules/$m.ko" ;;
        *.ko.xz)  command -v xz   >/dev/null || die "$f is xz-compressed: install xz-utils"
                  xz -dc "$f"   > "$root/lib/modules/$m.ko" ;;
        *.ko.zst) command -v zstd >/dev/null || die "$f is zstd-compressed: install zstd"
                  zstd -qdc "$f" > "$root/lib/modules/$m.ko" ;;
        *.ko.gz)  gzip -dc "$f" > "$root/lib/modules/$m.ko" ;;
        *)        die "unexpected module file for $m: $f" ;;
    esac
    echo "$m" >> "$root/etc/ferry-modules"
done

# --- /init ---------------------------------------------------------------------
cat > "$root/init" <<'INIT'
#!/bin/sh
# PID 1 of the Ferry test guest. Generated by tools/build-test-guest.sh: edit
# it there. Reads ferry.* parameters from /proc/cmdline (see that script).
# PID 1 must never exit (the kernel would panic), so every path ends in
# finish(): power off or sleep forever.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp

log() { echo "ferry-guest: $*"; }

finish() {
    if [ "$DONE" = poweroff ]; then
        log "powering off"
        # -f: no init to ask, go straight to the reboot syscall.
        poweroff -f
    fi
    while :; do sleep 3600; done
}

is_number() { case "$1" in ''|*[!0-9]*) return 1 ;; *) return 0 ;; esac; }

IP=
MTU=1500
PING=
COUNT=5
SIZE=56
DONE=
COMMANDS=
# The kernel keeps dotted parameters in /proc/cmdline (it does not hand them to
# init as arguments or environment). set -f: no globbing of the words.
set -f
# shellcheck disable=SC2013 # words, not lines, are wanted here
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        ferry.ip=*)    IP=${arg#*=} ;;
        ferry.mtu=*)   MTU=${arg#*=} ;;
        ferry.ping=*)  PING=${arg#*=} ;;
        ferry.count=*) COUNT=${arg#*=} ;;
        ferry.size=*)  SIZE=${arg#*=} ;;
        ferry.done=*)  DONE=${arg#*=} ;;
        ferry.commands=*) COMMANDS=${arg#*=} ;;
    esac
done
set +f
is_number "$MTU"   || { log "bad ferry.mtu=$MTU, using 1500"; MTU=1500; }
is_number "$COUNT" || { log "bad ferry.count=$COUNT, using 5"; COUNT=5; }
is_number "$SIZE"  || { log "bad ferry.size=$SIZE, using 56"; SIZE=56; }

while read -r m; do
    insmod "/lib/modules/$m.ko" || log "insmod $m failed"
done < /etc/ferry-modules

# eth0 once the driver has probed the device: MTU, address, up. At boot and
# after each reload of virtio_net (which creates eth0 anew).
configure_eth0() {
    # The PCI probe may finish after insmod returns: give eth0 up to 10 s.
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do
        usleep 100000
        i=$((i + 1))
    done
    if [ ! -e /sys/class/net/eth0 ]; then
        echo "FERRY-GUEST-ERROR no eth0 (virtio-net device missing or driver failed)"
        return 1
    fi
    ip link set eth0 mtu "$MTU" || log "cannot set MTU $MTU on eth0 (device max_mtu too small? host_mtu?)"
    if [ -n "$IP" ]; then
        ip addr add "$IP" dev eth0 || log "cannot add address $IP"
    fi
    ip link set eth0 up
    # Report the MTU the device really has, not the one that was asked for. The
    # leading newline: firmware/boot output may leave the console mid-line.
    echo
    echo "FERRY-GUEST-READY ip=${IP:-none} mtu=$(cat /sys/class/net/eth0/mtu)"
}

ip link set lo up
configure_eth0 || finish

# One ping run of COUNT pings at TARGET; sets tx and rx (0/0 when ping printed
# no summary, e.g. it died on "sendto: Host is unreachable").
ping_once() {
    # -W: after the last request wait that long (not 10 s) for stragglers.
    ping -c "$2" -s "$3" -W "$4" $5 "$1" > /tmp/ping.out 2>&1
    cat /tmp/ping.out
    # busybox: "5 packets transmitted, 5 packets received, 0% packet loss".
    tx=$(sed -n 's/^\([0-9][0-9]*\) packets transmitted.*/\1/p' /tmp/ping.out)
    rx=$(sed -n 's/.* \([0-9][0-9]*\) packets received.*/\1/p' /tmp/ping.out)
    tx=${tx:-0}
    rx=${rx:-0}
}

# busybox ip has no -s: the counters come from sysfs (drops and errors tell a
# lossy switch from a missing peer). $1: suffix for the line (" id=ID").
print_counters() {
    stats=
    for c in rx_packets rx_bytes rx_dropped rx_errors tx_packets tx_bytes tx_dropped tx_errors; do
        stats="$stats $c=$(cat /sys/class/net/eth0/statistics/$c)"
    done
    echo "eth0 counters:$stats$1"
}

if [ -n "$PING" ]; then
    # The peer may still be booting (or the switch not yet forwarding): retry
    # each target's ping until one attempt gets replies, for ~60 s of uptime.
    deadline=$(( $(cut -d. -f1 /proc/uptime) + 60 ))
    results=
    for target in $(echo "$PING" | tr '+' ' '); do
        attempt=0
        while :; do
            attempt=$((attempt + 1))
            log "ping attempt $attempt: $target count=$COUNT size=$SIZE"
            ping_once "$target" "$COUNT" "$SIZE" 2
            [ "$rx" -gt 0 ] && break
            [ "$(cut -d. -f1 /proc/uptime)" -ge "$deadline" ] && break
            sleep 1
        done
        results="$results
FERRY-PING-RESULT target=$target size=$SIZE transmitted=$tx received=$rx"
    done
    ip link show eth0
    print_counters ""
    echo "$results" | sed '/^$/d'
fi

is_address() { case "$1" in ''|*[!0-9.]*) return 1 ;; *) return 0 ;; esac; }

# Until something listens on TCP port $1 (up to 10 s).
wait_listening() {
    i=0
    # 2>/dev/null: with ipv6.disable=1 netstat complains about tcp6.
    while ! netstat -ltn 2>/dev/null | grep -q ":$1 "; do
        [ $i -ge 200 ] && return 1
        usleep 50000
        i=$((i + 1))
    done
}

# One TCP connection on port $1 into /tmp/tcp-data, then its size and hash;
# $2: the command's id. A file rather than a pipe into sha256sum: the
# transfer is not slowed by hashing on the guest's one (emulated) CPU.
tcp_receive() {
    rm -f /tmp/tcp-data /tmp/tcp-hold
    mkfifo /tmp/tcp-hold
    # nc closes the connection once its stdin ends: a FIFO open for reading
    # and writing never ends, so nc reads the socket until the peer closes.
    nc -l -p "$1" <> /tmp/tcp-hold > /tmp/tcp-data &
    nc_pid=$!
    if ! wait_listening "$1"; then
        log "nothing listens on TCP port $1"
        kill $nc_pid
        return 1
    fi
    echo "FERRY-TCP-LISTENING port=$1 id=$2"
    wait $nc_pid
    nc_status=$?
    echo "FERRY-TCP-RECEIVED bytes=$(stat -c %s /tmp/tcp-data) sha256=$(sha256sum < /tmp/tcp-data | cut -d' ' -f1) id=$2"
    rm -f /tmp/tcp-hold
    return $nc_status
}

# A test drives the guest from here on: each line one command (see the top of
# build-test-guest.sh). Only these commands run; nothing from the line is
# evaluated by the shell.
if [ -n "$COMMANDS" ]; then
    case "$COMMANDS" in
        ttyS[0-9]|hvc[0-9]) ;;
        *) log "bad ferry.commands=$COMMANDS"; finish ;;
    esac
    tty=/dev/$COMMANDS
    if [ ! -c "$tty" ]; then
        echo "FERRY-GUEST-ERROR no $tty for commands"
        finish
    fi
    # raw: bytes as sent, no echo back to the test, no CR/LF translation.
    stty -F "$tty" raw -echo || log "stty on $tty failed"
    exec 3< "$tty"
    echo "FERRY-GUEST-COMMANDS tty=$COMMANDS"
    while read -r cmd id a1 a2 a3 a4 rest <&3; do
        status=0
        case "$cmd" in
            ping)
                case "$a1" in ''|*[!0-9.]*) a1= ;; esac
                if [ -n "$a1" ] && is_number "$a2" && is_number "$a3" && is_number "$a4"; then
                    ping_once "$a1" "$a2" "$a3" "$a4" "-i 0.2"
                    echo "FERRY-PING-RESULT target=$a1 size=$a3 transmitted=$tx received=$rx id=$id"
                else
                    log "bad ping command: $a1 $a2 $a3 $a4"
                    status=2
                fi ;;
            flush)    ip neigh flush dev eth0; status=$? ;;
            counters) print_counters " id=$id" ;;
            tcpsend)
                if is_address "$a1" && is_number "$a2" && [ -f /tmp/tcp-data ]; then
                    nc "$a1" "$a2" < /tmp/tcp-data
                    status=$?
                    echo "FERRY-TCP-SENT status=$status id=$id"
                else
                    log "bad tcpsend command (or no tcprecv before it): $a1 $a2"
                    status=2
                fi ;;
            tcprecv)
                if is_number "$a1"; then
                    tcp_receive "$a1" "$id"
                    status=$?
                else
                    log "bad tcprecv command: $a1"
                    status=2
                fi ;;
            iperf3)
                if is_number "$a1"; then
                    iperf3 -s -D -p "$a1" && wait_listening "$a1"
                    status=$?
                    [ $status -eq 0 ] && echo "FERRY-IPERF3-LISTENING port=$a1 id=$id"
                else
                    log "bad iperf3 command: $a1"
                    status=2
                fi ;;
            reload)
                ip link set eth0 down
                rmmod virtio_net && insmod /lib/modules/virtio_net.ko && configure_eth0
                status=$? ;;
            reboot)   reboot -f; status=$? ;;
            memory)
                total=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)
                online=$(cat /sys/devices/system/memory/memory*/online | grep -c 1)
                echo "FERRY-MEMORY total_kb=$total online_blocks=$online id=$id" ;;
            "")       continue ;;
            *)        log "unknown command: $cmd"; status=2 ;;
        esac
        echo "FERRY-COMMAND-DONE id=$id status=$status"
    done
    log "command tty $tty closed"
fi

finish
INIT
chmod 755 "$root/init"

# --- pack ------------------------------------------------------------------------
# newc is the only cpio format the kernel unpacks; owner 0:0 so files in the
# guest belong to root whoever built them. Write to temporary names and rename,
# so an interrupted build never leaves a truncated initrd behind.
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner 0:0 --quiet) \
    | gzip -9 > "$out_dir/initrd.gz.tmp"
cp "/boot/$kernel" "$out_dir/vmlinuz.tmp"
chmod 644 "$out_dir/initrd.gz.tmp" "$out_dir/vmlinuz.tmp"
mv -f "$out_dir/vmlinuz.tmp" "$out_dir/vmlinuz"
mv -f "$out_dir/initrd.gz.tmp" "$out_dir/initrd.gz"
echo "$kver" > "$out_dir/kernel-version"
echo "$script_sha" > "$out_dir/script-sha256"
echo "$host_files_sha" > "$out_dir/host-files-sha256"

say "built $out_dir/vmlinuz ($kver) and $out_dir/initrd.gz ($(du -k "$out_dir/initrd.gz" | cut -f1) KiB, modules: $(tr '\n' ' ' < "$root/etc/ferry-modules"))"
