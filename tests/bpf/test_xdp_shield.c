/*
 * bpf/xdp_shield with crafted frames through bpf_prog_test_run_opts: every verdict reason
 * with a passing and a dropping case, malformed headers, VLAN, IPv6 extension chains,
 * deny/allow precedence, buckets and their refill (time advanced through the config map's
 * clock_offset_ns instead of sleeping), the reload rule of the lists, the xgatectl map
 * operations, and the loader (edge_start/edge_apply/edge_stop on a veth pair inside a
 * private network namespace). Runs as root; maps are pinned under a unique
 * /sys/fs/bpf/xgate-test-<pid> that is removed at the end.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/magic.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "unit/check.h"
#include "common/log.h"
#include "edge/edge_internal.h"
#include "maps/xdp_shield.h"
#include "xdp_shield.skel.h"

#define S 1000000000ULL

static struct xdp_shield_bpf *skel;
static char pin_dir[128];
static int prog_fd;
static uint64_t clock_offset;

/* The shield config the tests start from; individual tests change and restore it. */
static uint16_t test_ports[] = {80, 443};
static struct edge_config base_cfg = {
    .port_policy = true,
    .tcp_ports = test_ports,
    .ntcp_ports = 2,
    .syn = {5, 5},
    .packets = {1000, 1000},
    .udp = {3, 3},
    .icmp = {2, 2},
    .keep_operator_entries = true,
};

static void push_config(const struct edge_config *c)
{
	CHECK_EQ(edge_write_config(bpf_map__fd(skel->maps.config), c, clock_offset), 0);
}

static void advance_clock(uint64_t ns)
{
	clock_offset += ns;
	push_config(&base_cfg);
}

/* ---- frame builder ---- */

enum { F_ARP = 0, F_V4 = 4, F_V6 = 6 };

struct spec {
	int vlans;
	int family;
	const char *src;
	uint8_t l4;
	uint8_t tcp_flags;
	uint16_t dport;
	uint8_t icmp_type;
	uint8_t hop_limit;
	const uint8_t *ext; /* IPv6 extension headers, ext_first = first next-header */
	size_t ext_len;
	uint8_t ext_first;
};

struct frame {
	uint8_t b[1024];
	size_t len;
	size_t l3; /* offset of the IP header */
	size_t l4; /* offset of the L4 header */
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static size_t build_l4(uint8_t *p, const struct spec *s)
{
	switch (s->l4) {
	case IPPROTO_TCP:
		put16(p, 40000);
		put16(p + 2, s->dport);
		p[12] = 5 << 4;
		p[13] = s->tcp_flags;
		put16(p + 14, 65535);
		return 20;
	case IPPROTO_UDP:
		put16(p, 53);
		put16(p + 2, s->dport);
		put16(p + 4, 8 + 12);
		return 8 + 12;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		p[0] = s->icmp_type;
		return 8 + 16;
	}
	return 0;
}

static void build(struct frame *f, const struct spec *s)
{
	uint8_t *p = f->b;
	size_t off = 12, l4len;
	int i;

	memset(f, 0, sizeof(*f));
	memset(p, 0xaa, 12);
	for (i = 0; i < s->vlans; i++) {
		put16(p + off, i == 0 && s->vlans > 1 ? 0x88a8 : 0x8100);
		put16(p + off + 2, 100 + i);
		off += 4;
	}
	put16(p + off, s->family == F_V4 ? ETH_P_IP : s->family == F_V6 ? ETH_P_IPV6 : ETH_P_ARP);
	off += 2;
	f->l3 = off;
	if (s->family == F_ARP) {
		f->len = off + 28;
		return;
	}
	if (s->family == F_V4) {
		p[off] = 0x45;
		p[off + 8] = 64;
		p[off + 9] = s->l4;
		inet_pton(AF_INET, s->src, p + off + 12);
		inet_pton(AF_INET, "198.18.0.1", p + off + 16);
		f->l4 = off + 20;
		l4len = build_l4(p + f->l4, s);
		put16(p + off + 2, 20 + l4len);
	} else {
		p[off] = 0x60;
		p[off + 6] = s->ext_len ? s->ext_first : s->l4;
		p[off + 7] = s->hop_limit ? s->hop_limit : 64;
		inet_pton(AF_INET6, s->src, p + off + 8);
		inet_pton(AF_INET6, "2001:db8::1", p + off + 24);
		if (s->ext_len)
			memcpy(p + off + 40, s->ext, s->ext_len);
		f->l4 = off + 40 + s->ext_len;
		l4len = build_l4(p + f->l4, s);
		put16(p + off + 4, s->ext_len + l4len);
	}
	f->len = f->l4 + l4len;
}

/* ---- running ---- */

static uint64_t reason_count(enum xdp_reason reason)
{
	int ncpu = libbpf_num_possible_cpus(), i;
	struct xdp_stats per_cpu[ncpu];
	uint64_t sum = 0;
	__u32 zero = 0;

	if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.stats), &zero, per_cpu))
		return 0;
	for (i = 0; i < ncpu; i++)
		sum += ((const uint64_t *)&per_cpu[i])[reason];
	return sum;
}

static int run(const struct frame *f)
{
	uint8_t out[1024];
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f->b, .data_size_in = f->len,
		    .data_out = out, .data_size_out = sizeof(out), .repeat = 1);

	if (bpf_prog_test_run_opts(prog_fd, &opts))
		return -errno;
	return opts.retval;
}

/* Runs the frame, checks the action and that exactly `reason` counted it. */
#define EXPECT(f, action, reason)                                                                  \
	do {                                                                                       \
		uint64_t before_[XDP_REASON_MAX], changed_ = 0;                                    \
		int r_;                                                                            \
		for (r_ = 0; r_ < XDP_REASON_MAX; r_++)                                            \
			before_[r_] = reason_count(r_);                                            \
		CHECK_EQ(run(f), action);                                                          \
		for (r_ = 0; r_ < XDP_REASON_MAX; r_++)                                            \
			changed_ += reason_count(r_) != before_[r_];                               \
		CHECK_EQ(reason_count(reason), before_[reason] + 1);                               \
		CHECK_EQ(changed_, 1);                                                             \
	} while (0)

static struct frame tcp4(const char *src, uint8_t flags, uint16_t dport)
{
	struct spec s = {
	    .family = F_V4, .src = src, .l4 = IPPROTO_TCP, .tcp_flags = flags, .dport = dport};
	struct frame f;

	build(&f, &s);
	return f;
}

static struct frame tcp6(const char *src, uint8_t flags, uint16_t dport)
{
	struct spec s = {
	    .family = F_V6, .src = src, .l4 = IPPROTO_TCP, .tcp_flags = flags, .dport = dport};
	struct frame f;

	build(&f, &s);
	return f;
}

#define SYN 0x02
#define ACK 0x10
#define FIN 0x01
#define RST 0x04
#define PSH 0x08
#define URG 0x20

/* ---- tests ---- */

static void test_pass_and_port_policy(void)
{
	struct frame f = tcp4("198.18.1.1", SYN, 80);

	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	f = tcp4("198.18.1.1", SYN, 22);
	EXPECT(&f, XDP_DROP, XDP_REASON_PORT);
	/* Return traffic of connections the host opened: SYN+ACK and ACK from any port. */
	f = tcp4("198.18.1.1", SYN | ACK, 22);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	f = tcp4("198.18.1.1", ACK | PSH, 5432);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	f = tcp6("2001:db8:1::1", SYN, 443);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	f = tcp6("2001:db8:1::1", SYN, 8443);
	EXPECT(&f, XDP_DROP, XDP_REASON_PORT);
}

static void test_port_policy_off(void)
{
	struct edge_config c = base_cfg;
	struct frame f = tcp4("198.18.1.2", SYN, 22);

	c.port_policy = false;
	push_config(&c);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	push_config(&base_cfg);
	EXPECT(&f, XDP_DROP, XDP_REASON_PORT);
}

static void test_non_ip(void)
{
	struct spec s = {.family = F_ARP};
	struct frame f;

	build(&f, &s);
	EXPECT(&f, XDP_PASS, XDP_REASON_NON_IP);
	/* A VLAN EtherType with nothing after it (test_run needs at least 14 bytes). */
	put16(f.b + 12, 0x8100);
	f.len = 14;
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_ETH);
}

static void test_vlan(void)
{
	struct spec s = {.family = F_V4,
			 .src = "198.18.1.3",
			 .l4 = IPPROTO_TCP,
			 .tcp_flags = SYN,
			 .dport = 80,
			 .vlans = 1};
	struct frame f;

	build(&f, &s);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	s.vlans = 2;
	build(&f, &s);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	/* The port policy still sees through two tags. */
	s.dport = 25;
	build(&f, &s);
	EXPECT(&f, XDP_DROP, XDP_REASON_PORT);
	s.vlans = 3;
	build(&f, &s);
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_VLAN);
	s.vlans = 1;
	build(&f, &s);
	f.len = 16; /* tag cut off */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_ETH);
}

static void test_bad_ipv4(void)
{
	struct frame good = tcp4("198.18.1.4", ACK, 80), f;

	EXPECT(&good, XDP_PASS, XDP_REASON_PASS);
	f = good;
	f.b[f.l3] = 0x44; /* ihl 4 */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_IPV4);
	f = good;
	f.b[f.l3] = 0x55; /* version 5 */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_IPV4);
	f = good;
	put16(f.b + f.l3 + 2, 400); /* tot_len beyond the frame */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_IPV4);
	f = good;
	put16(f.b + f.l3 + 2, 16); /* tot_len below the header length */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_IPV4);
	f = good;
	f.len = f.l3 + 12; /* truncated header */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_IPV4);
	f = good;
	f.b[f.l3] = 0x4f; /* ihl 15: options beyond tot_len */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_IPV4);
	/* Ethernet padding after tot_len is fine. */
	f = good;
	f.len += 20;
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	/* A non-first fragment has no TCP header to check: it passes the source buckets. */
	f = good;
	put16(f.b + f.l3 + 6, 100);
	f.b[f.l4 + 13] = 0; /* would be "no flags" if it were parsed */
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
}

static void test_bad_tcp(void)
{
	struct frame good = tcp4("198.18.1.5", SYN, 443), f;

	f = good;
	f.b[f.l4 + 12] = 4 << 4; /* doff 4 */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_TCP);
	f = good;
	f.b[f.l4 + 12] = 8 << 4; /* options beyond the packet */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_TCP);
	f = good;
	put16(f.b + f.l3 + 2, 20 + 12); /* IP packet ends inside the TCP header */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_TCP);
	EXPECT(&good, XDP_PASS, XDP_REASON_PASS);
}

static void test_bad_tcp_flags(void)
{
	static const uint8_t bad[] = {
	    0, SYN | FIN, SYN | RST, FIN | PSH | URG, SYN | FIN | ACK, FIN | PSH | URG | ACK};
	static const uint8_t good[] = {FIN | ACK, RST, RST | ACK, PSH | ACK, URG | ACK};
	struct frame f;
	size_t i;

	for (i = 0; i < sizeof(bad); i++) {
		f = tcp4("198.18.1.6", bad[i], 80);
		EXPECT(&f, XDP_DROP, XDP_REASON_BAD_TCP_FLAGS);
	}
	for (i = 0; i < sizeof(good); i++) {
		f = tcp4("198.18.1.6", good[i], 80);
		EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	}
}

static void test_bad_udp_icmp(void)
{
	struct spec s = {.family = F_V4, .src = "198.18.1.7", .l4 = IPPROTO_UDP, .dport = 53};
	struct frame f, good;

	build(&good, &s);
	EXPECT(&good, XDP_PASS, XDP_REASON_PASS);
	f = good;
	put16(f.b + f.l4 + 4, 200); /* UDP length beyond the IP packet */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_UDP);
	f = good;
	put16(f.b + f.l4 + 4, 4); /* shorter than its own header */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_UDP);
	f = good;
	put16(f.b + f.l3 + 2, 20 + 6);
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_UDP);
	s.l4 = IPPROTO_ICMP;
	s.icmp_type = 8;
	build(&good, &s);
	EXPECT(&good, XDP_PASS, XDP_REASON_PASS);
	f = good;
	put16(f.b + f.l3 + 2, 20 + 2);
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_ICMP);
}

static void test_bad_ipv6(void)
{
	struct frame good = tcp6("2001:db8:2::1", SYN, 80), f;

	EXPECT(&good, XDP_PASS, XDP_REASON_PASS);
	f = good;
	put16(f.b + f.l3 + 4, 600); /* payload beyond the frame */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_IPV6);
	f = good;
	f.b[f.l3] = 0x40; /* version 4 under the IPv6 EtherType */
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_IPV6);
	f = good;
	f.len = f.l3 + 30;
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_IPV6);
}

/* An IPv6 frame to port `dport` (SYN) behind the given extension headers. */
static struct frame v6_ext(const uint8_t *ext, size_t len, uint8_t first, uint16_t dport)
{
	struct spec s = {.family = F_V6,
			 .src = "2001:db8:3::1",
			 .l4 = IPPROTO_TCP,
			 .tcp_flags = SYN,
			 .dport = dport,
			 .ext = ext,
			 .ext_len = len,
			 .ext_first = first};
	struct frame f;

	build(&f, &s);
	return f;
}

static void test_ipv6_extension_chains(void)
{
	/* hop-by-hop (8) → routing (16) → destination options (8) → TCP */
	static const uint8_t chain[] = {
	    43,		 0, 1, 4, 0, 0, 0, 0,			      /* HBH, next routing */
	    60,		 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* routing, 16 bytes */
	    IPPROTO_TCP, 0, 1, 4, 0, 0, 0, 0,			      /* dest opts */
	};
	/* fragment header, offset 0 (first fragment) → TCP */
	static const uint8_t frag_first[] = {IPPROTO_TCP, 0, 0, 1, 0, 0, 0, 42};
	/* fragment header, offset 8 (non-first): nothing after it to check */
	static const uint8_t frag_later[] = {IPPROTO_TCP, 0, 0, 8, 0, 0, 0, 42};
	uint8_t seven[7 * 8], truncated[] = {IPPROTO_TCP, 3, 0, 0, 0, 0, 0, 0};
	struct frame f;
	int i;

	f = v6_ext(chain, sizeof(chain), 0, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	/* The walk reaches TCP: the port policy applies behind the chain. */
	f = v6_ext(chain, sizeof(chain), 0, 22);
	EXPECT(&f, XDP_DROP, XDP_REASON_PORT);
	f = v6_ext(frag_first, sizeof(frag_first), 44, 22);
	EXPECT(&f, XDP_DROP, XDP_REASON_PORT);
	f = v6_ext(frag_later, sizeof(frag_later), 44, 22);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	/* Seven destination-options headers: more than XDP_IPV6_EXT_MAX. */
	memset(seven, 0, sizeof(seven));
	for (i = 0; i < 7; i++)
		seven[i * 8] = i == 6 ? IPPROTO_TCP : 60;
	f = v6_ext(seven, sizeof(seven), 60, 80);
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_IPV6_EXT);
	/* Six are still walked. */
	seven[5 * 8] = IPPROTO_TCP;
	f = v6_ext(seven, 6 * 8, 60, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	/* A header claiming 32 bytes inside an 8-byte space: beyond the payload. */
	f = v6_ext(truncated, sizeof(truncated), 60, 80);
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_IPV6_EXT);
	/* Extension header cut by the end of the frame. */
	f = v6_ext(chain, sizeof(chain), 0, 80);
	f.len = f.l3 + 40 + 4;
	put16(f.b + f.l3 + 4, 4);
	EXPECT(&f, XDP_DROP, XDP_REASON_BAD_IPV6_EXT);
}

static void test_deny_allow_precedence(void)
{
	char err[256];
	struct frame f;

	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_ALLOW, "198.18.9.0/24", err, sizeof(err)), 0);
	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_DENY, "198.18.9.7", err, sizeof(err)), 0);
	f = tcp4("198.18.9.7", SYN, 80);
	EXPECT(&f, XDP_DROP, XDP_REASON_DENY);
	/* Allowed sources skip the port policy and the buckets. */
	f = tcp4("198.18.9.8", SYN, 22);
	EXPECT(&f, XDP_PASS, XDP_REASON_ALLOW);
	/* A deny /24 wins over an allow /32 inside it. */
	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_DENY, "198.18.10.0/24", err, sizeof(err)), 0);
	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_ALLOW, "198.18.10.5/32", err, sizeof(err)), 0);
	f = tcp4("198.18.10.5", ACK, 80);
	EXPECT(&f, XDP_DROP, XDP_REASON_DENY);
	f = tcp4("198.18.11.5", ACK, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	/* IPv6 prefixes. */
	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_DENY, "2001:db8:bad::/48", err, sizeof(err)), 0);
	f = tcp6("2001:db8:bad:1::9", ACK, 80);
	EXPECT(&f, XDP_DROP, XDP_REASON_DENY);
	f = tcp6("2001:db8:bae::9", ACK, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	/* Deleting restores at once. */
	CHECK_EQ(edge_list_del(pin_dir, EDGE_LIST_DENY, "198.18.9.7/32", err, sizeof(err)), 0);
	f = tcp4("198.18.9.7", SYN, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_ALLOW);
	CHECK_EQ(edge_list_del(pin_dir, EDGE_LIST_DENY, "198.18.10.0/24", err, sizeof(err)), 0);
	CHECK_EQ(edge_list_del(pin_dir, EDGE_LIST_DENY, "2001:db8:bad::/48", err, sizeof(err)), 0);
	CHECK_EQ(edge_list_del(pin_dir, EDGE_LIST_ALLOW, "198.18.10.5", err, sizeof(err)), 0);
	CHECK_EQ(edge_list_del(pin_dir, EDGE_LIST_ALLOW, "198.18.9.0/24", err, sizeof(err)), 0);
}

static void test_syn_bucket_and_refill(void)
{
	struct frame f = tcp4("198.18.2.1", SYN, 80);
	int i;

	for (i = 0; i < 5; i++)
		EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&f, XDP_DROP, XDP_REASON_SYN_RATE);
	/* Established traffic of the same source is not a SYN: still passes. */
	f = tcp4("198.18.2.1", ACK, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	/* Another source has its own bucket. */
	f = tcp4("198.18.2.2", SYN, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	/* 5/s: 200 ms later one more, 1 s later the full burst. */
	f = tcp4("198.18.2.1", SYN, 80);
	advance_clock(200000000ULL);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&f, XDP_DROP, XDP_REASON_SYN_RATE);
	advance_clock(S);
	for (i = 0; i < 5; i++)
		EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&f, XDP_DROP, XDP_REASON_SYN_RATE);
}

/* The per-CPU budget of sources the shield starts tracking; tracked ones are not charged. */
static void test_new_source_budget(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct edge_config c = base_cfg;
	cpu_set_t one, all;
	struct frame f;

	/* Each CPU gets 1/s with a burst of 2; the runs below all happen on one CPU. */
	c.new_sources = (struct edge_rate){cpus, 2 * cpus};
	CHECK_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	CHECK_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
	push_config(&c);
	f = tcp4("198.18.9.1", ACK, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	f = tcp4("198.18.9.2", ACK, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	f = tcp4("198.18.9.3", ACK, 80);
	EXPECT(&f, XDP_DROP, XDP_REASON_NEW_SOURCE);
	EXPECT(&f, XDP_DROP, XDP_REASON_NEW_SOURCE); /* still untracked: no entry was made */
	f = tcp4("198.18.9.1", ACK, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	clock_offset += S;
	push_config(&c);
	f = tcp4("198.18.9.3", ACK, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	f = tcp4("198.18.9.4", ACK, 80);
	EXPECT(&f, XDP_DROP, XDP_REASON_NEW_SOURCE);
	push_config(&base_cfg);
	f = tcp4("198.18.9.4", ACK, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS); /* budget off again */
	CHECK_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
}

/*
 * A spent new-source budget is remembered per CPU (until_jiffies, two ticks short of the
 * next token) so a flood of untracked sources reads no clock; in real time (no config write
 * in between) the next token is still granted once it is due.
 */
static void test_new_source_memo(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int ncpu = libbpf_num_possible_cpus(), cpu = sched_getcpu();
	struct xdp_new_sources *ns = calloc(ncpu, sizeof(*ns));
	struct edge_config c = base_cfg;
	struct timespec pause = {0, 600000000};
	struct xdp_config cfg;
	cpu_set_t one, all;
	struct frame f;
	__u32 zero = 0;

	/* Each CPU: 2 new sources/s (one per 500 ms: many ticks at any HZ, and room for a
	 * slow emulated guest between two runs), burst 1. */
	c.new_sources = (struct edge_rate){2 * cpus, cpus};
	CHECK_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	CHECK_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
	/* Full buckets: the earlier test's tokens are still owed under these rates. */
	CHECK(ns && !bpf_map_update_elem(bpf_map__fd(skel->maps.new_sources), &zero, ns, BPF_ANY));
	push_config(&c);
	CHECK_EQ(bpf_map_lookup_elem(bpf_map__fd(skel->maps.config), &zero, &cfg), 0);
	f = tcp4("198.18.12.1", ACK, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	f = tcp4("198.18.12.2", ACK, 80);
	EXPECT(&f, XDP_DROP, XDP_REASON_NEW_SOURCE);
	CHECK(ns && !bpf_map_lookup_elem(bpf_map__fd(skel->maps.new_sources), &zero, ns));
	if (ns) {
		CHECK_EQ(ns[cpu].generation, cfg.generation);
		CHECK(cfg.tick_ns && 500000000 / cfg.tick_ns <= 2 ? 1 : ns[cpu].until_jiffies != 0);
	}
	f = tcp4("198.18.12.3", ACK, 80);
	EXPECT(&f, XDP_DROP, XDP_REASON_NEW_SOURCE);
	nanosleep(&pause, NULL);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	f = tcp4("198.18.12.4", ACK, 80);
	EXPECT(&f, XDP_DROP, XDP_REASON_NEW_SOURCE);
	free(ns);
	push_config(&base_cfg);
	CHECK_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
}

static void test_packet_bucket(void)
{
	struct edge_config c = base_cfg;
	struct frame f = tcp4("198.18.2.3", ACK, 80);
	int i;

	c.packets = (struct edge_rate){10, 3};
	push_config(&c);
	for (i = 0; i < 3; i++)
		EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&f, XDP_DROP, XDP_REASON_PKT_RATE);
	/* Rates change at runtime through the config map. */
	c.packets = (struct edge_rate){0, 0};
	push_config(&c);
	for (i = 0; i < 50; i++)
		CHECK_EQ(run(&f), XDP_PASS);
	push_config(&base_cfg);
}

static void test_udp_and_icmp_buckets(void)
{
	struct spec s = {.family = F_V4, .src = "198.18.2.4", .l4 = IPPROTO_UDP, .dport = 9};
	struct edge_config c = base_cfg;
	struct frame f;
	int i;

	build(&f, &s);
	for (i = 0; i < 3; i++)
		EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&f, XDP_DROP, XDP_REASON_UDP_RATE);
	/* udp_per_ip_per_s 0: no UDP bucket (only the all-packets one applies). */
	c.udp = (struct edge_rate){0, 0};
	push_config(&c);
	for (i = 0; i < 20; i++)
		EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	push_config(&base_cfg);
	s.l4 = IPPROTO_ICMP;
	s.icmp_type = 8;
	build(&f, &s);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&f, XDP_DROP, XDP_REASON_ICMP_RATE);
	s.family = F_V6;
	s.src = "2001:db8:4::1";
	s.l4 = IPPROTO_ICMPV6;
	s.icmp_type = 128; /* echo request */
	build(&f, &s);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&f, XDP_DROP, XDP_REASON_ICMP_RATE);
}

static void test_neighbour_discovery_never_limited(void)
{
	struct spec s = {.family = F_V6,
			 .src = "fe80::1",
			 .l4 = IPPROTO_ICMPV6,
			 .icmp_type = 135,
			 .hop_limit = 255};
	struct frame f;
	int i;

	build(&f, &s);
	for (i = 0; i < 20; i++)
		EXPECT(&f, XDP_PASS, XDP_REASON_ND);
	/* With a hop limit below 255 it did not come from the link: an ordinary ICMPv6. */
	s.hop_limit = 64;
	s.src = "2001:db8:5::1";
	build(&f, &s);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&f, XDP_DROP, XDP_REASON_ICMP_RATE);
}

static void test_ipv6_bucket_per_64(void)
{
	struct frame f;
	int i;

	for (i = 0; i < 5; i++) {
		char src[64];

		snprintf(src, sizeof(src), "2001:db8:6::%x", i + 1);
		f = tcp6(src, SYN, 80);
		EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	}
	/* A sixth address of the same /64 shares the bucket. */
	f = tcp6("2001:db8:6::ffff", SYN, 80);
	EXPECT(&f, XDP_DROP, XDP_REASON_SYN_RATE);
	f = tcp6("2001:db8:6:1::1", SYN, 80);
	EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
}

static void test_top_sources(void)
{
	struct edge_source top[4];
	char err[256], text[64];
	struct frame f = tcp4("198.18.3.3", SYN, 80);
	ssize_t n;
	int i;

	for (i = 0; i < 30; i++)
		run(&f);
	n = edge_top(pin_dir, EDGE_TOP_DROPS, top, 4, err, sizeof(err));
	CHECK(n >= 1);
	if (n < 1)
		return;
	edge_cidr_format(&top[0].source, text, sizeof(text));
	CHECK_STR(text, "198.18.3.3/32");
	CHECK_EQ(top[0].packets, 30);
	CHECK_EQ(top[0].drops, 25);
	n = edge_top(pin_dir, EDGE_TOP_PACKETS, top, 2, err, sizeof(err));
	CHECK_EQ(n, 2);
	CHECK(top[0].packets >= top[1].packets);
	CHECK_EQ(
	    edge_top("/sys/fs/bpf/xgate-test-missing", EDGE_TOP_PACKETS, top, 2, err, sizeof(err)),
	    -ENOENT);
	CHECK(strstr(err, "xgate-test-missing/rate_v4") != NULL);
}

/* This CPU's drop_cache entry (the test runs pinned to one CPU). */
static struct xdp_drop_cache cpu_drop_cache(int cpu)
{
	int ncpu = libbpf_num_possible_cpus();
	struct xdp_drop_cache *all = calloc(ncpu, sizeof(*all)), dc = {0};
	__u32 zero = 0;

	if (all && !bpf_map_lookup_elem(bpf_map__fd(skel->maps.drop_cache), &zero, all))
		dc = all[cpu];
	free(all);
	return dc;
}

static const struct edge_source *find_source(const struct edge_source *top, ssize_t n,
					     const char *text)
{
	char buf[64];

	for (ssize_t i = 0; i < n; i++) {
		edge_cidr_format(&top[i].source, buf, sizeof(buf));
		if (!strcmp(buf, text))
			return &top[i];
	}
	return NULL;
}

/* A refused source's next packets are refused from the per-CPU cache with the same
 * verdict and counts, until its bucket has a token, the config changes, or the packet is
 * of another class. */
static void test_drop_cache(void)
{
	struct frame a = tcp4("198.18.4.1", SYN, 80), b = tcp4("198.18.4.2", SYN, 80);
	struct edge_source top[16];
	const struct edge_source *s;
	struct xdp_drop_cache dc;
	cpu_set_t one, all;
	char err[256];
	ssize_t n;
	int i, cpu = sched_getcpu();

	CHECK_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	CHECK_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
	for (i = 0; i < 5; i++)
		EXPECT(&a, XDP_PASS, XDP_REASON_PASS);
	for (i = 0; i < 10; i++)
		EXPECT(&a, XDP_DROP, XDP_REASON_SYN_RATE);
	dc = cpu_drop_cache(cpu);
	CHECK_EQ(dc.pending, 9); /* the first refusal went the full way */
	CHECK_EQ(dc.reason, XDP_REASON_SYN_RATE);
	CHECK_EQ(dc.class, XDP_CLASS_SYN);
	CHECK(memcmp(dc.key, (uint8_t[]){198, 18, 4, 1}, 4) == 0 && dc.key[1] == 0);
	/* 5/s: the next token is at most 200 ms away. */
	{
		struct timespec ts;
		uint64_t now;

		clock_gettime(CLOCK_MONOTONIC, &ts); /* bpf_ktime_get_ns() */
		now = ts.tv_sec * S + ts.tv_nsec + clock_offset;
		CHECK(dc.until_ns > now && dc.until_ns <= now + 200000000ULL);
	}
	/* Another class of the same source takes the full path and passes. */
	a = tcp4("198.18.4.1", ACK, 80);
	EXPECT(&a, XDP_PASS, XDP_REASON_PASS);
	a = tcp4("198.18.4.1", SYN, 80);
	/* Readers add what is pending: the counts are exact at any time. */
	n = edge_top(pin_dir, EDGE_TOP_DROPS, top, 16, err, sizeof(err));
	s = find_source(top, n, "198.18.4.1/32");
	CHECK(s != NULL);
	if (s) {
		CHECK_EQ(s->packets, 16);
		CHECK_EQ(s->drops, 10);
	}
	/* Another refused source takes the cache over; the first one's drops are flushed. */
	for (i = 0; i < 5; i++)
		EXPECT(&b, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&b, XDP_DROP, XDP_REASON_SYN_RATE);
	dc = cpu_drop_cache(cpu);
	CHECK_EQ(dc.pending, 0);
	CHECK(memcmp(dc.key, (uint8_t[]){198, 18, 4, 2}, 4) == 0);
	n = edge_top(pin_dir, EDGE_TOP_DROPS, top, 16, err, sizeof(err));
	s = find_source(top, n, "198.18.4.1/32");
	CHECK(s && s->packets == 16 && s->drops == 10);
	/* A config write (here: the clock 200 ms on) invalidates the cached verdict. */
	EXPECT(&b, XDP_DROP, XDP_REASON_SYN_RATE);
	advance_clock(200000000ULL);
	EXPECT(&b, XDP_PASS, XDP_REASON_PASS);
	EXPECT(&b, XDP_DROP, XDP_REASON_SYN_RATE);
	/* A raised rate applies at once to a source being refused from the cache. */
	{
		struct edge_config c = base_cfg;

		c.syn = (struct edge_rate){0, 0};
		EXPECT(&b, XDP_DROP, XDP_REASON_SYN_RATE);
		push_config(&c);
		EXPECT(&b, XDP_PASS, XDP_REASON_PASS);
		push_config(&base_cfg);
	}
	CHECK_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
}

/* Refuses src's SYNs until its source is in this CPU's drop cache. */
static void fill_drop_cache(const char *src, bool v6)
{
	struct frame f = v6 ? tcp6(src, SYN, 80) : tcp4(src, SYN, 80);
	int i;

	for (i = 0; i < 5; i++)
		EXPECT(&f, XDP_PASS, XDP_REASON_PASS);
	for (i = 0; i < 3; i++)
		EXPECT(&f, XDP_DROP, XDP_REASON_SYN_RATE);
}

/*
 * The drop cache is checked before the deny/allow lists: a change to the lists (through
 * edge_list_add/del, which write lists_gen) applies at once to a source being refused from
 * it, and so do the port policy and ND. A list entry written without touching lists_gen
 * (bpftool by hand) is not seen until lists_gen changes: the cache really comes first.
 */
static void test_drop_cache_before_lists(void)
{
	struct frame a = tcp4("198.18.4.20", SYN, 80);
	struct lpm_v4_key k = {.prefixlen = 32, .addr = {198, 18, 4, 20}};
	struct cidr_value v = {.from_operator = 1};
	struct xdp_drop_cache dc;
	cpu_set_t one, all;
	char err[256];
	int cpu = sched_getcpu(), gen_fd = bpf_map__fd(skel->maps.lists_gen);

	CHECK_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	CHECK_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
	fill_drop_cache("198.18.4.20", false);
	dc = cpu_drop_cache(cpu);
	CHECK(dc.family == 4 && memcmp(dc.key, (uint8_t[]){198, 18, 4, 20}, 4) == 0);
	/* Allowed: passes at once, and only the allow counter moves. */
	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_ALLOW, "198.18.4.20", err, sizeof(err)), 0);
	EXPECT(&a, XDP_PASS, XDP_REASON_ALLOW);
	EXPECT(&a, XDP_PASS, XDP_REASON_ALLOW);
	CHECK_EQ(edge_list_del(pin_dir, EDGE_LIST_ALLOW, "198.18.4.20", err, sizeof(err)), 0);
	EXPECT(&a, XDP_DROP, XDP_REASON_SYN_RATE);
	EXPECT(&a, XDP_DROP, XDP_REASON_SYN_RATE);
	/* Denied: counted as denied, not as rate-limited. */
	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_DENY, "198.18.4.0/24", err, sizeof(err)), 0);
	EXPECT(&a, XDP_DROP, XDP_REASON_DENY);
	CHECK_EQ(edge_list_del(pin_dir, EDGE_LIST_DENY, "198.18.4.0/24", err, sizeof(err)), 0);
	EXPECT(&a, XDP_DROP, XDP_REASON_SYN_RATE);
	EXPECT(&a, XDP_DROP, XDP_REASON_SYN_RATE);
	/* A SYN to a closed port is refused by the port policy, from the cache's source too. */
	{
		struct frame closed = tcp4("198.18.4.20", SYN, 22);

		EXPECT(&closed, XDP_DROP, XDP_REASON_PORT);
		EXPECT(&a, XDP_DROP, XDP_REASON_SYN_RATE);
	}
	/* Written behind the gateway's back: the cache still answers, until lists_gen moves. */
	CHECK_EQ(bpf_map_update_elem(bpf_map__fd(skel->maps.allow_v4), &k, &v, BPF_ANY), 0);
	EXPECT(&a, XDP_DROP, XDP_REASON_SYN_RATE);
	CHECK_EQ(edge_lists_changed(gen_fd), 0);
	EXPECT(&a, XDP_PASS, XDP_REASON_ALLOW);
	CHECK_EQ(bpf_map_delete_elem(bpf_map__fd(skel->maps.allow_v4), &k), 0);
	CHECK_EQ(edge_lists_changed(gen_fd), 0);
	EXPECT(&a, XDP_DROP, XDP_REASON_SYN_RATE);

	/* IPv6: an allowed /128 inside a refused /64 passes; its neighbours stay refused
	 * (the bucket is the /64's). ND from the refused source is never limited. */
	fill_drop_cache("2001:db8:7::1", true);
	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_ALLOW, "2001:db8:7::2", err, sizeof(err)), 0);
	{
		struct frame x = tcp6("2001:db8:7::1", SYN, 80), y = tcp6("2001:db8:7::2", SYN, 80),
			     z = tcp6("2001:db8:7::3", SYN, 80);
		struct spec nd = {.family = F_V6,
				  .src = "2001:db8:7::1",
				  .l4 = IPPROTO_ICMPV6,
				  .icmp_type = 135,
				  .hop_limit = 255};
		struct frame ndf;

		EXPECT(&x, XDP_DROP, XDP_REASON_SYN_RATE);
		EXPECT(&y, XDP_PASS, XDP_REASON_ALLOW);
		EXPECT(&z, XDP_DROP, XDP_REASON_SYN_RATE);
		struct spec echo = nd;
		struct frame echof;
		int i;

		EXPECT(&x, XDP_DROP, XDP_REASON_SYN_RATE);
		/* ICMPv6 echo refused from the cache; ND of the same class is not. */
		echo.icmp_type = 128;
		echo.hop_limit = 64;
		build(&echof, &echo);
		build(&ndf, &nd);
		for (i = 0; i < 2; i++)
			EXPECT(&echof, XDP_PASS, XDP_REASON_PASS);
		for (i = 0; i < 3; i++)
			EXPECT(&echof, XDP_DROP, XDP_REASON_ICMP_RATE);
		dc = cpu_drop_cache(cpu);
		CHECK(dc.family == 6 && dc.class == XDP_CLASS_ICMP);
		EXPECT(&ndf, XDP_PASS, XDP_REASON_ND);
		EXPECT(&echof, XDP_DROP, XDP_REASON_ICMP_RATE);
	}
	CHECK_EQ(edge_list_del(pin_dir, EDGE_LIST_ALLOW, "2001:db8:7::2", err, sizeof(err)), 0);
	CHECK_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
}

/*
 * Cache hits are judged by the coarse clock plus coarse_slack_ns (two ticks): a refusal
 * ending sooner than that is judged by the exact clock, so a source whose token comes
 * back 1 ms later is not held off for the rest of the tick. Real time (not clock_offset,
 * whose change is a config write) passes between the refusal and the retry.
 */
static void test_drop_cache_coarse_clock(void)
{
	struct frame a = tcp4("198.18.4.9", SYN, 80);
	struct edge_config c = base_cfg;
	struct timespec res, pause;
	struct xdp_config cfg;
	cpu_set_t one, all;
	__u32 zero = 0;
	int i, cpu = sched_getcpu();

	CHECK_EQ(clock_getres(CLOCK_MONOTONIC_COARSE, &res), 0);
	CHECK(res.tv_sec == 0 && res.tv_nsec > 0);
	/* A token every tick: each refusal ends within the slack. */
	c.syn = (struct edge_rate){S / res.tv_nsec, 1};
	pause = (struct timespec){0, res.tv_nsec + 1000000};
	push_config(&c);
	CHECK_EQ(bpf_map_lookup_elem(bpf_map__fd(skel->maps.config), &zero, &cfg), 0);
	CHECK_EQ(cfg.coarse_slack_ns, 2 * (uint64_t)res.tv_nsec);
	CHECK_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	CHECK_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
	EXPECT(&a, XDP_PASS, XDP_REASON_PASS);
	for (i = 0; i < 3; i++) {
		EXPECT(&a, XDP_DROP, XDP_REASON_SYN_RATE); /* cached, ending within a tick */
		nanosleep(&pause, NULL);
		EXPECT(&a, XDP_PASS, XDP_REASON_PASS); /* the coarse clock may not have moved */
	}
	CHECK_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
	push_config(&base_cfg);
}

struct collected {
	char text[8][64];
	bool cfg[8], op[8];
	int n;
};

static int collect(const struct edge_list_entry *e, void *ctx)
{
	struct collected *c = ctx;

	if (c->n == 8)
		return -E2BIG;
	edge_cidr_format(&e->cidr, c->text[c->n], sizeof(c->text[0]));
	c->cfg[c->n] = e->from_config;
	c->op[c->n] = e->from_operator;
	c->n++;
	return 0;
}

static void test_list_operations(void)
{
	struct collected c = {0};
	char err[256];

	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_DENY, "1.2.3.4/40", err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "invalid CIDR \"1.2.3.4/40\"");
	CHECK_EQ(edge_list_del(pin_dir, EDGE_LIST_DENY, "192.0.2.0/24", err, sizeof(err)), -ENOENT);
	CHECK_STR(err, "192.0.2.0/24 is not in the deny list");
	/* Host bits are cleared: the same network is one entry. */
	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_DENY, "192.0.2.77/24", err, sizeof(err)), 0);
	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_DENY, "192.0.2.0/24", err, sizeof(err)), 0);
	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_DENY, "2001:db8:ff::/48", err, sizeof(err)), 0);
	CHECK_EQ(edge_list_read(pin_dir, EDGE_LIST_DENY, collect, &c, err, sizeof(err)), 0);
	CHECK_EQ(c.n, 2);
	CHECK_STR(c.text[0], "192.0.2.0/24");
	CHECK_STR(c.text[1], "2001:db8:ff::/48");
	CHECK(c.op[0] && !c.cfg[0]);
	CHECK_EQ(edge_list_del(pin_dir, EDGE_LIST_DENY, "192.0.2.0/24", err, sizeof(err)), 0);
	CHECK_EQ(edge_list_del(pin_dir, EDGE_LIST_DENY, "2001:db8:ff::/48", err, sizeof(err)), 0);
	memset(&c, 0, sizeof(c));
	CHECK_EQ(edge_list_read(pin_dir, EDGE_LIST_DENY, collect, &c, err, sizeof(err)), 0);
	CHECK_EQ(c.n, 0);
}

static struct edge_cidr cidr(const char *text)
{
	struct edge_cidr c = {0};

	cfg_parse_cidr(text, &c.family, c.addr, &c.prefix_len);
	return c;
}

static void test_reload_rule(void)
{
	int v4 = bpf_map__fd(skel->maps.deny_v4), v6 = bpf_map__fd(skel->maps.deny_v6);
	struct edge_cidr first[] = {cidr("203.0.113.0/24"), cidr("2001:db8:dead::/48")};
	struct edge_cidr second[] = {cidr("198.51.100.0/24")};
	struct collected c = {0};
	char err[256];

	CHECK_EQ(edge_sync_list(v4, v6, first, 2, true), 0);
	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_DENY, "192.0.2.1", err, sizeof(err)), 0);
	/* Operator re-adds a config entry: it must survive the config dropping it. */
	CHECK_EQ(edge_list_add(pin_dir, EDGE_LIST_DENY, "2001:db8:dead::/48", err, sizeof(err)), 0);
	CHECK_EQ(edge_sync_list(v4, v6, second, 1, true), 0);
	CHECK_EQ(edge_list_read(pin_dir, EDGE_LIST_DENY, collect, &c, err, sizeof(err)), 0);
	CHECK_EQ(c.n, 3);
	CHECK_STR(c.text[0], "192.0.2.1/32");
	CHECK(c.op[0] && !c.cfg[0]);
	CHECK_STR(c.text[1], "198.51.100.0/24");
	CHECK(!c.op[1] && c.cfg[1]);
	CHECK_STR(c.text[2], "2001:db8:dead::/48");
	CHECK(c.op[2] && !c.cfg[2]);
	/* keep_operator_entries false: exactly the config's list. */
	CHECK_EQ(edge_sync_list(v4, v6, second, 1, false), 0);
	memset(&c, 0, sizeof(c));
	CHECK_EQ(edge_list_read(pin_dir, EDGE_LIST_DENY, collect, &c, err, sizeof(err)), 0);
	CHECK_EQ(c.n, 1);
	CHECK_STR(c.text[0], "198.51.100.0/24");
	CHECK_EQ(edge_sync_list(v4, v6, NULL, 0, true), 0);
	memset(&c, 0, sizeof(c));
	CHECK_EQ(edge_list_read(pin_dir, EDGE_LIST_DENY, collect, &c, err, sizeof(err)), 0);
	CHECK_EQ(c.n, 0);
}

struct stats_seen {
	int n;
	uint64_t deny;
	bool order_ok;
};

static void on_stat(const char *reason, uint64_t packets, void *ctx)
{
	struct stats_seen *s = ctx;

	if (strcmp(reason, edge_reason_name(s->n)))
		s->order_ok = false;
	if (!strcmp(reason, "deny"))
		s->deny = packets;
	s->n++;
}

static void test_stats_reading_and_btf_names(void)
{
	struct stats_seen s = {.order_ok = true};
	char cmd[256], line[512];
	bool named = false;
	FILE *p;

	CHECK_EQ(edge_read_stats(pin_dir, on_stat, &s), 0);
	CHECK_EQ(s.n, XDP_REASON_MAX);
	CHECK(s.order_ok);
	CHECK_EQ(s.deny, reason_count(XDP_REASON_DENY));
	CHECK(s.deny > 0);
	/* bpftool shows the counters by name: the value's BTF reached the map. */
	snprintf(cmd, sizeof(cmd), "bpftool map dump pinned %s/stats 2>&1", pin_dir);
	p = popen(cmd, "r");
	CHECK(p != NULL);
	if (!p)
		return;
	while (fgets(line, sizeof(line), p))
		named |= strstr(line, "\"deny\": ") != NULL;
	pclose(p);
	CHECK(named);
}

/* ---- loader, on a veth pair in a private network namespace ---- */

static struct edge_config *loader_config(const char *ifname, const char *deny)
{
	char text[512];
	struct cfg_errs errs = {0};
	struct edge_config *c;
	json_t *j;

	snprintf(text, sizeof(text),
		 "{\"interfaces\": [\"%s\"], \"mode\": \"native\", \"pin_dir\": \"%s/gw\","
		 " \"allow_tcp_ports\": [8080], \"deny\": [%s]}",
		 ifname, pin_dir, deny);
	j = json_loads(text, 0, NULL);
	c = j ? edge_config_parse(j, "edge", &errs) : NULL;
	if (errs.count)
		fprintf(stderr, "%s", errs.text);
	cfg_errs_free(&errs);
	json_decref(j);
	return c;
}

static void test_loader(void)
{
	struct edge_config *c = loader_config("xgt0", "\"203.0.113.0/24\""), *missing;
	struct collected list = {0};
	char err[256], desc[64], dir[160];
	struct edge *e;

	CHECK(c != NULL);
	if (!c)
		return;
	missing = loader_config("xgt-missing", "");
	CHECK(missing != NULL);
	if (missing) {
		CHECK(edge_start(missing, err, sizeof(err)) == NULL);
		CHECK_STR(err, "edge.interfaces[0]: interface \"xgt-missing\" does not exist");
		edge_config_free(missing);
	}
	e = edge_start(c, err, sizeof(err));
	CHECK(e != NULL);
	if (!e) {
		fprintf(stderr, "edge_start: %s\n", err);
		edge_config_free(c);
		return;
	}
	edge_describe(e, desc, sizeof(desc));
	CHECK_STR(desc, "xgt0=native");
	snprintf(dir, sizeof(dir), "%s/gw", pin_dir);
	CHECK_EQ(edge_list_add(dir, EDGE_LIST_DENY, "192.0.2.9", err, sizeof(err)), 0);
	CHECK_EQ(edge_apply(e, c, err, sizeof(err)), 0);
	edge_stop(e);
	/* Restart: the pinned maps are reused, operator and config entries are there. */
	e = edge_start(c, err, sizeof(err));
	CHECK(e != NULL);
	CHECK_EQ(edge_list_read(dir, EDGE_LIST_DENY, collect, &list, err, sizeof(err)), 0);
	CHECK_EQ(list.n, 2);
	CHECK_STR(list.text[0], "192.0.2.9/32");
	CHECK_STR(list.text[1], "203.0.113.0/24");
	edge_stop(e);
	edge_config_free(c);
}

/* An upgrade from a release whose "stats" was a per-CPU hash: the old pin is replaced. */
static void test_loader_replaces_old_layout(void)
{
	struct edge_config *c = loader_config("xgt0", "");
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	char err[256], dir[160], path[200];
	struct edge *e;
	int fd;

	CHECK(c != NULL);
	if (!c)
		return;
	snprintf(dir, sizeof(dir), "%s/gw", pin_dir);
	snprintf(path, sizeof(path), "%s/stats", dir);
	mkdir(dir, 0700);
	unlink(path);
	fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_HASH, "stats", 4, 8, XDP_REASON_MAX, NULL);
	CHECK(fd >= 0);
	CHECK_EQ(bpf_obj_pin(fd, path), 0);
	close(fd);
	e = edge_start(c, err, sizeof(err));
	CHECK(e != NULL);
	if (!e)
		fprintf(stderr, "edge_start: %s\n", err);
	fd = bpf_obj_get(path);
	CHECK(fd >= 0);
	CHECK_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
	CHECK_EQ(info.type, BPF_MAP_TYPE_PERCPU_ARRAY);
	CHECK_EQ(info.value_size, sizeof(struct xdp_stats));
	close(fd);
	if (e)
		edge_stop(e);
	edge_config_free(c);
}

static int setup_netns(void)
{
	if (unshare(CLONE_NEWNET)) {
		perror("unshare(CLONE_NEWNET)");
		return -1;
	}
	if (system("ip link add xgt0 type veth peer name xgt1 && ip link set xgt0 up && "
		   "ip link set xgt1 up"))
		return -1;
	return 0;
}

static void cleanup_pins(void)
{
	char cmd[300];

	/* Only our own unique directory. */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pin_dir);
	if (system(cmd))
		fprintf(stderr, "cleanup of %s failed\n", pin_dir);
}

static int setup(void)
{
	struct statfs st;
	int err;

	if (statfs("/sys/fs/bpf", &st) || st.f_type != BPF_FS_MAGIC) {
		if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700")) {
			perror("mount bpffs");
			return -1;
		}
	}
	snprintf(pin_dir, sizeof(pin_dir), "/sys/fs/bpf/xgate-test-%d", (int)getpid());
	if (mkdir(pin_dir, 0700)) {
		perror(pin_dir);
		return -1;
	}
	skel = xdp_shield_bpf__open();
	if (!skel)
		return -1;
	{
		struct bpf_map *map;
		char path[256];

		bpf_object__for_each_map(map, skel->obj)
		{
			snprintf(path, sizeof(path), "%s/%s", pin_dir, bpf_map__name(map));
			bpf_map__set_pin_path(map, path);
		}
	}
	err = xdp_shield_bpf__load(skel);
	if (err) {
		fprintf(stderr, "loading xdp_shield: %s\n", strerror(-err));
		return -1;
	}
	prog_fd = bpf_program__fd(skel->progs.xdp_shield);
	clock_offset = 0;
	push_config(&base_cfg);
	return 0;
}

int main(void)
{
	int ok;

	if (geteuid()) {
		printf("%s: 0 passed, 0 failed (skipped: needs root)\n", __FILE__);
		return 0;
	}
	log_set_level(LOG_WARN);
	ok = setup() == 0;
	CHECK(ok);
	if (ok) {
		RUN(test_pass_and_port_policy);
		RUN(test_port_policy_off);
		RUN(test_non_ip);
		RUN(test_vlan);
		RUN(test_bad_ipv4);
		RUN(test_bad_tcp);
		RUN(test_bad_tcp_flags);
		RUN(test_bad_udp_icmp);
		RUN(test_bad_ipv6);
		RUN(test_ipv6_extension_chains);
		RUN(test_deny_allow_precedence);
		RUN(test_syn_bucket_and_refill);
		RUN(test_packet_bucket);
		RUN(test_new_source_budget);
		RUN(test_new_source_memo);
		RUN(test_udp_and_icmp_buckets);
		RUN(test_neighbour_discovery_never_limited);
		RUN(test_ipv6_bucket_per_64);
		RUN(test_top_sources);
		RUN(test_drop_cache);
		RUN(test_drop_cache_coarse_clock);
		RUN(test_drop_cache_before_lists);
		RUN(test_list_operations);
		RUN(test_reload_rule);
		RUN(test_stats_reading_and_btf_names);
		if (setup_netns() == 0) {
			RUN(test_loader);
			RUN(test_loader_replaces_old_layout);
		} else {
			CHECK(!"cannot create the test network namespace");
		}
	} else {
		check_failed++;
	}
	xdp_shield_bpf__destroy(skel);
	if (pin_dir[0])
		cleanup_pins();
	return CHECK_DONE();
}
