// SPDX-License-Identifier: GPL-2.0
//
// Ferry's XDP steering program. It runs on an uplink NIC Ferry shares with
// the host: frames addressed to a guest (destination MAC + VLAN in
// `ferry_guests`) go to the AF_XDP socket bound to the receive queue they
// arrived on, and so do VXLAN datagrams for a vxlan port sending through this
// uplink (`via=`: destination address and UDP port in `ferry_tunnels`, IPv4
// without options or IPv6 without extension headers, never a fragment);
// everything else, and every group-addressed frame, goes on to the kernel
// (XDP_PASS) untouched, so the host's own networking (ARP and ND for the
// tunnel's own address included) never notices.
//
// Ferry recognises its own program by the name `ferry_steer` (BPF object names
// keep 15 characters) and a stale one, left by a Ferry killed with SIGKILL, by
// the pid in `ferry_owner` no longer being alive.
//
// Built by BPFObjectPlugin (Plugins/) with clang -target bpf -O2 -g; the
// object is embedded into the `ferry` binary, never installed as a file.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// The lookup key: the destination MAC and the 802.1Q VID (0: untagged), 8
// bytes with no padding so user space can build it byte by byte. `vlan` is in
// host order: Ferry writes it from a Swift UInt16.
struct ferry_guest_key {
    __u8 mac[ETH_ALEN];
    __u16 vlan;
};
_Static_assert(sizeof(struct ferry_guest_key) == 8, "key layout shared with Sources/XDP/GuestKey.swift");

// Counter indexes, shared with SteeringMaps.Counter in Sources/XDP.
enum ferry_stat {
    FERRY_STAT_STEERED = 0,   // handed to bpf_redirect_map (a socket, or XDP_PASS if none on the queue)
    FERRY_STAT_PASSED = 1,    // not a guest's frame: the kernel's
    FERRY_STAT_MALFORMED = 2, // shorter than its Ethernet (+ 802.1Q) header
    FERRY_STAT_TUNNEL = 3,    // a VXLAN datagram for a tunnel in `ferry_tunnels`: redirected like a guest's
    FERRY_STAT_COUNT = 4,
};

// A tunnel's local end: the destination address (IPv4 in the first 4 bytes,
// the rest zero) and UDP port (network order) of the datagrams it takes, 20
// bytes with no padding; shared with Sources/XDP/TunnelKey.swift.
struct ferry_tunnel_key {
    __u8 address[16];
    __be16 port;
    __u8 family; // 4 or 6
    __u8 pad;
};
_Static_assert(sizeof(struct ferry_tunnel_key) == 20, "key layout shared with Sources/XDP/TunnelKey.swift");

// 802.1Q (IEEE 802.1Q-2018 §9.6): the TPID, then 16 bits of PCP, DEI and the 12-bit VID.
#define FERRY_VID_MASK 0x0fff

struct vlan_tag {
    __be16 tci;
    __be16 encapsulated_proto;
};

// The guests on this uplink. max_entries is set by Ferry before loading
// (its guest capacity); 1024 is only the default of the object file.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, struct ferry_guest_key);
    __type(value, __u32); // reserved for flags; a present key is all that counts today
} ferry_guests SEC(".maps");

// The tunnels whose datagrams Ferry takes on this uplink (a handful).
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, struct ferry_tunnel_key);
    __type(value, __u32); // reserved for flags
} ferry_tunnels SEC(".maps");

// One AF_XDP socket per receive queue. 64 queues cover every NIC Ferry has
// been asked to share; a queue beyond that simply never steers.
struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u32);
} ferry_xsks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, FERRY_STAT_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} ferry_stats SEC(".maps");

// Index 0: the pid of the Ferry that attached this program, written right
// after load. Only user space reads it; Ferry binds it to the program
// (BPF_PROG_BIND_MAP) so it lives as long as the program and shows among its
// map ids.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} ferry_owner SEC(".maps");

static __always_inline void count(__u32 index)
{
    __u64 *counter = bpf_map_lookup_elem(&ferry_stats, &index);
    // Per-CPU: no other CPU writes this slot, so a plain add is exact.
    if (counter)
        *counter += 1;
}

// Whether the IP packet at `l3` (EtherType `proto`, network order) is a UDP
// datagram to a tunnel in `ferry_tunnels`. IPv4 with options, IPv6 with
// extension headers and every fragment stay with the kernel, whose UDP
// socket for the tunnel takes them.
static __always_inline int is_tunnel_datagram(void *l3, void *data_end, __be16 proto)
{
    struct ferry_tunnel_key key = {};
    struct udphdr *udp;

    if (proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = l3;
        if ((void *)(ip + 1) > data_end)
            return 0;
        // ihl 5: no options; frag_off's MF bit and offset zero: not a fragment.
        if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)))
            return 0;
        udp = (void *)(ip + 1);
        __builtin_memcpy(key.address, &ip->daddr, 4);
        key.family = 4;
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = l3;
        if ((void *)(ip6 + 1) > data_end)
            return 0;
        if (ip6->nexthdr != IPPROTO_UDP)
            return 0;
        udp = (void *)(ip6 + 1);
        __builtin_memcpy(key.address, &ip6->daddr, 16);
        key.family = 6;
    } else {
        return 0;
    }
    if ((void *)(udp + 1) > data_end)
        return 0;
    key.port = udp->dest;
    return bpf_map_lookup_elem(&ferry_tunnels, &key) != 0;
}

SEC("xdp")
int ferry_steer(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > data_end) {
        count(FERRY_STAT_MALFORMED);
        return XDP_PASS;
    }
    // Group addresses (broadcast, multicast: the I/G bit) belong to the host
    // too; Ferry takes its copy from a packet socket, so they always pass.
    if (eth->h_dest[0] & 1) {
        count(FERRY_STAT_PASSED);
        return XDP_PASS;
    }

    struct ferry_guest_key key = {};
    __builtin_memcpy(key.mac, eth->h_dest, ETH_ALEN);
    __be16 proto = eth->h_proto;
    void *l3 = eth + 1;
    if (proto == bpf_htons(ETH_P_8021Q)) {
        struct vlan_tag *tag = (void *)(eth + 1);
        if ((void *)(tag + 1) > data_end) {
            count(FERRY_STAT_MALFORMED);
            return XDP_PASS;
        }
        key.vlan = bpf_ntohs(tag->tci) & FERRY_VID_MASK;
        proto = tag->encapsulated_proto;
        l3 = tag + 1;
    }

    if (is_tunnel_datagram(l3, data_end, proto)) {
        count(FERRY_STAT_TUNNEL);
        return bpf_redirect_map(&ferry_xsks, ctx->rx_queue_index, XDP_PASS);
    }

    if (!bpf_map_lookup_elem(&ferry_guests, &key)) {
        count(FERRY_STAT_PASSED);
        return XDP_PASS;
    }
    count(FERRY_STAT_STEERED);
    // The low bits of flags are the action when no socket is bound to this
    // queue (kernel 5.3+): the frame then still reaches the kernel.
    return bpf_redirect_map(&ferry_xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
