#!/usr/bin/env bash
# Boots one Ferry test guest (tools/build-test-guest.sh) under QEMU, with one
# virtio-net NIC attached to a vhost-user socket, or to a plain QEMU socket
# netdev (to test the guest image with no vhost-user back-end at all), or to
# a TAP of QEMU's own (what Ferry is measured against).
#
#   tools/run-test-guest.sh --name NAME --mac MAC
#       (--vhost-socket PATH [--vhost-server | --vhost-reconnect SECONDS]
#        | --netdev-socket-listen PORT | --netdev-socket-connect PORT
#        | --netdev-tap IFNAME)
#       [--append "ferry.ip=198.18.0.1/24 ferry.ping=198.18.0.2 ..."]
#       [--mtu N] [--mem MIB] [--unshared-memory] [--log FILE] [--timeout SECONDS]
#       [--command-socket PATH] [--device-options KEY=VALUE,...]
#       [--qmp-socket PATH] [--memory-slots N --max-mem MIB] [--allow-reboot] [--qboot]
#
#   --vhost-socket PATH   vhost-user unix socket; QEMU connects to it (the
#                         back-end listens) unless --vhost-server, where QEMU
#                         listens and the back-end connects; either way the
#                         guest starts only once the back-end is connected
#   --vhost-reconnect N   QEMU (the client) reconnects every N seconds when the
#                         back-end goes away or is not there yet (chardev
#                         reconnect=N): a restarted back-end gets the running
#                         guest back, as after a back-end upgrade or crash
#   --netdev-socket-*     QEMU's own -netdev socket on 127.0.0.1:PORT instead
#                         (start the listener first: connect fails at once
#                         if nobody listens)
#   --netdev-tap IFNAME   QEMU's own -netdev tap (vnet header, offloads as the
#                         guest negotiates them, vhost=off: this machine has no
#                         /dev/vhost-net); QEMU creates the TAP, or attaches to
#                         an existing one, and the caller gives it an address
#   --append              ferry.* guest parameters (see build-test-guest.sh)
#   --mtu N               advertise MTU N to the guest (host_mtu=N) and, unless
#                         --append sets ferry.mtu, also pass ferry.mtu=N
#   --mem MIB             guest memory, default 256
#   --unshared-memory     the misconfiguration Ferry must detect: guest RAM
#                         with share=off (QEMU maps it privately, so the
#                         back-end never sees the rings move)
#   --log FILE            serial console to FILE (truncated), else to stdout
#   --timeout SECONDS     kill QEMU after SECONDS (exit status 124)
#   --command-socket PATH a second serial port (the guest's ttyS1) on a unix
#                         socket QEMU listens on; the guest reads commands from
#                         it (ferry.commands=ttyS1 is added to the command line,
#                         see build-test-guest.sh) once it prints
#                         FERRY-GUEST-COMMANDS; answers go to the console
#   --device-options OPTS more virtio-net-pci properties, e.g.
#                         guest_tso4=off,guest_tso6=off (the guest's driver
#                         then takes no TCP super-frames)
#   --qmp-socket PATH     a QMP monitor on a unix socket QEMU listens on (a
#                         test resets the guest or plugs memory through it)
#   --memory-slots N      N slots for hot-plugged memory (pc-dimm), up to
#   --max-mem MIB         MIB of RAM in all (-m MEM,slots=N,maxmem=MIB); the
#                         guest onlines plugged memory as movable
#                         (memhp_default_state=online_movable), so it can give
#                         it back when the DIMM is unplugged
#   --qboot               boot through QEMU's qboot firmware instead of SeaBIOS:
#                         about 2 s less per boot under TCG (for tests that
#                         boot a guest many times; no option ROMs, no disks)
#   --allow-reboot        a reboot or reset restarts the guest instead of
#                         ending QEMU (-no-reboot is left out; a kernel panic
#                         then reboots too: look for it on the console)
#
# QEMU runs in the foreground (exec): the caller's pid is QEMU's (or that of
# `timeout`, which passes SIGTERM/SIGINT on to QEMU), so a test stops the guest
# by signalling that pid. Use SIGTERM, not SIGKILL, when --timeout is used:
# SIGKILL on `timeout` would leave QEMU running.
#
# Environment: FERRY_GUEST_DIR (kernel+initrd, default /var/tmp/ferry-guest),
# FERRY_GUEST_ACCEL=kvm to try KVM (default TCG, see below), FERRY_QEMU
# (default qemu-system-x86_64).
set -euo pipefail

die() { printf 'run-test-guest: ERROR: %s\n' "$*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

name="" mac="" vhost_socket="" vhost_server=0 vhost_reconnect="" sock_listen="" sock_connect=""
append="" mtu="" mem=256 log="" timeout_s="" share=on command_socket="" tap="" device_options=""
qmp_socket="" memory_slots="" max_mem="" allow_reboot=0 firmware=()
need_arg() { [[ $2 -ge 2 ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --name)                  need_arg "$1" $#; name="$2"; shift 2 ;;
        --mac)                   need_arg "$1" $#; mac="$2"; shift 2 ;;
        --vhost-socket)          need_arg "$1" $#; vhost_socket="$2"; shift 2 ;;
        --vhost-server)          vhost_server=1; shift ;;
        --vhost-reconnect)       need_arg "$1" $#; vhost_reconnect="$2"; shift 2 ;;
        --netdev-socket-listen)  need_arg "$1" $#; sock_listen="$2"; shift 2 ;;
        --netdev-socket-connect) need_arg "$1" $#; sock_connect="$2"; shift 2 ;;
        --netdev-tap)            need_arg "$1" $#; tap="$2"; shift 2 ;;
        --device-options)        need_arg "$1" $#; device_options="$2"; shift 2 ;;
        --append)                need_arg "$1" $#; append="$2"; shift 2 ;;
        --mtu)                   need_arg "$1" $#; mtu="$2"; shift 2 ;;
        --mem)                   need_arg "$1" $#; mem="$2"; shift 2 ;;
        --unshared-memory)       share=off; shift ;;
        --log)                   need_arg "$1" $#; log="$2"; shift 2 ;;
        --timeout)               need_arg "$1" $#; timeout_s="$2"; shift 2 ;;
        --command-socket)        need_arg "$1" $#; command_socket="$2"; shift 2 ;;
        --qmp-socket)            need_arg "$1" $#; qmp_socket="$2"; shift 2 ;;
        --memory-slots)          need_arg "$1" $#; memory_slots="$2"; shift 2 ;;
        --max-mem)               need_arg "$1" $#; max_mem="$2"; shift 2 ;;
        --allow-reboot)          allow_reboot=1; shift ;;
        --qboot)                 firmware=(-bios qboot.rom); shift ;;
        -h|--help)               usage; exit 0 ;;
        *)                       die "unknown option: $1 (see --help)" ;;
    esac
done

[[ -n "$name" ]] || die "--name is required"
# QEMU's -name and socket ids are comma-separated option strings: keep names simple.
[[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || die "--name may only use letters, digits, . _ -"
[[ "$mac" =~ ^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$ ]] || die "--mac wants aa:bb:cc:dd:ee:ff, got '$mac'"
# Bit 0 of the first octet set = multicast address: the guest driver would
# refuse it and a switch would flood it.
(( (16#${mac:0:2} & 1) == 0 )) || die "--mac $mac is a multicast address"
modes=0
[[ -n "$vhost_socket" ]] && modes=$((modes + 1))
[[ -n "$sock_listen" ]] && modes=$((modes + 1))
[[ -n "$sock_connect" ]] && modes=$((modes + 1))
[[ -n "$tap" ]] && modes=$((modes + 1))
[[ $modes -eq 1 ]] || die "give exactly one of --vhost-socket, --netdev-socket-listen, --netdev-socket-connect, --netdev-tap"
# An interface name (IFNAMSIZ 16 with its NUL); QEMU splits options on commas.
[[ -z "$tap" || "$tap" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "--netdev-tap wants an interface name (1-15 of A-Z a-z 0-9 _ . -), got '$tap'"
# key=value pairs only: no comma escapes (,,) and nothing that is not a property.
[[ -z "$device_options" || "$device_options" =~ ^[a-z0-9_]+=[a-z0-9]+(,[a-z0-9_]+=[a-z0-9]+)*$ ]] || die "--device-options wants key=value[,key=value...], got '$device_options'"
[[ $vhost_server -eq 0 || -n "$vhost_socket" ]] || die "--vhost-server only goes with --vhost-socket"
if [[ -n "$vhost_reconnect" ]]; then
    [[ -n "$vhost_socket" && $vhost_server -eq 0 ]] || die "--vhost-reconnect only goes with --vhost-socket, without --vhost-server"
    [[ "$vhost_reconnect" =~ ^[0-9]+$ && "$vhost_reconnect" -ge 1 ]] || die "--vhost-reconnect wants whole seconds >= 1, got '$vhost_reconnect'"
fi
for v in "$sock_listen" "$sock_connect"; do
    [[ -z "$v" || ( "$v" =~ ^[0-9]+$ && "$v" -ge 1 && "$v" -le 65535 ) ]] || die "bad port '$v'"
done
[[ -z "$mtu" || ( "$mtu" =~ ^[0-9]+$ && "$mtu" -ge 68 && "$mtu" -le 65535 ) ]] || die "--mtu wants 68..65535, got '$mtu'"
[[ "$mem" =~ ^[0-9]+$ && "$mem" -ge 64 ]] || die "--mem wants MiB >= 64, got '$mem'"
[[ -z "$timeout_s" || "$timeout_s" =~ ^[0-9]+$ ]] || die "--timeout wants whole seconds, got '$timeout_s'"
# QEMU splits option strings on commas: a comma in a path would inject options.
[[ "$vhost_socket" != *,* ]] || die "--vhost-socket path must not contain a comma"
[[ "$log" != *,* ]] || die "--log path must not contain a comma"
[[ "$command_socket" != *,* ]] || die "--command-socket path must not contain a comma"
[[ "$qmp_socket" != *,* ]] || die "--qmp-socket path must not contain a comma"
[[ -z "$memory_slots$max_mem" || ( -n "$memory_slots" && -n "$max_mem" ) ]] || die "--memory-slots and --max-mem go together"
[[ -z "$memory_slots" || ( "$memory_slots" =~ ^[0-9]+$ && "$memory_slots" -ge 1 && "$memory_slots" -le 32 ) ]] || die "--memory-slots wants 1..32, got '$memory_slots'"
[[ -z "$max_mem" || ( "$max_mem" =~ ^[0-9]+$ && "$max_mem" -gt "$mem" ) ]] || die "--max-mem wants MiB above --mem ($mem), got '$max_mem'"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
guest_dir="${FERRY_GUEST_DIR:-/var/tmp/ferry-guest}"
# Cheap when up to date, and locked against a parallel build: always call it so
# a test never boots a stale or half-built image. Its messages go to stderr so
# they never mix with the serial console on stdout.
FERRY_GUEST_DIR="$guest_dir" "$here/build-test-guest.sh" >&2

qemu="${FERRY_QEMU:-qemu-system-x86_64}"
command -v "$qemu" >/dev/null || die "$qemu not found: run tools/install-deps.sh test"

# /dev/kvm on this kind of machine is kvm_pvm: stock kernels do not boot under
# it (QEMU aborts on MSR 0x10a or hangs). TCG boots this guest in a few seconds.
case "${FERRY_GUEST_ACCEL:-tcg}" in
    tcg) accel=(-accel tcg) ;;
    kvm) accel=(-accel kvm -cpu host) ;;
    *)   die "FERRY_GUEST_ACCEL must be tcg or kvm" ;;
esac

# Without --append ferry.mtu the guest would set its MTU back to 1500 even
# though the device advertises host_mtu.
if [[ -n "$mtu" && " $append " != *" ferry.mtu="* ]]; then
    append="ferry.mtu=$mtu $append"
fi
# panic=-1 + -no-reboot: a guest panic ends QEMU at once instead of hanging a
# test until its timeout. loglevel=4 keeps routine kernel chatter from
# interleaving with the result lines on the console. edd=off skips a BIOS
# disk probe this diskless guest does not need.
if [[ -n "$command_socket" && " $append " != *" ferry.commands="* ]]; then
    append="$append ferry.commands=ttyS1"
fi
if [[ -n "$memory_slots" && " $append " != *" memhp_default_state="* ]]; then
    append="$append memhp_default_state=online_movable"
fi
cmdline="console=ttyS0 panic=-1 loglevel=4 edd=off $append"

if [[ -n "$vhost_socket" ]]; then
    chardev="socket,id=c0,path=$vhost_socket"
    # wait=off lets QEMU past the chardev, but QEMU 7.2's vhost-user netdev
    # itself still blocks ("QEMU waiting for connection on: ...") until the
    # back-end connects: the guest boots only once the back-end is there.
    [[ $vhost_server -eq 1 ]] && chardev+=",server=on,wait=off"
    # reconnect=N (seconds; QEMU 9.2 renamed it reconnect-ms): a client chardev
    # retries the connection, and the vhost-user netdev sets the guest's link
    # down while the back-end is away and replays the whole set-up (features,
    # memory table, rings from the used index) once it is back.
    [[ -n "$vhost_reconnect" ]] && chardev+=",reconnect=$vhost_reconnect"
    net=(-chardev "$chardev" -netdev "vhost-user,id=n0,chardev=c0")
elif [[ -n "$tap" ]]; then
    # script=no: QEMU brings no bridge scripts into it; vhost=off: the data
    # path stays in QEMU (no vhost-net module on this kind of machine).
    net=(-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no,vhost=off")
elif [[ -n "$sock_listen" ]]; then
    net=(-netdev "socket,id=n0,listen=127.0.0.1:$sock_listen")
else
    net=(-netdev "socket,id=n0,connect=127.0.0.1:$sock_connect")
fi
# vectors=0 (legacy INTx, no MSI-X): QEMU 7.2 segfaults under TCG when a
# vhost-user virtio-net device uses MSI-X. Same device line for the socket
# netdev, so both paths exercise the same guest driver setup.
# mrg_rxbuf=on: jumbo frames span several RX buffers. romfile= (empty): no
# iPXE option ROM, the kernel is loaded directly and iPXE only costs boot time.
device="virtio-net-pci,netdev=n0,mac=$mac,vectors=0,mrg_rxbuf=on,romfile="
[[ -n "$mtu" ]] && device+=",host_mtu=$mtu"
[[ -n "$device_options" ]] && device+=",$device_options"

if [[ -n "$log" ]]; then
    serial=(-serial "file:$log")
else
    serial=(-serial stdio)
fi
# The second -serial is the guest's ttyS1. server=on,wait=off: QEMU does not
# wait for the test to connect, and bytes sent before the guest reads stay in
# the socket (the UART only takes what its FIFO has room for).
if [[ -n "$command_socket" ]]; then
    serial+=(-serial "unix:$command_socket,server=on,wait=off")
fi

memory="${mem}M"
[[ -n "$memory_slots" ]] && memory+=",slots=$memory_slots,maxmem=${max_mem}M"
monitor=(-monitor none)
[[ -n "$qmp_socket" ]] && monitor+=(-qmp "unix:$qmp_socket,server=on,wait=off")
reboot=(-no-reboot)
[[ $allow_reboot -eq 1 ]] && reboot=()

cmd=(
    "$qemu" -name "$name"
    "${accel[@]}" "${firmware[@]}" -smp 1 -m "$memory"
    # The back-end maps guest memory through the fds QEMU sends: it must be a
    # shared memfd. Private memory only warns and then moves no packets.
    -object "memory-backend-memfd,id=mem,size=${mem}M,share=${share}" -numa "node,memdev=mem"
    # -nodefaults: no default NIC, VGA, floppy or CD; -monitor none keeps the
    # monitor off stdio (a test has no terminal, and stdout is the console).
    -nographic -nodefaults -no-user-config "${monitor[@]}" "${reboot[@]}"
    "${serial[@]}"
    -kernel "$guest_dir/vmlinuz" -initrd "$guest_dir/initrd.gz" -append "$cmdline"
    "${net[@]}" -device "$device"
)

if [[ -n "$timeout_s" ]]; then
    # -k 5: SIGKILL if QEMU ignores the SIGTERM for 5 s. setpriv: QEMU is
    # timeout's child, so a caller that SIGKILLs timeout (or dies and takes it
    # along with PR_SET_PDEATHSIG) would otherwise leave QEMU running.
    pdeath=()
    if command -v setpriv >/dev/null && setpriv --help 2>&1 | grep -q -- --pdeathsig; then
        pdeath=(setpriv --pdeathsig KILL)
    fi
    exec timeout -k 5 "$timeout_s" "${pdeath[@]}" "${cmd[@]}"
fi
exec "${cmd[@]}"
