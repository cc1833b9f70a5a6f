// CBPF: libbpf (loading, maps, XDP attach) and the kernel's XDP flags, as
// Swift sees them. Only includes: no logic lives here.
#ifndef CBPF_H
#define CBPF_H

#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/if_link.h>

#endif
