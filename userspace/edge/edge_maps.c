/*
 * Operations on the shield's pinned maps: used by the loader on start/reload and by
 * xgatectl on a running gateway. Nothing here prints; errors go to the caller's buffer.
 */
#include "edge/edge_internal.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "maps/xdp_shield.h"

#define XDP_REASON_NAME_(NAME, name, what) [XDP_REASON_##NAME] = #name,
static const char *const reason_names[XDP_REASON_MAX] = {XDP_REASONS(XDP_REASON_NAME_)};

const char *edge_reason_name(int reason)
{
	if (reason < 0 || reason >= XDP_REASON_MAX)
		return NULL;
	return reason_names[reason];
}

int edge_pin_open(const char *pin_dir, const char *name, char *err, size_t errlen)
{
	char path[512];
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", pin_dir, name) >= sizeof(path)) {
		snprintf(err, errlen, "pin path too long: %s/%s", pin_dir, name);
		return -ENAMETOOLONG;
	}
	fd = bpf_obj_get(path);
	if (fd < 0) {
		fd = -errno;
		snprintf(err, errlen, "cannot open pinned map %s: %s%s", path, strerror(-fd),
			 fd == -ENOENT ? " (is the gateway running with an edge section?)" : "");
	}
	return fd;
}

/* Each CPU tracks new sources on its own word: it gets an even share of the budget. */
static void init_new_source_budget(struct tb_params *p, const struct edge_rate *r)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t per_s, burst;

	if (cpus < 1)
		cpus = 1;
	per_s = r->per_s ? (r->per_s + cpus - 1) / cpus : 0;
	burst = (r->burst + cpus - 1) / cpus;
	tb_params_init(p, per_s, burst);
}

/* Two ticks of CLOCK_MONOTONIC_COARSE (the clock bpf_ktime_get_coarse_ns reads): its
 * resolution is the tick, and it can lag the exact clock by up to one tick plus a late one. */
static uint64_t coarse_slack_ns(void)
{
	struct timespec res;

	if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) || res.tv_sec)
		return 0;
	return 2 * (uint64_t)res.tv_nsec;
}

int edge_write_config(int config_fd, const struct edge_config *c, uint64_t clock_offset_ns)
{
	struct xdp_config *cfg = calloc(1, sizeof(*cfg));
	__u32 key = 0, generation = 1;
	int i, ret;

	if (!cfg)
		return -ENOMEM;
	/* A new generation drops the verdicts the program cached under the old rates. */
	if (!bpf_map_lookup_elem(config_fd, &key, cfg))
		generation = cfg->generation + 1;
	memset(cfg, 0, sizeof(*cfg));
	cfg->generation = generation;
	tb_params_init(&cfg->syn, c->syn.per_s, c->syn.burst);
	tb_params_init(&cfg->pkt, c->packets.per_s, c->packets.burst);
	tb_params_init(&cfg->udp, c->udp.per_s, c->udp.burst);
	tb_params_init(&cfg->icmp, c->icmp.per_s, c->icmp.burst);
	init_new_source_budget(&cfg->new_source, &c->new_sources);
	cfg->clock_offset_ns = clock_offset_ns;
	cfg->coarse_slack_ns = coarse_slack_ns();
	cfg->tick_ns = cfg->coarse_slack_ns / 2;
	if (c->port_policy)
		cfg->flags |= XDP_CFG_PORT_POLICY;
	for (i = 0; i < c->ntcp_ports; i++)
		cfg->tcp_ports[c->tcp_ports[i] / 64] |= 1ULL << (c->tcp_ports[i] % 64);
	/* The program may read a half-written value for an instant: fields are independent
	 * and ports in both the old and new set keep their bit throughout. */
	ret = bpf_map_update_elem(config_fd, &key, cfg, BPF_ANY) ? -errno : 0;
	free(cfg);
	return ret;
}

int edge_read_stats(const char *pin_dir,
		    void (*fn)(const char *reason, uint64_t packets, void *ctx), void *ctx)
{
	int ncpu = libbpf_num_possible_cpus(), fd, reason, cpu, ret = 0;
	struct xdp_stats *per_cpu;
	__u32 zero = 0;
	char err[256];

	if (ncpu < 0)
		return ncpu;
	fd = edge_pin_open(pin_dir, EDGE_MAP_STATS, err, sizeof(err));
	if (fd < 0)
		return fd;
	per_cpu = calloc(ncpu, sizeof(*per_cpu));
	if (!per_cpu) {
		close(fd);
		return -ENOMEM;
	}
	if (bpf_map_lookup_elem(fd, &zero, per_cpu))
		ret = -errno;
	for (reason = 0; !ret && reason < XDP_REASON_MAX; reason++) {
		uint64_t sum = 0;

		for (cpu = 0; cpu < ncpu; cpu++)
			sum += ((const __u64 *)&per_cpu[cpu])[reason];
		fn(reason_names[reason], sum, ctx);
	}
	free(per_cpu);
	close(fd);
	return ret;
}

size_t edge_cidr_format(const struct edge_cidr *c, char *out, size_t outlen)
{
	char addr[INET6_ADDRSTRLEN];

	if (!inet_ntop(c->family, c->addr, addr, sizeof(addr)))
		snprintf(addr, sizeof(addr), "?");
	return snprintf(out, outlen, "%s/%u", addr, c->prefix_len);
}

/* ---- deny/allow lists ---- */

/* Key of one family's LPM trie; returns its size. */
static size_t lpm_key(const struct edge_cidr *c, void *key)
{
	if (c->family == AF_INET) {
		struct lpm_v4_key *k = key;

		memset(k, 0, sizeof(*k));
		k->prefixlen = c->prefix_len;
		memcpy(k->addr, c->addr, 4);
		return sizeof(*k);
	} else {
		struct lpm_v6_key *k = key;

		memset(k, 0, sizeof(*k));
		k->prefixlen = c->prefix_len;
		memcpy(k->addr, c->addr, 16);
		return sizeof(*k);
	}
}

static void lpm_key_to_cidr(int family, const void *key, struct edge_cidr *c)
{
	memset(c, 0, sizeof(*c));
	c->family = family;
	if (family == AF_INET) {
		const struct lpm_v4_key *k = key;

		c->prefix_len = k->prefixlen;
		memcpy(c->addr, k->addr, 4);
	} else {
		const struct lpm_v6_key *k = key;

		c->prefix_len = k->prefixlen;
		memcpy(c->addr, k->addr, 16);
	}
}

/* All keys of an LPM trie, collected first so callers may delete while walking. */
static int lpm_keys(int fd, size_t keysize, struct lpm_v6_key **out, size_t *count)
{
	struct lpm_v6_key key, *keys = NULL, *grown;
	size_t n = 0, cap = 0;
	void *prev = NULL;

	while (!bpf_map_get_next_key(fd, prev, &key)) {
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			grown = realloc(keys, cap * sizeof(*keys));
			if (!grown) {
				free(keys);
				return -ENOMEM;
			}
			keys = grown;
		}
		memcpy(&keys[n], &key, keysize);
		prev = &keys[n++];
	}
	if (errno != ENOENT) {
		int ret = -errno;

		free(keys);
		return ret;
	}
	*out = keys;
	*count = n;
	return 0;
}

static bool cidr_listed(int family, const void *key, size_t keysize, const struct edge_cidr *cidrs,
			int n)
{
	struct lpm_v6_key k;
	int i;

	for (i = 0; i < n; i++)
		if (cidrs[i].family == family && lpm_key(&cidrs[i], &k) == keysize &&
		    !memcmp(&k, key, keysize))
			return true;
	return false;
}

/* Drops what the config no longer lists (or, when !keep, what only an operator added). */
static int prune_family(int fd, int family, const struct edge_cidr *cidrs, int n, bool keep)
{
	size_t keysize = family == AF_INET ? sizeof(struct lpm_v4_key) : sizeof(struct lpm_v6_key);
	struct lpm_v6_key *keys;
	size_t count, i;
	int ret;

	ret = lpm_keys(fd, keysize, &keys, &count);
	if (ret)
		return ret;
	for (i = 0; i < count && !ret; i++) {
		struct cidr_value v;

		if (bpf_map_lookup_elem(fd, &keys[i], &v))
			continue; /* removed meanwhile by xgatectl */
		v.from_config = cidr_listed(family, &keys[i], keysize, cidrs, n);
		if (!keep)
			v.from_operator = 0;
		if (!v.from_config && !v.from_operator) {
			if (bpf_map_delete_elem(fd, &keys[i]) && errno != ENOENT)
				ret = -errno;
		} else if (bpf_map_update_elem(fd, &keys[i], &v, BPF_EXIST) && errno != ENOENT) {
			ret = -errno;
		}
	}
	free(keys);
	return ret;
}

int edge_sync_list(int v4_fd, int v6_fd, const struct edge_cidr *cidrs, int n,
		   bool keep_operator_entries)
{
	int ret, i;

	ret = prune_family(v4_fd, AF_INET, cidrs, n, keep_operator_entries);
	if (!ret)
		ret = prune_family(v6_fd, AF_INET6, cidrs, n, keep_operator_entries);
	for (i = 0; i < n && !ret; i++) {
		int fd = cidrs[i].family == AF_INET ? v4_fd : v6_fd;
		struct cidr_value v = {0};
		struct lpm_v6_key key;

		lpm_key(&cidrs[i], &key);
		if (bpf_map_lookup_elem(fd, &key, &v))
			memset(&v, 0, sizeof(v));
		v.from_config = 1;
		if (bpf_map_update_elem(fd, &key, &v, BPF_ANY))
			ret = -errno;
	}
	return ret;
}

int edge_lists_changed(int lists_gen_fd)
{
	__u64 fresh = 0;
	__u32 zero = 0;

	/* A random value, not an increment: concurrent writers need no read-modify-write,
	 * and 2^64 values make a repeat (which would revive a stale entry) negligible. */
	if (getrandom(&fresh, sizeof(fresh), 0) != sizeof(fresh)) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		fresh = (__u64)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
	}
	return bpf_map_update_elem(lists_gen_fd, &zero, &fresh, BPF_ANY) ? -errno : 0;
}

/* edge_lists_changed through the pin; a shield from before lists_gen has nothing to tell. */
static int lists_changed(const char *pin_dir, char *err, size_t errlen)
{
	int fd = edge_pin_open(pin_dir, EDGE_MAP_LISTS_GEN, err, errlen), ret;

	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return fd;
	ret = edge_lists_changed(fd);
	if (ret)
		snprintf(err, errlen, "cannot update %s/%s: %s", pin_dir, EDGE_MAP_LISTS_GEN,
			 strerror(-ret));
	close(fd);
	return ret;
}

static int open_list(const char *pin_dir, enum edge_list list, int family, char *err, size_t errlen)
{
	const char *name;

	if (list == EDGE_LIST_DENY)
		name = family == AF_INET ? EDGE_MAP_DENY_V4 : EDGE_MAP_DENY_V6;
	else
		name = family == AF_INET ? EDGE_MAP_ALLOW_V4 : EDGE_MAP_ALLOW_V6;
	return edge_pin_open(pin_dir, name, err, errlen);
}

static int parse_cidr_arg(const char *text, struct edge_cidr *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	if (!cfg_parse_cidr(text, &c->family, c->addr, &c->prefix_len)) {
		snprintf(err, errlen, "invalid CIDR \"%s\"", text);
		return -EINVAL;
	}
	return 0;
}

int edge_list_add(const char *pin_dir, enum edge_list list, const char *cidr, char *err,
		  size_t errlen)
{
	struct cidr_value v = {0};
	struct lpm_v6_key key;
	struct edge_cidr c;
	int fd, ret;

	ret = parse_cidr_arg(cidr, &c, err, errlen);
	if (ret)
		return ret;
	fd = open_list(pin_dir, list, c.family, err, errlen);
	if (fd < 0)
		return fd;
	lpm_key(&c, &key);
	if (bpf_map_lookup_elem(fd, &key, &v))
		memset(&v, 0, sizeof(v));
	v.from_operator = 1;
	ret = 0;
	if (bpf_map_update_elem(fd, &key, &v, BPF_ANY)) {
		ret = -errno;
		snprintf(err, errlen, "cannot add %s: %s%s", cidr, strerror(-ret),
			 ret == -ENOSPC ? " (list full)" : "");
	}
	close(fd);
	return ret ?: lists_changed(pin_dir, err, errlen);
}

int edge_list_del(const char *pin_dir, enum edge_list list, const char *cidr, char *err,
		  size_t errlen)
{
	struct lpm_v6_key key;
	struct edge_cidr c;
	int fd, ret;

	ret = parse_cidr_arg(cidr, &c, err, errlen);
	if (ret)
		return ret;
	fd = open_list(pin_dir, list, c.family, err, errlen);
	if (fd < 0)
		return fd;
	lpm_key(&c, &key);
	ret = 0;
	if (bpf_map_delete_elem(fd, &key)) {
		char text[64];

		ret = -errno;
		edge_cidr_format(&c, text, sizeof(text));
		if (ret == -ENOENT)
			snprintf(err, errlen, "%s is not in the %s list", text,
				 list == EDGE_LIST_DENY ? "deny" : "allow");
		else
			snprintf(err, errlen, "cannot delete %s: %s", text, strerror(-ret));
	}
	close(fd);
	return ret ?: lists_changed(pin_dir, err, errlen);
}

static int read_family(int fd, int family, int (*fn)(const struct edge_list_entry *, void *),
		       void *ctx)
{
	size_t keysize = family == AF_INET ? sizeof(struct lpm_v4_key) : sizeof(struct lpm_v6_key);
	struct lpm_v6_key *keys;
	size_t count, i;
	int ret;

	ret = lpm_keys(fd, keysize, &keys, &count);
	if (ret)
		return ret;
	for (i = 0; i < count && !ret; i++) {
		struct edge_list_entry e;
		struct cidr_value v;

		if (bpf_map_lookup_elem(fd, &keys[i], &v))
			continue;
		lpm_key_to_cidr(family, &keys[i], &e.cidr);
		e.from_config = v.from_config;
		e.from_operator = v.from_operator;
		ret = fn(&e, ctx);
	}
	free(keys);
	return ret;
}

int edge_list_read(const char *pin_dir, enum edge_list list,
		   int (*fn)(const struct edge_list_entry *entry, void *ctx), void *ctx, char *err,
		   size_t errlen)
{
	static const int families[] = {AF_INET, AF_INET6};
	int i, ret = 0;

	for (i = 0; i < 2 && !ret; i++) {
		int fd = open_list(pin_dir, list, families[i], err, errlen);

		if (fd < 0)
			return fd;
		ret = read_family(fd, families[i], fn, ctx);
		if (ret < 0 && ret != -ENOMEM)
			snprintf(err, errlen, "cannot read list: %s", strerror(-ret));
		else if (ret == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		close(fd);
	}
	return ret;
}

/* ---- top sources ---- */

struct source_vec {
	struct edge_source *v;
	size_t n, cap;
};

static int push_source(struct source_vec *sv, const struct edge_source *s)
{
	if (sv->n == sv->cap) {
		size_t cap = sv->cap ? sv->cap * 2 : 256;
		struct edge_source *grown = realloc(sv->v, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		sv->v = grown;
		sv->cap = cap;
	}
	sv->v[sv->n++] = *s;
	return 0;
}

static int collect_sources(int fd, int family, struct source_vec *sv)
{
	size_t keysize =
	    family == AF_INET ? sizeof(struct rate_v4_key) : sizeof(struct rate_v6_key);
	__u8 key[8], next[8];
	void *prev = NULL;
	int ret = 0;

	while (!ret && !bpf_map_get_next_key(fd, prev, next)) {
		struct edge_source s = {0};
		struct rate_value v;

		memcpy(key, next, keysize);
		prev = key;
		if (bpf_map_lookup_elem(fd, key, &v))
			continue; /* evicted meanwhile */
		s.source.family = family;
		s.source.prefix_len = family == AF_INET ? 32 : 64;
		memcpy(s.source.addr, key, keysize);
		s.packets = v.packets;
		s.drops = v.drops;
		ret = push_source(sv, &s);
	}
	if (!ret && errno != ENOENT)
		ret = -errno;
	return ret;
}

static int cmp_u64_desc(uint64_t a, uint64_t b)
{
	return a < b ? 1 : a > b ? -1 : 0;
}

static int by_packets(const void *a, const void *b)
{
	const struct edge_source *x = a, *y = b;

	return cmp_u64_desc(x->packets, y->packets) ?: cmp_u64_desc(x->drops, y->drops);
}

static int by_drops(const void *a, const void *b)
{
	const struct edge_source *x = a, *y = b;

	return cmp_u64_desc(x->drops, y->drops) ?: cmp_u64_desc(x->packets, y->packets);
}

/* Drops each CPU's drop_cache holds that its source's entry does not count yet. */
static void add_cached_drops(const char *pin_dir, struct source_vec *sv)
{
	int ncpu = libbpf_num_possible_cpus(), fd, cpu;
	struct xdp_drop_cache *per_cpu;
	char err[256];
	__u32 zero = 0;
	size_t i;

	fd = edge_pin_open(pin_dir, EDGE_MAP_DROP_CACHE, err, sizeof(err));
	if (fd < 0)
		return; /* a shield from before the cache: nothing pending */
	per_cpu = ncpu > 0 ? calloc(ncpu, sizeof(*per_cpu)) : NULL;
	if (!per_cpu || bpf_map_lookup_elem(fd, &zero, per_cpu)) {
		free(per_cpu);
		close(fd);
		return;
	}
	for (cpu = 0; cpu < ncpu; cpu++) {
		const struct xdp_drop_cache *dc = &per_cpu[cpu];
		int family = dc->family == 6 ? AF_INET6 : AF_INET;
		size_t len = dc->family == 6 ? 8 : 4; /* the bucket: /32 or /64 */

		for (i = 0; dc->pending && i < sv->n; i++) {
			struct edge_source *s = &sv->v[i];

			if (s->source.family != family || memcmp(s->source.addr, dc->key, len))
				continue;
			s->packets += dc->pending;
			s->drops += dc->pending;
			break;
		}
	}
	free(per_cpu);
	close(fd);
}

ssize_t edge_top(const char *pin_dir, enum edge_top_by by, struct edge_source *out, size_t max,
		 char *err, size_t errlen)
{
	static const char *const names[] = {EDGE_MAP_RATE_V4, EDGE_MAP_RATE_V6};
	static const int families[] = {AF_INET, AF_INET6};
	struct source_vec sv = {0};
	int i, ret = 0;
	size_t n;

	for (i = 0; i < 2 && !ret; i++) {
		int fd = edge_pin_open(pin_dir, names[i], err, errlen);

		if (fd < 0) {
			free(sv.v);
			return fd;
		}
		ret = collect_sources(fd, families[i], &sv);
		close(fd);
	}
	if (ret) {
		snprintf(err, errlen, "cannot read sources: %s", strerror(-ret));
		free(sv.v);
		return ret;
	}
	add_cached_drops(pin_dir, &sv);
	qsort(sv.v, sv.n, sizeof(*sv.v), by == EDGE_TOP_DROPS ? by_drops : by_packets);
	n = sv.n < max ? sv.n : max;
	if (n)
		memcpy(out, sv.v, n * sizeof(*out));
	free(sv.v);
	return n;
}
