/*
 * dpdk-pair-frontend: one process, one lcore, two virtio-user ports — the two
 * "guests" of the W3 benchmark (tools/bench-switch.py).
 *
 *   port 0 (guest A, MAC A) --> switch --> port 1 (guest B, MAC B)
 *
 * It first sends a few frames FROM port 1 with source MAC B (so a learning
 * switch puts B behind the port it arrived on), waits, then transmits bursts of
 * UDP frames (A -> B, 198.18.0.1 -> 198.18.0.2) on port 0 and receives and
 * frees them on port 1, printing per-second rates and a final total.
 *
 * Two busy-polling front-end processes on a 2-CPU machine starve the back-end,
 * hence both guests in one loop on one core.
 *
 * The transmit pool's mbufs all carry the frame already (written once, when the
 * pool is created): sending is an allocation and a length, no copy, so the
 * generator is not the bottleneck. Received mbufs come from a second pool, so
 * they never overwrite a prebuilt frame.
 *
 * Build (tools/bench-switch.py does this):
 *   cc -O2 -o dpdk-pair-frontend tools/dpdk-pair-frontend.c $(pkg-config --cflags --libs libdpdk)
 * Run:
 *   dpdk-pair-frontend EAL-ARGS --vdev net_virtio_user0,path=A --vdev net_virtio_user1,path=B \
 *       -- --size 64 --duration 10 [--learn 8] [--burst 32]
 * Output (one line each, space-separated key=value):
 *   READY
 *   LEARN sent=N
 *   PPS t=SECONDS rx=PPS tx=PPS            (port 1 rx, port 0 tx; once per second)
 *   TOTAL rx=N tx=N tx_refused=N stray_rx0=N seconds=S
 */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_udp.h>

#define PORT_A 0
#define PORT_B 1
#define RING_SIZE 1024
#define MAX_BURST 256
#define TX_POOL_SIZE 8191
#define RX_POOL_SIZE 8191
#define POOL_CACHE 256

/* The same MACs and addresses bench-vhost.py's generator uses. */
static const struct rte_ether_addr mac_a = {{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}};
static const struct rte_ether_addr mac_b = {{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}};
#define IP_A RTE_IPV4(198, 18, 0, 1)
#define IP_B RTE_IPV4(198, 18, 0, 2)

static volatile bool stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = true;
}

static void die(const char *what)
{
	fprintf(stderr, "dpdk-pair-frontend: %s\n", what);
	fflush(stderr);
	rte_exit(EXIT_FAILURE, "%s\n", what);
}

/* Writes an Ethernet/IPv4/UDP frame of `size` bytes (no FCS) at `p`. */
static void build_frame(uint8_t *p, uint16_t size, const struct rte_ether_addr *dst,
			const struct rte_ether_addr *src, uint32_t ip_src, uint32_t ip_dst)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)p;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
	uint16_t ip_len = size - sizeof(*eth);

	memset(p, 0, size);
	rte_ether_addr_copy(dst, &eth->dst_addr);
	rte_ether_addr_copy(src, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16(ip_len);
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = rte_cpu_to_be_32(ip_src);
	ip->dst_addr = rte_cpu_to_be_32(ip_dst);
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	udp->src_port = rte_cpu_to_be_16(9);
	udp->dst_port = rte_cpu_to_be_16(9);
	udp->dgram_len = rte_cpu_to_be_16(ip_len - sizeof(*ip));
}

struct prefill {
	uint16_t size;
};

/* rte_mempool_obj_iter callback: the frame goes into every mbuf once. */
static void prefill_mbuf(struct rte_mempool *mp, void *arg, void *obj, unsigned idx)
{
	(void)mp;
	(void)idx;
	const struct prefill *pf = arg;
	struct rte_mbuf *m = obj;
	build_frame(rte_pktmbuf_mtod(m, uint8_t *), pf->size, &mac_b, &mac_a, IP_A, IP_B);
}

static void setup_port(uint16_t port, struct rte_mempool *rx_pool)
{
	struct rte_eth_conf conf;
	char msg[128];
	int rc;

	memset(&conf, 0, sizeof(conf));
	if ((rc = rte_eth_dev_configure(port, 1, 1, &conf)) < 0) {
		snprintf(msg, sizeof(msg), "port %u: configure: %s", port, strerror(-rc));
		die(msg);
	}
	uint16_t nb_rx = RING_SIZE, nb_tx = RING_SIZE;
	if ((rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rx, &nb_tx)) < 0) {
		snprintf(msg, sizeof(msg), "port %u: ring sizes: %s", port, strerror(-rc));
		die(msg);
	}
	if ((rc = rte_eth_rx_queue_setup(port, 0, nb_rx, rte_eth_dev_socket_id(port), NULL,
					 rx_pool)) < 0) {
		snprintf(msg, sizeof(msg), "port %u: rx queue: %s", port, strerror(-rc));
		die(msg);
	}
	if ((rc = rte_eth_tx_queue_setup(port, 0, nb_tx, rte_eth_dev_socket_id(port), NULL)) < 0) {
		snprintf(msg, sizeof(msg), "port %u: tx queue: %s", port, strerror(-rc));
		die(msg);
	}
	if ((rc = rte_eth_dev_start(port)) < 0) {
		snprintf(msg, sizeof(msg), "port %u: start: %s", port, strerror(-rc));
		die(msg);
	}
}

static uint64_t drain(uint16_t port)
{
	struct rte_mbuf *pkts[MAX_BURST];
	uint64_t n = 0;
	uint16_t got;
	while ((got = rte_eth_rx_burst(port, 0, pkts, MAX_BURST)) > 0) {
		rte_pktmbuf_free_bulk(pkts, got);
		n += got;
	}
	return n;
}

/* Sends `count` frames B -> broadcast from port 1 so a learning switch learns B. */
static uint64_t send_learning_frames(struct rte_mempool *pool, unsigned count)
{
	static const struct rte_ether_addr bcast = {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
	uint64_t sent = 0;
	for (unsigned i = 0; i < count; i++) {
		struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
		if (m == NULL)
			die("learning frame: mbuf pool empty");
		uint8_t *p = (uint8_t *)rte_pktmbuf_append(m, 64);
		if (p == NULL)
			die("learning frame: no room in an mbuf");
		build_frame(p, 64, &bcast, &mac_b, IP_B, IP_A);
		uint16_t ok = 0;
		for (int tries = 0; tries < 1000 && ok == 0; tries++)
			ok = rte_eth_tx_burst(PORT_B, 0, &m, 1);
		if (ok == 0)
			rte_pktmbuf_free(m);
		sent += ok;
	}
	return sent;
}

static void usage(void)
{
	fprintf(stderr, "usage: dpdk-pair-frontend EAL-ARGS -- --size N --duration S "
			"[--learn N] [--burst N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int eal = rte_eal_init(argc, argv);
	if (eal < 0)
		die("EAL init failed");
	argc -= eal;
	argv += eal;

	unsigned size = 64, burst = 32, learn = 8;
	double duration = 10;
	static const struct option opts[] = {
		{"size", required_argument, NULL, 's'},
		{"duration", required_argument, NULL, 'd'},
		{"learn", required_argument, NULL, 'l'},
		{"burst", required_argument, NULL, 'b'},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': size = (unsigned)atoi(optarg); break;
		case 'd': duration = atof(optarg); break;
		case 'l': learn = (unsigned)atoi(optarg); break;
		case 'b': burst = (unsigned)atoi(optarg); break;
		default: usage();
		}
	}
	if (size < 60 || size > 1518 || burst < 1 || burst > MAX_BURST || duration <= 0)
		usage();
	if (rte_eth_dev_count_avail() != 2)
		die("needs exactly two ports (two net_virtio_user vdevs)");

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	/* Data room: the frame plus the headroom virtio pushes its header into. */
	uint16_t room = RTE_PKTMBUF_HEADROOM + 2048;
	struct rte_mempool *tx_pool = rte_pktmbuf_pool_create("tx", TX_POOL_SIZE, POOL_CACHE, 0, room,
							      rte_socket_id());
	struct rte_mempool *rx_pool = rte_pktmbuf_pool_create("rx", RX_POOL_SIZE, POOL_CACHE, 0, room,
							      rte_socket_id());
	struct rte_mempool *misc_pool = rte_pktmbuf_pool_create("misc", 255, 0, 0, room,
								rte_socket_id());
	if (tx_pool == NULL || rx_pool == NULL || misc_pool == NULL)
		die("mbuf pool creation failed (give EAL more memory: -m)");
	struct prefill pf = {.size = (uint16_t)size};
	rte_mempool_obj_iter(tx_pool, prefill_mbuf, &pf);

	setup_port(PORT_A, rx_pool);
	setup_port(PORT_B, rx_pool);
	printf("READY\n");
	fflush(stdout);

	/* Let both back-end rings come up before the first frame. */
	rte_delay_ms(200);
	uint64_t learned = send_learning_frames(misc_pool, learn);
	rte_delay_ms(200);
	uint64_t stray0 = drain(PORT_A);
	drain(PORT_B);
	printf("LEARN sent=%lu\n", (unsigned long)learned);
	fflush(stdout);

	const uint64_t hz = rte_get_tsc_hz();
	const uint64_t start = rte_get_tsc_cycles();
	const uint64_t end = start + (uint64_t)(duration * (double)hz);
	uint64_t next_report = start + hz;
	uint64_t rx = 0, tx = 0, refused = 0, rx_mark = 0, tx_mark = 0, mark = start;
	struct rte_mbuf *out[MAX_BURST], *in[MAX_BURST];

	while (!stop_requested) {
		if (rte_pktmbuf_alloc_bulk(tx_pool, out, burst) == 0) {
			for (unsigned i = 0; i < burst; i++) {
				out[i]->data_len = (uint16_t)size;
				out[i]->pkt_len = size;
			}
			uint16_t sent = rte_eth_tx_burst(PORT_A, 0, out, (uint16_t)burst);
			if (sent < burst) {
				rte_pktmbuf_free_bulk(out + sent, burst - sent);
				refused += burst - sent;
			}
			tx += sent;
		}
		uint16_t got = rte_eth_rx_burst(PORT_B, 0, in, MAX_BURST);
		if (got > 0) {
			rte_pktmbuf_free_bulk(in, got);
			rx += got;
		}
		/* Anything a switch floods back to A must not fill A's ring. */
		got = rte_eth_rx_burst(PORT_A, 0, in, MAX_BURST);
		if (got > 0) {
			rte_pktmbuf_free_bulk(in, got);
			stray0 += got;
		}

		uint64_t now = rte_get_tsc_cycles();
		if (now >= next_report) {
			double secs = (double)(now - mark) / (double)hz;
			printf("PPS t=%.3f rx=%.0f tx=%.0f\n", (double)(now - start) / (double)hz,
			       (double)(rx - rx_mark) / secs, (double)(tx - tx_mark) / secs);
			fflush(stdout);
			rx_mark = rx;
			tx_mark = tx;
			mark = now;
			next_report += hz;
		}
		if (now >= end)
			break;
	}
	double elapsed = (double)(rte_get_tsc_cycles() - start) / (double)hz;
	/* Frames still in flight arrive after the loop; count them, but not in any rate. */
	rte_delay_ms(50);
	uint64_t late = drain(PORT_B);
	printf("TOTAL rx=%lu tx=%lu tx_refused=%lu stray_rx0=%lu late_rx=%lu seconds=%.3f\n",
	       (unsigned long)rx, (unsigned long)tx, (unsigned long)refused, (unsigned long)stray0,
	       (unsigned long)late, elapsed);
	fflush(stdout);

	rte_eth_dev_stop(PORT_A);
	rte_eth_dev_stop(PORT_B);
	rte_eth_dev_close(PORT_A);
	rte_eth_dev_close(PORT_B);
	rte_eal_cleanup();
	return 0;
}
