/*
 * Cost per packet of bpf/xdp_shield on its main paths, measured with
 * bpf_prog_test_run_opts and a large repeat count, next to bpf/xdp_floor (return XDP_DROP)
 * measured the same way. Prints a Markdown table; the best of several rounds is kept
 * because the mean of a round only grows with interference from the rest of the host.
 *
 * usage: xdp_bench [repeat]   (root; default repeat 5000000)
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edge/edge_internal.h"
#include "maps/xdp_shield.h"
#include "xdp_floor.skel.h"
#include "xdp_shield.skel.h"

#define ROUNDS 5

struct frame {
	uint8_t b[128];
	size_t len;
};

/* Ethernet + IPv4 + TCP (20 bytes, no options), 64-byte frame. */
static struct frame tcp4(const char *src, uint8_t flags, uint16_t dport)
{
	struct frame f = {.len = 64};
	uint8_t *ip = f.b + 14, *tcp = ip + 20;

	f.b[12] = ETH_P_IP >> 8;
	f.b[13] = ETH_P_IP & 0xff;
	ip[0] = 0x45;
	ip[3] = 40;
	ip[8] = 64;
	ip[9] = IPPROTO_TCP;
	inet_pton(AF_INET, src, ip + 12);
	inet_pton(AF_INET, "198.18.0.1", ip + 16);
	tcp[0] = 0x9c;
	tcp[2] = dport >> 8;
	tcp[3] = dport & 0xff;
	tcp[12] = 5 << 4;
	tcp[13] = flags;
	return f;
}

/* Best mean ns/packet over ROUNDS runs; checks the verdict too. */
static double measure(int prog_fd, const struct frame *f, unsigned int repeat, int want)
{
	double best = 0;
	int i;

	for (i = 0; i < ROUNDS; i++) {
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f->b, .data_size_in = f->len,
			    .repeat = repeat);

		if (bpf_prog_test_run_opts(prog_fd, &opts)) {
			fprintf(stderr, "test_run: %s\n", strerror(errno));
			exit(1);
		}
		if ((int)opts.retval != want) {
			fprintf(stderr, "unexpected verdict %u (wanted %d)\n", opts.retval, want);
			exit(1);
		}
		if (!i || opts.duration < best)
			best = opts.duration;
	}
	return best;
}

/* Fills the deny trie with n /32 entries outside the benchmark sources. */
static int fill_deny(int fd, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		struct lpm_v4_key k = {.prefixlen = 32};
		struct cidr_value v = {.from_config = 1};
		uint32_t a = htonl(0x0a000000 + i); /* 10.0.0.0/8 */

		memcpy(k.addr, &a, 4);
		if (bpf_map_update_elem(fd, &k, &v, BPF_ANY))
			return -errno;
	}
	return 0;
}

static void row(const char *path, double ns, double floor_ns)
{
	printf("| %-44s | %8.1f | %+8.1f |\n", path, ns, ns - floor_ns);
}

int main(int argc, char **argv)
{
	unsigned int repeat = argc > 1 ? strtoul(argv[1], NULL, 10) : 5000000;
	uint16_t ports[] = {80, 443};
	struct edge_config cfg = {
	    .port_policy = true,
	    .tcp_ports = ports,
	    .ntcp_ports = 2,
	    /* Buckets on but never empty for the pass path: the CAS runs every time. */
	    .syn = {1000000000, 1000000000},
	    .packets = {1000000000, 1000000000},
	};
	struct edge_cidr deny = {.family = AF_INET, .prefix_len = 24};
	struct xdp_shield_bpf *shield;
	struct xdp_floor_bpf *floor_prog;
	struct frame f;
	double floor_ns, ns;
	int fd;

	if (!repeat) {
		fprintf(stderr, "usage: %s [repeat]\n", argv[0]);
		return 2;
	}
	shield = xdp_shield_bpf__open_and_load();
	floor_prog = xdp_floor_bpf__open_and_load();
	if (!shield || !floor_prog) {
		fprintf(stderr, "cannot load the BPF programs (root needed): %s\n",
			strerror(errno));
		return 1;
	}
	fd = bpf_program__fd(shield->progs.xdp_shield);
	inet_pton(AF_INET, "203.0.113.0", deny.addr);
	if (edge_write_config(bpf_map__fd(shield->maps.config), &cfg, 0) ||
	    edge_sync_list(bpf_map__fd(shield->maps.deny_v4), bpf_map__fd(shield->maps.deny_v6),
			   &deny, 1, true)) {
		fprintf(stderr, "cannot configure the shield\n");
		return 1;
	}

	printf("repeat %u, best of %d rounds, 64-byte IPv4/TCP frames\n\n", repeat, ROUNDS);
	printf("| %-44s | %8s | %8s |\n", "path", "ns/pkt", "vs floor");
	printf("|%s|----------|----------|\n", "----------------------------------------------");
	f = tcp4("198.18.1.1", 0x10, 80);
	floor_ns = measure(bpf_program__fd(floor_prog->progs.xdp_floor), &f, repeat, XDP_DROP);
	row("floor: XDP_DROP only (bpf/xdp_floor)", floor_ns, floor_ns);
	ns = measure(fd, &f, repeat, XDP_PASS);
	row("pass (parse, deny+allow miss, 2 buckets)", ns, floor_ns);
	f = tcp4("198.18.1.2", 0x02, 80);
	cfg.syn = (struct edge_rate){1, 1};
	edge_write_config(bpf_map__fd(shield->maps.config), &cfg, 0);
	ns = measure(fd, &f, repeat, XDP_DROP);
	row("rate-limited drop (SYN bucket empty)", ns, floor_ns);
	f = tcp4("198.18.1.3", 0x02, 22);
	ns = measure(fd, &f, repeat, XDP_DROP);
	row("port-policy drop (SYN to closed port)", ns, floor_ns);
	f = tcp4("203.0.113.9", 0x10, 80);
	ns = measure(fd, &f, repeat, XDP_DROP);
	row("deny drop (1 CIDR in the trie)", ns, floor_ns);
	if (fill_deny(bpf_map__fd(shield->maps.deny_v4), 10000) == 0) {
		ns = measure(fd, &f, repeat, XDP_DROP);
		row("deny drop (10001 entries in the trie)", ns, floor_ns);
		f = tcp4("198.18.1.1", 0x10, 80);
		ns = measure(fd, &f, repeat, XDP_PASS);
		row("pass (10001 deny entries, miss)", ns, floor_ns);
	}
	xdp_shield_bpf__destroy(shield);
	xdp_floor_bpf__destroy(floor_prog);
	return 0;
}
