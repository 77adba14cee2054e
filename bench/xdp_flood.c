/*
 * Kernel CPU per flood packet for each way of dropping it, with live frames on a veth pair
 * in a private network namespace (created here, gone when the process exits).
 *
 * bpf/xdp_flood_gen runs under BPF_PROG_RUN in live-frames mode on one end (A) and sends
 * every frame out of A with XDP_TX; the filter under test sees it on the other end (B). The
 * process is pinned to one CPU and the veth NAPI of B runs inline, in the softirq that ends
 * each batch, so the thread's CPU time over a run is generator + delivery + filter. The
 * generator alone (B has no XDP program and no NAPI: veth drops the frames at transmit) is
 * measured the same way and subtracted. Rows are measured in alternating rounds and the
 * fastest kept: interference from the rest of the host only ever adds time.
 *
 * Frames: 54-byte TCP SYNs and 60-byte UDP datagrams to B's address, from one spoofed
 * source or from `sources` distinct ones.
 *
 * usage: xdp_flood [packets per run] [rounds] [cpu] [quick]   (root; defaults 2000000 3 1)
 * "quick" runs only the generator, bare-drop and single-source shield rows (the ratio the
 * drop cache is about); the last column is then the median ratio over the rounds, each
 * round's shield run divided by the same round's bare drop.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "edge/edge_internal.h"
#include "maps/xdp_shield.h"
#include "xdp_floor.skel.h"
#include "xdp_flood_gen.skel.h"
#include "xdp_shield.skel.h"

#define IF_A "xfa0"
#define IF_B "xfb0"
#define B_ADDR "198.18.250.1"
#define SPOOF "198.18.251.7"
#define MANY_BASE 0xc6130000u /* 198.19.0.0: 100,000 sources from here */
#define MANY 100000
#define MAX_ROUNDS 15

struct frame {
	uint8_t b[64];
	size_t len;
};

static uint16_t csum(const void *p, size_t n, uint32_t sum)
{
	const uint8_t *b = p;

	for (; n > 1; n -= 2, b += 2)
		sum += (b[0] << 8) | b[1];
	if (n)
		sum += b[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* Ethernet + IPv4 + TCP SYN (54 bytes) or UDP with 18 payload bytes (60), checksums valid. */
static struct frame make_frame(const uint8_t dmac[6], bool syn)
{
	struct frame f = {.len = syn ? 54 : 60};
	uint8_t *ip = f.b + 14, *l4 = ip + 20;
	size_t l4_len = f.len - 34;
	uint8_t pseudo[12];
	uint16_t c;

	memcpy(f.b, dmac, 6);
	f.b[6] = 0x02; /* locally administered source MAC */
	f.b[12] = 0x08;
	ip[0] = 0x45;
	ip[3] = 20 + l4_len;
	ip[8] = 64;
	ip[9] = syn ? IPPROTO_TCP : IPPROTO_UDP;
	inet_pton(AF_INET, SPOOF, ip + 12);
	inet_pton(AF_INET, B_ADDR, ip + 16);
	c = csum(ip, 20, 0);
	ip[10] = c >> 8;
	ip[11] = c & 0xff;
	l4[0] = 0x9c;
	l4[1] = 0x40;
	l4[2] = 0x1f; /* port 8080 */
	l4[3] = 0x90;
	if (syn) {
		l4[12] = 5 << 4;
		l4[13] = 0x02;
		l4[14] = 0xff; /* window */
		memcpy(pseudo, ip + 12, 8);
		pseudo[8] = 0;
		pseudo[9] = IPPROTO_TCP;
		pseudo[10] = 0;
		pseudo[11] = l4_len;
		c = csum(l4, l4_len, (uint16_t)~csum(pseudo, 12, 0));
		l4[16] = c >> 8;
		l4[17] = c & 0xff;
	} else {
		l4[4] = 0;
		l4[5] = l4_len; /* UDP checksum 0: none, stays valid when the source changes */
	}
	return f;
}

static void sh(const char *cmd)
{
	if (system(cmd)) {
		fprintf(stderr, "xdp_flood: `%s` failed\n", cmd);
		exit(1);
	}
}

/*
 * CPU time of this thread: the scheduler's exact runtime, which (without IRQ time
 * accounting, Debian's default) includes the softirq work done while the thread ran, i.e.
 * B's NAPI and its filter, and excludes other tasks sharing the CPU.
 */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

struct row {
	const char *name;
	bool syn;
	int sources;
	bool budget; /* the shield with edge's default new-source budget (50000/s, 50000) */
	/* Puts the filter on B; returns 0. */
	int (*setup)(const struct row *r);
	void (*teardown)(const struct row *r);
	double ns[MAX_ROUNDS];
	double raw[MAX_ROUNDS]; /* unsorted, generator not subtracted */
};

static struct xdp_shield_bpf *shield;
static struct xdp_floor_bpf *floor_prog;
static struct xdp_flood_gen_bpf *gen_one, *gen_many;
static int ifindex_a, ifindex_b, cpu;

static void xdp_on_b(int prog_fd)
{
	if (bpf_xdp_attach(ifindex_b, prog_fd, XDP_FLAGS_DRV_MODE, NULL)) {
		fprintf(stderr, "xdp_flood: attach on %s: %s\n", IF_B, strerror(errno));
		exit(1);
	}
}

static void xdp_off_b(const struct row *r)
{
	bpf_xdp_detach(ifindex_b, XDP_FLAGS_DRV_MODE, NULL);
}

static int setup_none(const struct row *r)
{
	return 0;
}

static int setup_floor(const struct row *r)
{
	xdp_on_b(bpf_program__fd(floor_prog->progs.xdp_floor));
	return 0;
}

static void configure_shield(bool budget);

static int setup_shield(const struct row *r)
{
	configure_shield(r->budget);
	xdp_on_b(bpf_program__fd(shield->progs.xdp_shield));
	return 0;
}

/* The stack receives: veth needs GRO on to run its NAPI (and build skbs) without XDP. */
static int setup_stack(const struct row *r)
{
	sh("ethtool -K " IF_B " gro on >/dev/null");
	return 0;
}

static void teardown_stack(const struct row *r)
{
	sh("ethtool -K " IF_B " gro off >/dev/null");
}

static int setup_iptables(const struct row *r)
{
	setup_stack(r);
	sh(r->sources > 1 ? "iptables -t raw -A PREROUTING -i " IF_B " -s 198.19.0.0/15 -j DROP"
			  : "iptables -t raw -A PREROUTING -i " IF_B " -s " SPOOF " -j DROP");
	return 0;
}

static void teardown_iptables(const struct row *r)
{
	sh("iptables -t raw -F PREROUTING");
	teardown_stack(r);
}

static int setup_nft(const struct row *r)
{
	setup_stack(r);
	sh("nft add table netdev xflood && nft add chain netdev xflood in "
	   "'{ type filter hook ingress device " IF_B " priority -500; }' && "
	   "nft add rule netdev xflood in ip saddr 198.19.0.0/15 drop && "
	   "nft add rule netdev xflood in ip saddr " SPOOF " drop");
	return 0;
}

static void teardown_nft(const struct row *r)
{
	sh("nft delete table netdev xflood");
	teardown_stack(r);
}

static struct row rows[] = {
    {.name = "generator only (subtracted from every row)", .syn = true, .sources = 1, .setup = setup_none, .teardown = NULL},
    {.name = "`return XDP_DROP` (bpf/xdp_floor), SYN", .syn = true, .sources = 1, .setup = setup_floor, .teardown = xdp_off_b},
    {.name = "`return XDP_DROP`, UDP", .syn = false, .sources = 1, .setup = setup_floor, .teardown = xdp_off_b},
    {.name = "xgate shield, rate-limit path, SYN", .syn = true, .sources = 1, .setup = setup_shield, .teardown = xdp_off_b},
    {.name = "xgate shield, rate-limit path, UDP", .syn = false, .sources = 1, .setup = setup_shield, .teardown = xdp_off_b},
    {.name = "shield, no new-source budget, SYN, 100k sources", .syn = true, .sources = MANY, .setup = setup_shield, .teardown = xdp_off_b},
    {.name = "shield, no new-source budget, UDP, 100k sources", .syn = false, .sources = MANY, .setup = setup_shield, .teardown = xdp_off_b},
    {.name = "shield + new-source budget, SYN, 100k sources", .syn = true, .sources = MANY, .budget = true, .setup = setup_shield, .teardown = xdp_off_b},
    {.name = "shield + new-source budget, UDP, 100k sources", .syn = false, .sources = MANY, .budget = true, .setup = setup_shield, .teardown = xdp_off_b},
    {.name = "iptables raw PREROUTING drop, SYN", .syn = true, .sources = 1, .setup = setup_iptables, .teardown = teardown_iptables},
    {.name = "iptables raw PREROUTING drop, UDP", .syn = false, .sources = 1, .setup = setup_iptables, .teardown = teardown_iptables},
    {.name = "nft netdev ingress drop, SYN", .syn = true, .sources = 1, .setup = setup_nft, .teardown = teardown_nft},
    {.name = "nft netdev ingress drop, UDP", .syn = false, .sources = 1, .setup = setup_nft, .teardown = teardown_nft},
    {.name = "no filter (stack: SYN cookies), SYN", .syn = true, .sources = 1, .setup = setup_stack, .teardown = teardown_stack},
    {.name = "no filter (stack: ICMP unreachable), UDP", .syn = false, .sources = 1, .setup = setup_stack, .teardown = teardown_stack},
};
#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* ns of busy CPU per packet for one run of `packets` frames. */
static double run_once(const struct row *r, const struct frame *f, unsigned int packets)
{
	struct xdp_flood_gen_bpf *g = r->sources > 1 ? gen_many : gen_one;
	struct xdp_md ctx = {.data_end = f->len, .ingress_ifindex = ifindex_a};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f->b, .data_size_in = f->len,
		    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = packets,
		    .flags = BPF_F_TEST_XDP_LIVE_FRAMES);
	uint64_t before;

	before = thread_cpu_ns();
	if (bpf_prog_test_run_opts(bpf_program__fd(g->progs.xdp_flood_gen), &opts)) {
		fprintf(stderr, "xdp_flood: live-frames run: %s\n", strerror(errno));
		exit(1);
	}
	return (double)(thread_cpu_ns() - before) / packets;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * The shield's single-source rows against the bare drop, round by round (both minus the
 * generator of that round), median over the rounds: a ratio from runs seconds apart, less
 * sensitive to the host's load drifting than the ratio of two minima.
 */
static void print_median_ratios(int rounds)
{
	static const size_t shield_rows[] = {3, 4};
	size_t j;
	int k;

	printf("median over %d rounds of (shield - generator) / (bare drop - generator), "
	       "same round:\n",
	       rounds);
	for (j = 0; j < 2; j++) {
		const struct row *r = &rows[shield_rows[j]], *fl = &rows[r->syn ? 1 : 2];
		double ratio[MAX_ROUNDS], median;

		for (k = 0; k < rounds; k++)
			ratio[k] = (r->raw[k] - rows[0].raw[k]) / (fl->raw[k] - rows[0].raw[k]);
		qsort(ratio, rounds, sizeof(double), cmp_double);
		median = rounds % 2 ? ratio[rounds / 2]
				    : (ratio[rounds / 2 - 1] + ratio[rounds / 2]) / 2;
		printf("  %-40s %.2fx (min %.2fx, max %.2fx)\n", r->name, median, ratio[0],
		       ratio[rounds - 1]);
	}
}

/* Without the budget every new source is tracked (new_sources 0 = unlimited). */
static void configure_shield(bool budget)
{
	struct edge_config cfg = {
	    .syn = {1, 1}, /* one SYN a second per source: the flood is all but dropped */
	    .udp = {1, 1},
	    .packets = {1000000000, 1000000000},
	    .new_sources = {budget ? 50000 : 0, budget ? 50000 : 0},
	};

	if (edge_write_config(bpf_map__fd(shield->maps.config), &cfg, 0)) {
		fprintf(stderr, "xdp_flood: cannot configure the shield\n");
		exit(1);
	}
}

static struct xdp_flood_gen_bpf *load_gen(unsigned int sources)
{
	struct xdp_flood_gen_bpf *g = xdp_flood_gen_bpf__open();

	if (!g)
		return NULL;
	g->rodata->sources = sources;
	g->rodata->base_src = MANY_BASE;
	if (xdp_flood_gen_bpf__load(g)) {
		xdp_flood_gen_bpf__destroy(g);
		return NULL;
	}
	return g;
}

/* sysfs still shows the host's namespace after unshare(): ask the interface itself. */
static int read_mac(const char *ifname, uint8_t mac[6])
{
	struct ifreq ifr = {0};
	int fd = socket(AF_INET, SOCK_DGRAM, 0), ret;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ret = fd < 0 ? -1 : ioctl(fd, SIOCGIFHWADDR, &ifr);
	if (fd >= 0)
		close(fd);
	if (ret) {
		fprintf(stderr, "xdp_flood: cannot read the MAC of %s: %s\n", ifname, strerror(errno));
		return -1;
	}
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	return 0;
}

static void setup_net(void)
{
	cpu_set_t set;

	if (unshare(CLONE_NEWNET)) {
		perror("xdp_flood: unshare(CLONE_NEWNET)");
		exit(1);
	}
	sh("ip link set lo up && ip link add " IF_A " type veth peer name " IF_B " && "
	   "ip addr add " B_ADDR "/24 dev " IF_B " && ip link set " IF_A " up && "
	   "ip link set " IF_B " up && ethtool -K " IF_B " gro off >/dev/null");
	ifindex_a = if_nametoindex(IF_A);
	ifindex_b = if_nametoindex(IF_B);
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		perror("xdp_flood: sched_setaffinity");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	unsigned int packets = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000000;
	int rounds = argc > 2 ? atoi(argv[2]) : 3;
	bool quick = argc > 4 && !strcmp(argv[4], "quick");
	size_t nrows = quick ? 5 : NROWS;
	uint8_t dmac[6];
	struct frame syn, udp;
	double floor_syn = 0, floor_udp = 0, ipt_syn = 0, ipt_udp = 0;
	size_t i;
	int k;

	cpu = argc > 3 ? atoi(argv[3]) : 1;
	if (!packets || rounds < 1 || rounds > MAX_ROUNDS) {
		fprintf(stderr, "usage: %s [packets] [rounds 1-%d] [cpu]\n", argv[0], MAX_ROUNDS);
		return 2;
	}
	setup_net();
	shield = xdp_shield_bpf__open_and_load();
	floor_prog = xdp_floor_bpf__open_and_load();
	gen_one = load_gen(1);
	gen_many = load_gen(MANY);
	if (!shield || !floor_prog || !gen_one || !gen_many) {
		fprintf(stderr, "xdp_flood: cannot load the BPF programs (root needed)\n");
		return 1;
	}
	if (read_mac(IF_B, dmac))
		return 1;
	syn = make_frame(dmac, true);
	udp = make_frame(dmac, false);
	for (k = 0; k < rounds; k++) {
		for (i = 0; i < nrows; i++) {
			struct row *r = &rows[i];

			if (r->setup(r))
				return 1;
			r->ns[k] = r->raw[k] = run_once(r, r->syn ? &syn : &udp, packets);
			if (r->teardown)
				r->teardown(r);
		}
	}
	printf("live frames on a veth pair, %u packets per run, best of %d alternating rounds, "
	       "CPU %d\n\n",
	       packets, rounds, cpu);
	printf("| %-50s | %9s | %12s | %12s |\n", "filter", "ns/packet", "vs XDP_DROP",
	       "vs iptables");
	printf("|%s|-----------|--------------|--------------|\n",
	       "----------------------------------------------------");
	for (i = 0; i < nrows; i++) {
		qsort(rows[i].ns, rounds, sizeof(double), cmp_double);
		if (i)
			rows[i].ns[0] -= rows[0].ns[0];
	}
	floor_syn = rows[1].ns[0];
	floor_udp = rows[2].ns[0];
	ipt_syn = quick ? 0 : rows[9].ns[0];
	ipt_udp = quick ? 0 : rows[10].ns[0];
	for (i = 0; i < nrows; i++) {
		double ns = rows[i].ns[0], fl = rows[i].syn ? floor_syn : floor_udp;
		double ipt = rows[i].syn ? ipt_syn : ipt_udp;

		if (!i) {
			printf("| %-50s | %9.1f | %12s | %12s |\n", rows[i].name, ns, "", "");
			continue;
		}
		printf("| %-50s | %9.1f | %11.2fx | %11.2fx |\n", rows[i].name, ns, ns / fl,
		       ipt / ns);
	}
	printf("\n(vs XDP_DROP: cost relative to a bare drop; vs iptables: how many times "
	       "cheaper than the raw-table drop)\n\n");
	print_median_ratios(rounds);
	return 0;
}
