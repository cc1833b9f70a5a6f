// CFerry: what Swift cannot import by itself. Macros become inline functions,
// kernel struct layouts are pinned with _Static_assert. No logic lives here.
#ifndef CFERRY_H
#define CFERRY_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <linux/virtio_ring.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <sched.h>
#include <pthread.h>
#include <unistd.h>

// ---- Memory ordering on memory shared with another process (a guest's rings).
// Swift's Atomic<T> cannot be placed on foreign memory, so the C11 builtins are
// exposed one per width and order. Each is a single instruction on x86-64.
static inline uint16_t ferry_load_acquire_u16(const void *p) {
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}
static inline void ferry_store_release_u16(void *p, uint16_t v) {
    __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
}
static inline uint16_t ferry_load_relaxed_u16(const void *p) {
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}
static inline void ferry_store_relaxed_u16(void *p, uint16_t v) {
    __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED);
}
static inline uint64_t ferry_load_relaxed_u64(const void *p) {
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}
static inline void ferry_store_relaxed_u64(void *p, uint64_t v) {
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
}
static inline uint32_t ferry_load_acquire_u32(const void *p) {
    return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}
static inline void ferry_store_release_u32(void *p, uint32_t v) {
    __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE);
}
// A test-and-set for the rare transmit queue that two workers share.
static inline uint32_t ferry_exchange_acquire_u32(void *p, uint32_t v) {
    return __atomic_exchange_n((uint32_t *)p, v, __ATOMIC_ACQUIRE);
}
static inline uint32_t ferry_load_relaxed_u32(const void *p) {
    return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED);
}
static inline void ferry_store_relaxed_u32(void *p, uint32_t v) {
    __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELAXED);
}
// Marking a page in a front-end's dirty log (vhost-user.rst, "Migration": "use
// atomic operations, as the log may be concurrently manipulated"). Release: the
// guest bytes written before must be visible to whoever sees the bit.
static inline void ferry_fetch_or_release_u8(void *p, uint8_t v) {
    (void)__atomic_fetch_or((uint8_t *)p, v, __ATOMIC_RELEASE);
}
// A counter more than one worker adds to (a vxlan port's per-VTEP receive
// counts: its socket's worker and every worker pulling its uplink's queues).
static inline void ferry_fetch_add_relaxed_u64(void *p, uint64_t v) {
    (void)__atomic_fetch_add((uint64_t *)p, v, __ATOMIC_RELAXED);
}
// A full fence: needed between publishing used.idx and reading the driver's
// event index (virtio 1.2 §2.7.10: the store must be visible before the load).
static inline void ferry_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void ferry_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void ferry_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void ferry_cpu_relax(void) { __builtin_ia32_pause(); }
// Hints that a line is about to be read (prefetcht0) or written (prefetchw): they
// never fault and change no result, only when the line's transfer starts.
static inline void ferry_prefetch_read(const void *p) { __builtin_prefetch(p, 0, 3); }
static inline void ferry_prefetch_write(const void *p) { __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p)); }

// ---- SCM_RIGHTS: the CMSG_* macros as functions.
static inline size_t ferry_cmsg_space(size_t len) { return CMSG_SPACE(len); }
static inline size_t ferry_cmsg_len(size_t len) { return CMSG_LEN(len); }
static inline struct cmsghdr *ferry_cmsg_firsthdr(struct msghdr *m) { return CMSG_FIRSTHDR(m); }
static inline struct cmsghdr *ferry_cmsg_nxthdr(struct msghdr *m, struct cmsghdr *c) { return CMSG_NXTHDR(m, c); }
static inline unsigned char *ferry_cmsg_data(struct cmsghdr *c) { return CMSG_DATA(c); }

// ---- Calls glibc declares only under _GNU_SOURCE. Defining _GNU_SOURCE in
// this header would make its struct definitions disagree with Swift's Glibc
// module, so these forwarders live in shim.c, compiled with it.
int ferry_memfd_create(const char *name, unsigned int flags);
int ferry_set_affinity(int cpu);
// The calling thread's allowed CPUs as the kernel's mask (`words` 64-bit words,
// CPU n is bit n % 64 of word n / 64), read and set; and the CPU it runs on.
int ferry_get_affinity_mask(unsigned long long *words, int count);
int ferry_set_affinity_mask(const unsigned long long *words, int count);
int ferry_current_cpu(void);
// ppoll(2) with a relative timeout in nanoseconds (a sleep shorter than poll's millisecond).
int ferry_ppoll_nanoseconds(struct pollfd *fds, unsigned long count, long nanoseconds);
int ferry_set_thread_name(const char *name);
int ferry_accept_cloexec(int listener);
int ferry_gettid(void);
// Tests move a thread into a network namespace to open sockets there.
int ferry_setns(int fd, int nstype);
// A read that never sleeps whatever the descriptor's O_NONBLOCK says (RWF_NOWAIT):
// the flag is per call, so a file status flag shared with another process stays untouched.
ssize_t ferry_preadv2(int fd, const struct iovec *iov, int count, off_t offset, int flags);
// recvmmsg and sendmmsg move a burst of datagrams per call (a tunnel port's
// underlay socket); struct mmsghdr, like the calls, exists only under
// _GNU_SOURCE, so its layout is repeated here and pinned in shim.c.
struct ferry_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};
int ferry_recvmmsg(int fd, struct ferry_mmsghdr *messages, unsigned int count, int flags);
int ferry_sendmmsg(int fd, struct ferry_mmsghdr *messages, unsigned int count, int flags);
#define FERRY_MFD_CLOEXEC 1u
#define FERRY_CLONE_NEWNET 0x40000000

// ---- SIGBUS in guest memory: si_addr and si_code are macros over siginfo_t's union.
#include <signal.h>
static inline void *ferry_siginfo_address(const siginfo_t *info) { return info->si_addr; }
static inline int ferry_siginfo_code(const siginfo_t *info) { return info->si_code; }

// ---- TUN/TAP (kernel Documentation/networking/tuntap.rst). The IFF_* and
// TUN_F_* values are plain macros Swift imports itself; the ioctl numbers are
// _IOW() expressions it cannot, so they are exported here as constants.
static const unsigned long FERRY_TUNSETIFF = TUNSETIFF;
static const unsigned long FERRY_TUNSETVNETHDRSZ = TUNSETVNETHDRSZ;
static const unsigned long FERRY_TUNSETOFFLOAD = TUNSETOFFLOAD;
static const unsigned long FERRY_TUNSETSNDBUF = TUNSETSNDBUF;
static const unsigned long FERRY_TUNSETFILTEREBPF = TUNSETFILTEREBPF;
// ioctl is variadic, which Swift cannot call. Two forwarders, one per argument
// convention: TUNSETIFF, TUNSETVNETHDRSZ, TUNSETSNDBUF and the SIOC*IF* requests take a
// pointer; TUNSETOFFLOAD takes its flags as the argument itself, an unsigned
// long whose upper bits must be zero (tun.c rejects unknown bits).
static inline int ferry_ioctl_pointer(int fd, unsigned long request, void *argument) {
    return ioctl(fd, request, argument);
}
static inline int ferry_ioctl_value(int fd, unsigned long request, unsigned long argument) {
    return ioctl(fd, request, argument);
}
// Swift reaches ifreq's name, flags and mtu through the imported unions; the
// kernel reads the same bytes (name first, the 16-byte union after it).
_Static_assert(IFNAMSIZ == 16, "IFNAMSIZ");
_Static_assert(sizeof(struct ifreq) == 40, "ifreq is 40 bytes");
_Static_assert(offsetof(struct ifreq, ifr_flags) == 16, "ifreq.ifr_flags at 16");
_Static_assert(offsetof(struct ifreq, ifr_mtu) == 16, "ifreq.ifr_mtu at 16");

// ---- AF_PACKET (packet(7)): struct sockaddr_ll, struct packet_mreq and the
// PACKET_* socket options, which Swift's Glibc module leaves out. The kernel's
// own header rather than glibc's <netpacket/packet.h>: only it has the
// TPACKET ring structures, and the two cannot be included together (both
// define sockaddr_ll). The TAP tests bind packet sockets to the interfaces
// they create; `PacketRingSocket` maps rings (Documentation/networking/packet_mmap.rst).
#include <linux/if_packet.h>
#include <linux/filter.h>

// TPACKET_V3 is an enum member; the TP_STATUS_* and fanout flags are shifts
// and TPACKET3_HDRLEN an expression with a macro function, none of which Swift
// imports, so they are exported as constants.
static const int FERRY_TPACKET_V3 = TPACKET_V3;
static const int FERRY_PACKET_FANOUT_HASH = PACKET_FANOUT_HASH;
static const int FERRY_PACKET_FANOUT_FLAG_UNIQUEID = PACKET_FANOUT_FLAG_UNIQUEID;
static const int FERRY_PACKET_MR_PROMISC = PACKET_MR_PROMISC;
static const int FERRY_SO_ATTACH_FILTER = SO_ATTACH_FILTER;
// Receive ring: a block is the kernel's (TP_STATUS_KERNEL) or ours (TP_STATUS_USER).
static const uint32_t FERRY_TP_STATUS_KERNEL = TP_STATUS_KERNEL;
static const uint32_t FERRY_TP_STATUS_USER = TP_STATUS_USER;
static const uint32_t FERRY_TP_STATUS_VLAN_VALID = TP_STATUS_VLAN_VALID;
static const uint32_t FERRY_TP_STATUS_VLAN_TPID_VALID = TP_STATUS_VLAN_TPID_VALID;
// Transmit ring: a slot is free (AVAILABLE), filled for the kernel
// (SEND_REQUEST), or taken by it until the driver is done (SENDING).
static const uint32_t FERRY_TP_STATUS_AVAILABLE = TP_STATUS_AVAILABLE;
static const uint32_t FERRY_TP_STATUS_SEND_REQUEST = TP_STATUS_SEND_REQUEST;
static const uint32_t FERRY_TP_STATUS_SENDING = TP_STATUS_SENDING;
// A V3 frame header plus the sockaddr_ll after it; a transmit slot's frame
// starts at TPACKET3_HDRLEN - sizeof(struct sockaddr_ll) (tpacket_parse_header).
static const uint32_t FERRY_TPACKET3_HDRLEN = TPACKET3_HDRLEN;
static const uint32_t FERRY_TPACKET_ALIGNMENT = TPACKET_ALIGNMENT;
// Offsets Swift reads through raw pointers: a block's descriptor
// (struct tpacket_block_desc, header variant tpacket_hdr_v1) and a frame's
// struct tpacket3_hdr.
static const uint32_t FERRY_TPACKET_BLOCK_STATUS = offsetof(struct tpacket_block_desc, hdr.bh1.block_status);
static const uint32_t FERRY_TPACKET_BLOCK_NUM_PKTS = offsetof(struct tpacket_block_desc, hdr.bh1.num_pkts);
static const uint32_t FERRY_TPACKET_BLOCK_FIRST_PKT = offsetof(struct tpacket_block_desc, hdr.bh1.offset_to_first_pkt);
static const uint32_t FERRY_TPACKET3_NEXT_OFFSET = offsetof(struct tpacket3_hdr, tp_next_offset);
static const uint32_t FERRY_TPACKET3_SNAPLEN = offsetof(struct tpacket3_hdr, tp_snaplen);
static const uint32_t FERRY_TPACKET3_LEN = offsetof(struct tpacket3_hdr, tp_len);
static const uint32_t FERRY_TPACKET3_STATUS = offsetof(struct tpacket3_hdr, tp_status);
static const uint32_t FERRY_TPACKET3_MAC = offsetof(struct tpacket3_hdr, tp_mac);
static const uint32_t FERRY_TPACKET3_VLAN_TCI = offsetof(struct tpacket3_hdr, hv1.tp_vlan_tci);
static const uint32_t FERRY_TPACKET3_VLAN_TPID = offsetof(struct tpacket3_hdr, hv1.tp_vlan_tpid);
// Classic BPF (Documentation/networking/filter.rst): opcodes are ORed macros,
// ancillary loads an offset below zero.
static const uint16_t FERRY_BPF_LD_B_ABS = BPF_LD | BPF_B | BPF_ABS;
static const uint16_t FERRY_BPF_JMP_JSET_K = BPF_JMP | BPF_JSET | BPF_K;
static const uint16_t FERRY_BPF_JMP_JEQ_K = BPF_JMP | BPF_JEQ | BPF_K;
static const uint16_t FERRY_BPF_RET_K = BPF_RET | BPF_K;
static const uint32_t FERRY_SKF_AD_PKTTYPE = (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE);
_Static_assert(sizeof(struct tpacket3_hdr) == 48, "tpacket3_hdr is 48 bytes");
_Static_assert(TPACKET3_HDRLEN == 68, "TPACKET3_HDRLEN");
_Static_assert(sizeof(struct sockaddr_ll) == 20, "sockaddr_ll is 20 bytes");
_Static_assert(sizeof(struct tpacket_req3) == 28, "tpacket_req3 is 28 bytes");
_Static_assert(sizeof(struct sock_filter) == 8, "sock_filter is 8 bytes");
_Static_assert(offsetof(struct tpacket3_hdr, tp_status) == 20, "tp_status at 20 (u32)");
_Static_assert(offsetof(struct tpacket3_hdr, tp_len) == 16, "tp_len at 16 (u32)");
_Static_assert(offsetof(struct tpacket3_hdr, tp_snaplen) == 12, "tp_snaplen at 12 (u32)");
_Static_assert(offsetof(struct tpacket3_hdr, tp_mac) == 24, "tp_mac at 24 (u16)");
_Static_assert(offsetof(struct tpacket3_hdr, hv1.tp_vlan_tci) == 32, "tp_vlan_tci at 32 (u32)");
_Static_assert(offsetof(struct tpacket3_hdr, hv1.tp_vlan_tpid) == 36, "tp_vlan_tpid at 36 (u16)");
_Static_assert(offsetof(struct tpacket_block_desc, hdr.bh1.block_status) == 8, "block_status at 8 (u32)");
_Static_assert(offsetof(struct tpacket_block_desc, hdr.bh1.num_pkts) == 12, "num_pkts at 12 (u32)");
_Static_assert(offsetof(struct tpacket_block_desc, hdr.bh1.offset_to_first_pkt) == 16, "offset_to_first_pkt at 16 (u32)");

// ---- Split virtqueue layout (virtio 1.2 §2.7). Swift reads these through
// raw pointers at the offsets below; the asserts keep both sides in step.
_Static_assert(sizeof(struct vring_desc) == 16, "virtq_desc is 16 bytes");
_Static_assert(offsetof(struct vring_desc, len) == 8, "virtq_desc.len at 8");
_Static_assert(offsetof(struct vring_desc, flags) == 12, "virtq_desc.flags at 12");
_Static_assert(offsetof(struct vring_desc, next) == 14, "virtq_desc.next at 14");
_Static_assert(sizeof(struct vring_used_elem) == 8, "virtq_used_elem is 8 bytes");
_Static_assert(offsetof(struct vring_avail, ring) == 4, "avail.ring at 4");
_Static_assert(offsetof(struct vring_used, ring) == 4, "used.ring at 4");

// ---- Packed virtqueue layout (virtio 1.2 §2.8), read the same way.
_Static_assert(sizeof(struct vring_packed_desc) == 16, "pvirtq_desc is 16 bytes");
_Static_assert(offsetof(struct vring_packed_desc, len) == 8, "pvirtq_desc.len at 8");
_Static_assert(offsetof(struct vring_packed_desc, id) == 12, "pvirtq_desc.id at 12");
_Static_assert(offsetof(struct vring_packed_desc, flags) == 14, "pvirtq_desc.flags at 14");
_Static_assert(sizeof(struct vring_packed_desc_event) == 4, "pvirtq_event_suppress is 4 bytes");
_Static_assert(offsetof(struct vring_packed_desc_event, flags) == 2, "event suppression flags at 2");

// ---- io_uring (io_uring_setup(2), io_uring_enter(2), io_uring_register(2);
// linux/io_uring.h). There is no glibc wrapper and syscall(2) is variadic, so
// the three calls are forwarded as functions. Swift fills SQEs and reads CQEs
// through raw pointers at the offsets pinned below; the flag macros are
// shifts Swift cannot import, so they are exported as constants.
#include <linux/io_uring.h>
int ferry_io_uring_setup(unsigned int entries, struct io_uring_params *params);
int ferry_io_uring_enter(int fd, unsigned int to_submit, unsigned int min_complete, unsigned int flags);
int ferry_io_uring_register(int fd, unsigned int opcode, void *arg, unsigned int nr_args);
static const uint32_t FERRY_IORING_SETUP_SUBMIT_ALL = IORING_SETUP_SUBMIT_ALL;
static const uint32_t FERRY_IORING_SETUP_COOP_TASKRUN = IORING_SETUP_COOP_TASKRUN;
static const uint32_t FERRY_IORING_FEAT_SINGLE_MMAP = IORING_FEAT_SINGLE_MMAP;
static const uint32_t FERRY_IORING_ENTER_GETEVENTS = IORING_ENTER_GETEVENTS;
static const uint32_t FERRY_IORING_REGISTER_FILES = IORING_REGISTER_FILES;
static const uint8_t FERRY_IORING_OP_WRITEV = IORING_OP_WRITEV;
static const uint8_t FERRY_IORING_OP_WRITE = IORING_OP_WRITE;
// RWF_NOWAIT in sqe.rw_flags: without it io_uring answers a full tun send
// buffer by polling for POLLOUT and waiting, O_NONBLOCK or not.
static const uint32_t FERRY_RWF_NOWAIT = RWF_NOWAIT;
static const uint64_t FERRY_IORING_OFF_SQ_RING = IORING_OFF_SQ_RING;
static const uint64_t FERRY_IORING_OFF_SQES = IORING_OFF_SQES;
_Static_assert(sizeof(struct io_uring_sqe) == 64, "io_uring_sqe is 64 bytes");
_Static_assert(offsetof(struct io_uring_sqe, opcode) == 0, "sqe.opcode at 0 (u8)");
_Static_assert(offsetof(struct io_uring_sqe, flags) == 1, "sqe.flags at 1 (u8)");
_Static_assert(offsetof(struct io_uring_sqe, fd) == 4, "sqe.fd at 4 (s32)");
_Static_assert(offsetof(struct io_uring_sqe, off) == 8, "sqe.off at 8 (u64)");
_Static_assert(offsetof(struct io_uring_sqe, addr) == 16, "sqe.addr at 16 (u64)");
_Static_assert(offsetof(struct io_uring_sqe, len) == 24, "sqe.len at 24 (u32)");
_Static_assert(offsetof(struct io_uring_sqe, rw_flags) == 28, "sqe.rw_flags at 28 (u32)");
_Static_assert(offsetof(struct io_uring_sqe, user_data) == 32, "sqe.user_data at 32 (u64)");
_Static_assert(sizeof(struct io_uring_cqe) == 16, "io_uring_cqe is 16 bytes (no CQE32)");
_Static_assert(offsetof(struct io_uring_cqe, user_data) == 0, "cqe.user_data at 0 (u64)");
_Static_assert(offsetof(struct io_uring_cqe, res) == 8, "cqe.res at 8 (s32)");

// ---- AF_XDP (kernel Documentation/networking/af_xdp.rst; linux/if_xdp.h).
// Swift imports the structs and the plain flag macros; the mmap page offsets
// are 64-bit literals it can, but they are exported beside the layouts that
// the ring views read through raw pointers, so the two stay in one place.
#include <linux/if_xdp.h>
static const uint64_t FERRY_XDP_PGOFF_RX_RING = XDP_PGOFF_RX_RING;
static const uint64_t FERRY_XDP_PGOFF_TX_RING = XDP_PGOFF_TX_RING;
static const uint64_t FERRY_XDP_UMEM_PGOFF_FILL_RING = XDP_UMEM_PGOFF_FILL_RING;
static const uint64_t FERRY_XDP_UMEM_PGOFF_COMPLETION_RING = XDP_UMEM_PGOFF_COMPLETION_RING;
_Static_assert(sizeof(struct xdp_desc) == 16, "xdp_desc is 16 bytes");
_Static_assert(offsetof(struct xdp_desc, len) == 8, "xdp_desc.len at 8 (u32)");
_Static_assert(sizeof(struct sockaddr_xdp) == 16, "sockaddr_xdp is 16 bytes");
_Static_assert(sizeof(struct xdp_umem_reg) == 32, "xdp_umem_reg v2 (with flags) is 32 bytes");
_Static_assert(sizeof(struct xdp_mmap_offsets) == 128, "xdp_mmap_offsets with flags is 128 bytes");

#endif
