/*
 * tap-raw: what one core gets through a TAP with plain read()/write() and
 * nothing else — the ceiling the W4 benchmark (tools/bench-switch.py) sets
 * Ferry and DPDK against.
 *
 * The TAP is opened the way a vhost back-end opens it: IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR with a 12-byte virtio-net header (TUNSETVNETHDRSZ), non-blocking,
 * brought up. It is created here and, not being persistent, disappears when
 * this process exits.
 *
 *   tap-raw write TAPNAME SECONDS [SIZE]
 *       writes one prebuilt frame (header + SIZE bytes, UDP 198.18.0.1 -> .2 to
 *       02:00:00:00:00:00, a MAC the kernel drops as not its own once counted)
 *       in a loop: guest -> TAP without a guest.
 *   tap-raw read TAPNAME SECONDS
 *       busy-polls read() and counts frames; something else (afpacket-send)
 *       feeds the TAP from the kernel side: TAP -> guest without a guest.
 *       The clock starts at the first frame.
 * Output (space-separated key=value):
 *   READY ifindex=N
 *   PPS t=SECONDS rx=PPS | tx=PPS      once per second
 *   TOTAL frames=N errors=N seconds=S
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define VNET_HDR 12
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

static int fail(const char *what)
{
	fprintf(stderr, "tap-raw: %s: %s\n", what, strerror(errno));
	return 1;
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

/* The frame testpmd's txonly sends: 02:00:00:00:00:00 <- 02:00:00:00:00:01, 198.18.0.1 -> .2. */
static void build_frame(uint8_t *p, size_t size)
{
	static const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x00};
	static const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x01};
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
	ip->saddr = htonl(0xc6120001);
	ip->daddr = htonl(0xc6120002);
	ip->check = ip_checksum(ip, sizeof(*ip));
	udp->source = htons(9);
	udp->dest = htons(9);
	udp->len = htons((uint16_t)(ip_len - sizeof(*ip)));
}

static int open_tap(const char *name)
{
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return -1;
	int hdr = VNET_HDR;
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0)
		return -1;
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -1;
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
		return -1;
	close(sock);
	return fd;
}

int main(int argc, char **argv)
{
	if (argc < 4 || (strcmp(argv[1], "write") != 0 && strcmp(argv[1], "read") != 0)) {
		fprintf(stderr, "usage: tap-raw write TAPNAME SECONDS [SIZE] | read TAPNAME SECONDS\n");
		return 2;
	}
	int writing = strcmp(argv[1], "write") == 0;
	const char *name = argv[2];
	double duration = atof(argv[3]);
	size_t size = argc > 4 ? (size_t)atoi(argv[4]) : 64;
	if (duration <= 0 || size < 60 || size > MAX_FRAME || strlen(name) >= IFNAMSIZ) {
		fprintf(stderr, "tap-raw: SECONDS > 0, SIZE 60...%d, a name of < %d bytes\n", MAX_FRAME,
			IFNAMSIZ);
		return 2;
	}
	int fd = open_tap(name);
	if (fd < 0)
		return fail(name);

	static uint8_t buf[VNET_HDR + MAX_FRAME + 64];
	memset(buf, 0, VNET_HDR); /* no offloads: flags 0, GSO_NONE, num_buffers 0 */
	build_frame(buf + VNET_HDR, size);

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	printf("READY ifindex=%u\n", if_nametoindex(name));
	fflush(stdout);

	uint64_t frames = 0, errors = 0, mark_frames = 0;
	int last_errno = 0;
	double start = now_seconds(), mark = start, next = start + 1.0, end = start + duration;
	int started = writing;
	while (!stop_requested) {
		ssize_t n = writing ? write(fd, buf, VNET_HDR + size) : read(fd, buf, sizeof(buf));
		if (n > 0) {
			frames++;
			if (!started) {
				started = 1;
				start = mark = now_seconds();
				next = start + 1.0;
				end = start + duration;
			}
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			errors++;
			last_errno = errno;
		}
		if (!started) {
			continue;
		}
		/* A clock read per frame costs ~20 ns against a ~1 us syscall. */
		double t = now_seconds();
		if (t >= next) {
			printf("PPS t=%.3f %s=%.0f\n", t - start, writing ? "tx" : "rx",
			       (double)(frames - mark_frames) / (t - mark));
			fflush(stdout);
			mark_frames = frames;
			mark = t;
			next += 1.0;
		}
		if (t >= end)
			break;
	}
	printf("TOTAL frames=%llu errors=%llu last_error=%s seconds=%.3f\n",
	       (unsigned long long)frames, (unsigned long long)errors,
	       last_errno ? strerror(last_errno) : "none", now_seconds() - start);
	fflush(stdout);
	close(fd);
	return 0;
}
