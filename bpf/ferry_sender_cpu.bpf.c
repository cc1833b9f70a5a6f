// SPDX-License-Identifier: GPL-2.0
//
// Ferry's TAP sender program: tun runs a TAP's filter program
// (TUNSETFILTEREBPF, a socket filter) in tun_net_xmit for every frame the
// kernel sends on the interface, in the context of whoever sent it (a ping's
// sendmsg, a TCP ack in softirq); whatever the TAP's queue count. It writes
// the CPU it runs on, plus one, into `ferry_sender_cpu` (0: no frame yet)
// and keeps the whole frame.
//
// The worker that polls the TAP reads that CPU with a plain load of the
// mmapped map when the TAP woke it from a sleep, and moves to it: the next
// wake-up (and the answer's wake-up of the sender) stays on one CPU instead
// of waking a halted vCPU (docs/PERFORMANCE.md, "Session 8: the worker follows the sender").
//
// One entry shared by every TAP of the Ferry: the last frame into any of them
// is the one whose sender woke the worker. Built and embedded like
// ferry_steer.bpf.c (BPFObjectPlugin).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} ferry_sender_cpu SEC(".maps");

SEC("socket")
int ferry_sender(struct __sk_buff *skb)
{
    __u32 key = 0;
    __u32 *cpu = bpf_map_lookup_elem(&ferry_sender_cpu, &key);
    __u32 now = bpf_get_smp_processor_id() + 1;
    // A store only when it changes: the line stays shared with the worker's reads.
    if (cpu && *cpu != now)
        *cpu = now;
    // tun keeps this many bytes of the frame: all of them.
    return skb->len;
}

char LICENSE[] SEC("license") = "GPL";
