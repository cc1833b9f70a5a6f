/*
 * afpacket-send: the kernel side of a TAP, as fast as one core sends — the
 * TAP -> guest source of the W4 benchmark (tools/bench-switch.py).
 *
 * An AF_PACKET socket bound to the interface sends one prebuilt Ethernet/IPv4/UDP
 * frame over and over with sendmmsg(), bypassing the qdisc (PACKET_QDISC_BYPASS):
 * on a TAP each frame goes straight into the queue the TAP's reader (the
 * back-end under test) reads from. A frame the reader has no room for is dropped
 * by the TAP and counted in its tx_dropped, not here: `sent` is what the kernel
 * accepted from this socket.
 *
 *   afpacket-send IFNAME SECONDS [SIZE] [DST-MAC] [SRC-MAC]
 *     SIZE     frame bytes without FCS (60...1514 for a 1500 MTU), default 64
 *     DST-MAC  default ff:ff:ff:ff:ff:ff (any switch delivers a broadcast)
 *     SRC-MAC  default 02:00:00:00:00:03
 * Output (space-separated key=value):
 *   PPS t=SECONDS tx=PPS      once per second
 *   TOTAL tx=N errors=N seconds=S
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_FRAME 9000

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
		return -1;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 255)
			return -1;
		mac[i] = (uint8_t)v[i];
	}
	return 0;
}

static uint16_t ip_checksum(const void *data, size_t len)
{
	const uint16_t *p = data;
	uint32_t sum = 0;
	for (; len > 1; len -= 2)
		sum += *p++;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Ethernet/IPv4/UDP, 198.18.0.3 -> 198.18.0.1 (the guest), port 9 (discard). */
static void build_frame(uint8_t *p, size_t size, const uint8_t dst[6], const uint8_t src[6])
{
	struct ether_header *eth = (struct ether_header *)p;
	struct iphdr *ip = (struct iphdr *)(p + sizeof(*eth));
	struct udphdr *udp = (struct udphdr *)(p + sizeof(*eth) + sizeof(*ip));
	size_t ip_len = size - sizeof(*eth);

	memset(p, 0, size);
	memcpy(eth->ether_dhost, dst, 6);
	memcpy(eth->ether_shost, src, 6);
	eth->ether_type = htons(ETHERTYPE_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = htons((uint16_t)ip_len);
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->saddr = htonl(0xc6120003); /* 198.18.0.3 */
	ip->daddr = htonl(0xc6120001); /* 198.18.0.1 */
	ip->check = ip_checksum(ip, sizeof(*ip));
	udp->source = htons(9);
	udp->dest = htons(9);
	udp->len = htons((uint16_t)(ip_len - sizeof(*ip)));
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: afpacket-send IFNAME SECONDS [SIZE] [DST-MAC] [SRC-MAC]\n");
		return 2;
	}
	const char *ifname = argv[1];
	double duration = atof(argv[2]);
	size_t size = argc > 3 ? (size_t)atoi(argv[3]) : 64;
	uint8_t dst[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	uint8_t src[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x03};
	if ((argc > 4 && parse_mac(argv[4], dst) != 0) || (argc > 5 && parse_mac(argv[5], src) != 0)) {
		fprintf(stderr, "afpacket-send: bad MAC address\n");
		return 2;
	}
	if (duration <= 0 || size < 60 || size > MAX_FRAME) {
		fprintf(stderr, "afpacket-send: SECONDS > 0 and SIZE 60...%d\n", MAX_FRAME);
		return 2;
	}
	unsigned ifindex = if_nametoindex(ifname);
	if (ifindex == 0) {
		fprintf(stderr, "afpacket-send: no interface %s: %s\n", ifname, strerror(errno));
		return 1;
	}
	/* Protocol 0: this socket receives nothing, it only sends. */
	int fd = socket(AF_PACKET, SOCK_RAW, 0);
	if (fd < 0) {
		fprintf(stderr, "afpacket-send: socket(AF_PACKET): %s\n", strerror(errno));
		return 1;
	}
	int one = 1;
	if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) < 0) {
		fprintf(stderr, "afpacket-send: PACKET_QDISC_BYPASS: %s\n", strerror(errno));
		return 1;
	}
	struct sockaddr_ll addr = {
		.sll_family = AF_PACKET,
		.sll_protocol = 0,
		.sll_ifindex = (int)ifindex,
	};
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		fprintf(stderr, "afpacket-send: bind %s: %s\n", ifname, strerror(errno));
		return 1;
	}

	static uint8_t frame[MAX_FRAME];
	build_frame(frame, size, dst, src);
	struct iovec iov = {.iov_base = frame, .iov_len = size};
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	printf("READY ifindex=%u\n", ifindex);
	fflush(stdout);

	uint64_t sent = 0, errors = 0, mark_sent = 0;
	int last_errno = 0;
	double start = now_seconds(), mark = start, next = start + 1.0, end = start + duration;
	while (!stop_requested) {
		int n = sendmmsg(fd, msgs, BATCH, 0);
		if (n > 0) {
			sent += (uint64_t)n;
		} else if (n < 0) {
			if (errno != EINTR) {
				/* ENOBUFS when the device queue is full; ENXIO/ENETDOWN when it goes away. */
				errors++;
				last_errno = errno;
				if (errno == ENXIO || errno == ENETDOWN || errno == ENODEV)
					break;
			}
		}
		double t = now_seconds();
		if (t >= next) {
			printf("PPS t=%.3f tx=%.0f\n", t - start, (double)(sent - mark_sent) / (t - mark));
			fflush(stdout);
			mark_sent = sent;
			mark = t;
			next += 1.0;
		}
		if (t >= end)
			break;
	}
	printf("TOTAL tx=%llu errors=%llu last_error=%s seconds=%.3f\n", (unsigned long long)sent,
	       (unsigned long long)errors, last_errno ? strerror(last_errno) : "none",
	       now_seconds() - start);
	fflush(stdout);
	close(fd);
	return 0;
}
