// SPDX-License-Identifier: GPL-2.0
/*
 * XDP edge shield: drops floods at the NIC before the kernel allocates an skb.
 *
 * Verdict order: malformed → deny CIDRs → allow CIDRs (pass unlimited) → IPv6 neighbour
 * discovery (pass unlimited) → DMZ port policy for new TCP connections → the budget of new
 * sources (for a source not tracked yet) → per-source token buckets (SYN, UDP, ICMP, then
 * all packets) → pass. Every verdict counts one packet in "stats" under its reason (one
 * per-CPU entry, a counter per reason). All runtime settings live in maps
 * (maps/xdp_shield.h), so changing them never reloads or detaches the program.
 *
 * A source this CPU just refused is refused again from the drop cache before the list
 * lookups (the flood path): the cached verdict names the config and lists generations it
 * was computed under, so it is exactly the verdict of the order above.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmp.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps/xdp_shield.h"

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define IPV4_FRAG_OFFSET_MASK 0x1fff
#define IPV6_FRAG_OFFSET_MASK 0xfff8
#define NEXTHDR_HOP_ 0
#define NEXTHDR_ROUTING_ 43
#define NEXTHDR_FRAGMENT_ 44
#define NEXTHDR_AUTH_ 51
#define NEXTHDR_DEST_ 60
#define NEXTHDR_MOBILITY_ 135
#define ND_HOP_LIMIT 255

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xdp_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xdp_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XDP_LPM_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, struct cidr_value);
} deny_v4 SEC(".maps"), allow_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XDP_LPM_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6_key);
	__type(value, struct cidr_value);
} deny_v6 SEC(".maps"), allow_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XDP_RATE_MAX_ENTRIES);
	__type(key, struct rate_v4_key);
	__type(value, struct rate_value);
} rate_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XDP_RATE_MAX_ENTRIES);
	__type(key, struct rate_v6_key);
	__type(value, struct rate_value);
} rate_v6 SEC(".maps");

/*
 * Each CPU's bucket of new sources (one word, see new_source in struct xdp_config). A flood
 * from more spoofed sources than rate_v4/rate_v6 hold would otherwise insert an entry (and
 * evict a tracked one) per packet, every packet with a fresh, full bucket: the per-source
 * limits would never apply and the LRU churn would cost more than the stack.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xdp_new_sources);
} new_sources SEC(".maps");

/* This CPU's last refused source (struct xdp_drop_cache). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xdp_drop_cache);
} drop_cache SEC(".maps");

/* See struct xdp_drop_cache: replaced by every writer of the deny/allow lists. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lists_gen SEC(".maps");

/* What the parser learnt about a packet; only what the verdict needs. */
struct pkt {
	void *data_end;
	__u8 family; /* 4 or 6 */
	__u8 l4;     /* IPPROTO_*, 0 when there is no L4 header (non-first fragment) */
	__u8 tcp_flags;
	__u8 nd;     /* IPv6 neighbour discovery with hop limit 255 */
	__u16 dport; /* host order */
	__u8 src[16];
};

#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_PSH 0x08
#define TCPF_ACK 0x10
#define TCPF_URG 0x20

/*
 * A 16-bit length field in host order, with bounds the verifier can see. The 6.1
 * verifier (Debian 12) forgets every bound of a register after a byte swap
 * (BPF_END), then rejects "pkt pointer + swapped length" as math with an unbounded
 * register. The compiler knows a swapped u16 fits in 16 bits and would drop a plain
 * mask, so the value is hidden from it first; the mask changes no value.
 */
static __always_inline __u32 len16(__be16 field)
{
	__u32 v = bpf_ntohs(field);

	barrier_var(v);
	return v & 0xffff;
}

static __always_inline void count(enum xdp_reason reason)
{
	__u32 zero = 0, i = reason;
	struct xdp_stats *s = bpf_map_lookup_elem(&stats, &zero);

	/* One register checked and used: the 6.1 verifier does not carry a bound learnt on
	 * one stack refill (a reason read from the drop cache) over to the next. */
	barrier_var(i);
	if (s && i < XDP_REASON_MAX)
		((__u64 *)s)[i] += 1; /* per-CPU entry: no atomic needed */
}

static __always_inline int verdict(enum xdp_reason reason)
{
	count(reason);
	return reason <= XDP_REASON_ND ? XDP_PASS : XDP_DROP;
}

static __always_inline enum xdp_reason parse_tcp(struct pkt *p, void *l4, void *l4_end)
{
	struct tcphdr *th = l4;
	__u8 flags;

	if ((void *)(th + 1) > p->data_end || (void *)(th + 1) > l4_end)
		return XDP_REASON_BAD_TCP;
	if (th->doff < 5 || l4 + th->doff * 4 > l4_end)
		return XDP_REASON_BAD_TCP;
	flags = ((__u8 *)th)[13];
	if (!(flags & (TCPF_FIN | TCPF_SYN | TCPF_RST | TCPF_PSH | TCPF_ACK | TCPF_URG)))
		return XDP_REASON_BAD_TCP_FLAGS;
	if ((flags & TCPF_SYN) && (flags & (TCPF_FIN | TCPF_RST)))
		return XDP_REASON_BAD_TCP_FLAGS;
	if ((flags & (TCPF_FIN | TCPF_PSH | TCPF_URG)) == (TCPF_FIN | TCPF_PSH | TCPF_URG))
		return XDP_REASON_BAD_TCP_FLAGS;
	p->tcp_flags = flags;
	p->dport = bpf_ntohs(th->dest);
	return XDP_REASON_PASS;
}

/* l4_end is where the IP packet ends (tot_len / payload_len), not the frame: padding. */
static __always_inline enum xdp_reason parse_l4(struct pkt *p, void *l4, void *l4_end)
{
	switch (p->l4) {
	case IPPROTO_TCP:
		return parse_tcp(p, l4, l4_end);
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > p->data_end || (void *)(uh + 1) > l4_end)
			return XDP_REASON_BAD_UDP;
		__u32 len = len16(uh->len);

		if (len < sizeof(*uh) || l4 + len > l4_end)
			return XDP_REASON_BAD_UDP;
		p->dport = bpf_ntohs(uh->dest);
		return XDP_REASON_PASS;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (l4 + 4 > p->data_end || l4 + 4 > l4_end)
			return XDP_REASON_BAD_ICMP;
		return XDP_REASON_PASS;
	}
	return XDP_REASON_PASS;
}

static __always_inline enum xdp_reason parse_ipv4(struct pkt *p, void *l3)
{
	struct iphdr *iph = l3;
	__u32 tot_len, hlen;

	if ((void *)(iph + 1) > p->data_end)
		return XDP_REASON_BAD_IPV4;
	hlen = iph->ihl * 4;
	tot_len = len16(iph->tot_len);
	if (iph->version != 4 || iph->ihl < 5 || tot_len < hlen)
		return XDP_REASON_BAD_IPV4;
	if (l3 + tot_len > p->data_end)
		return XDP_REASON_BAD_IPV4;
	p->family = 4;
	__builtin_memcpy(p->src, &iph->saddr, 4);
	/* Non-first fragments carry no L4 header: only the source-wide buckets apply. */
	if (iph->frag_off & bpf_htons(IPV4_FRAG_OFFSET_MASK))
		return XDP_REASON_PASS;
	p->l4 = iph->protocol;
	return parse_l4(p, l3 + hlen, l3 + tot_len);
}

static __always_inline enum xdp_reason parse_ipv6(struct pkt *p, void *l3)
{
	struct ipv6hdr *ip6 = l3;
	void *cur = ip6 + 1, *end;
	__u8 next;
	int i;

	if ((void *)(ip6 + 1) > p->data_end)
		return XDP_REASON_BAD_IPV6;
	end = cur + len16(ip6->payload_len);
	if (ip6->version != 6 || end > p->data_end)
		return XDP_REASON_BAD_IPV6;
	p->family = 6;
	__builtin_memcpy(p->src, &ip6->saddr, 16);
	next = ip6->nexthdr;
#pragma unroll
	for (i = 0; i < XDP_IPV6_EXT_MAX; i++) {
		__u8 *h = cur;
		__u32 len;

		if (next != NEXTHDR_HOP_ && next != NEXTHDR_ROUTING_ && next != NEXTHDR_FRAGMENT_ &&
		    next != NEXTHDR_AUTH_ && next != NEXTHDR_DEST_ && next != NEXTHDR_MOBILITY_)
			break;
		if ((void *)(h + 8) > p->data_end || (void *)(h + 8) > end)
			return XDP_REASON_BAD_IPV6_EXT;
		if (next == NEXTHDR_FRAGMENT_) {
			/* Non-first fragment: no L4 header follows. */
			if (*(__u16 *)(h + 2) & bpf_htons(IPV6_FRAG_OFFSET_MASK))
				return XDP_REASON_PASS;
			len = 8;
		} else if (next == NEXTHDR_AUTH_) {
			len = (h[1] + 2) * 4;
		} else {
			len = (h[1] + 1) * 8;
		}
		next = h[0];
		cur += len;
	}
	if (next == NEXTHDR_HOP_ || next == NEXTHDR_ROUTING_ || next == NEXTHDR_FRAGMENT_ ||
	    next == NEXTHDR_AUTH_ || next == NEXTHDR_DEST_ || next == NEXTHDR_MOBILITY_)
		return XDP_REASON_BAD_IPV6_EXT;
	if (cur > end)
		return XDP_REASON_BAD_IPV6_EXT;
	p->l4 = next;
	if (next == IPPROTO_ICMPV6) {
		__u8 *icmp = cur;

		if ((void *)(icmp + 4) <= p->data_end && icmp[0] >= 133 && icmp[0] <= 137 &&
		    ip6->hop_limit == ND_HOP_LIMIT)
			p->nd = 1;
	}
	return parse_l4(p, cur, end);
}

static __always_inline enum xdp_reason parse(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	__u16 proto;
	int i;

	p->data_end = (void *)(long)ctx->data_end;
	if (l3 > p->data_end)
		return XDP_REASON_BAD_ETH;
	proto = eth->h_proto;
#pragma unroll
	for (i = 0; i < 3; i++) {
		if (proto != bpf_htons(ETH_P_8021Q_) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		if (i == 2)
			return XDP_REASON_BAD_VLAN;
		if (l3 + 4 > p->data_end)
			return XDP_REASON_BAD_ETH;
		proto = *(__u16 *)(l3 + 2);
		l3 += 4;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(p, l3);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(p, l3);
	return XDP_REASON_NON_IP;
}

static __always_inline int in_list(struct pkt *p, void *map_v4, void *map_v6)
{
	if (p->family == 4) {
		struct lpm_v4_key k = {.prefixlen = 32};

		__builtin_memcpy(k.addr, p->src, 4);
		return bpf_map_lookup_elem(map_v4, &k) != NULL;
	} else {
		struct lpm_v6_key k = {.prefixlen = 128};

		__builtin_memcpy(k.addr, p->src, 16);
		return bpf_map_lookup_elem(map_v6, &k) != NULL;
	}
}

/* The exact clock, read at most once per packet and only by the paths that need it. */
struct clock {
	const struct xdp_config *cfg;
	__u64 now;
	bool known;
};

static __always_inline __u64 clock_now(struct clock *c)
{
	if (!c->known) {
		c->now = bpf_ktime_get_ns() + c->cfg->clock_offset_ns;
		c->known = true;
	}
	return c->now;
}

/* Jiffies before which a wait of wait_ns that starts now has surely not ended, or 0
 * (see cache_refusal for why two ticks are given away). */
static __always_inline __u64 jiffies_until(const struct xdp_config *cfg, __u64 wait_ns)
{
	if (!cfg->tick_ns || wait_ns / cfg->tick_ns <= 2)
		return 0;
	return bpf_jiffies64() + wait_ns / cfg->tick_ns - 2;
}

/* Whether this CPU may start tracking one more source now. */
static __always_inline bool admit_source(const struct xdp_config *cfg, struct clock *clk)
{
	__u32 zero = 0;
	struct xdp_new_sources *ns = bpf_map_lookup_elem(&new_sources, &zero);
	__u64 now;

	if (!cfg->new_source.interval)
		return true;
	if (!ns)
		return false;
	if (ns->generation == cfg->generation && ns->until_jiffies &&
	    bpf_jiffies64() < ns->until_jiffies)
		return false;
	now = clock_now(clk);
	if (!ns->word)
		ns->word = tb_init(now);
	if (tb_take(&ns->word, &cfg->new_source, now))
		return true;
	ns->generation = cfg->generation;
	ns->until_jiffies = jiffies_until(cfg, tb_wait_ns(ns->word, &cfg->new_source, now));
	return false;
}

/* A source's entry, or NULL when it is new and the new-source budget is spent. New sources
 * start with full buckets. Losing the insert race to another CPU is fine: the second lookup
 * finds its entry. One call site per map keeps the verifier's lookup inlining. */
static __always_inline struct rate_value *source_entry(const struct xdp_config *cfg,
						       struct pkt *p, struct clock *clk)
{
	struct rate_value fresh = {};
	struct rate_value *v;

	if (p->family == 4) {
		struct rate_v4_key k4;

		__builtin_memcpy(k4.addr, p->src, 4);
		v = bpf_map_lookup_elem(&rate_v4, &k4);
		if (v || !admit_source(cfg, clk))
			return v;
		fresh.syn_tat = fresh.pkt_tat = fresh.udp_tat = fresh.icmp_tat =
		    tb_init(clock_now(clk));
		bpf_map_update_elem(&rate_v4, &k4, &fresh, BPF_NOEXIST);
		return bpf_map_lookup_elem(&rate_v4, &k4);
	} else {
		struct rate_v6_key k6;

		__builtin_memcpy(k6.prefix, p->src, 8);
		v = bpf_map_lookup_elem(&rate_v6, &k6);
		if (v || !admit_source(cfg, clk))
			return v;
		fresh.syn_tat = fresh.pkt_tat = fresh.udp_tat = fresh.icmp_tat =
		    tb_init(clock_now(clk));
		bpf_map_update_elem(&rate_v6, &k6, &fresh, BPF_NOEXIST);
		return bpf_map_lookup_elem(&rate_v6, &k6);
	}
}

static __always_inline bool port_allowed(const struct xdp_config *cfg, __u16 port)
{
	if (!(cfg->flags & XDP_CFG_PORT_POLICY))
		return true;
	return cfg->tcp_ports[(port >> 6) & 1023] & (1ULL << (port & 63));
}

static __always_inline __u8 packet_class(const struct pkt *p)
{
	if (p->l4 == IPPROTO_TCP && (p->tcp_flags & (TCPF_SYN | TCPF_ACK)) == TCPF_SYN)
		return XDP_CLASS_SYN;
	if (p->l4 == IPPROTO_UDP)
		return XDP_CLASS_UDP;
	if (p->l4 == IPPROTO_ICMP || p->l4 == IPPROTO_ICMPV6)
		return XDP_CLASS_ICMP;
	return XDP_CLASS_OTHER;
}

/* The whole source address as two words (IPv4: the first 4 bytes, the rest 0). */
static __always_inline void cache_key(const struct pkt *p, __u64 key[2])
{
	key[0] = 0;
	key[1] = 0;
	if (p->family == 4)
		__builtin_memcpy(&key[0], p->src, 4);
	else
		__builtin_memcpy(key, p->src, 16);
}

/* Whether the cache entry and the packet share a bucket (IPv6: the /64 in key[0]). */
static __always_inline bool same_bucket(const struct xdp_drop_cache *dc, const struct pkt *p,
					const __u64 key[2])
{
	return dc->family == p->family && dc->key[0] == key[0] &&
	       (p->family == 6 || dc->key[1] == key[1]);
}

/* Adds the cache's pending drops to the source they belong to: v when it is that source's
 * entry, else the entry looked up (a source that stopped sending; gone if evicted). */
static __always_inline void cache_flush(struct xdp_drop_cache *dc, struct rate_value *v,
					const struct pkt *p, const __u64 key[2])
{
	if (!dc->pending)
		return;
	if (!same_bucket(dc, p, key)) {
		if (dc->family == 6) {
			struct rate_v6_key k6;

			__builtin_memcpy(k6.prefix, &dc->key[0], 8);
			v = bpf_map_lookup_elem(&rate_v6, &k6);
		} else {
			struct rate_v4_key k4;

			__builtin_memcpy(k4.addr, &dc->key[0], 4);
			v = bpf_map_lookup_elem(&rate_v4, &k4);
		}
	}
	if (v) {
		__sync_fetch_and_add(&v->packets, dc->pending);
		__sync_fetch_and_add(&v->drops, dc->pending);
	}
	dc->pending = 0;
}

/* Remembers a refusal: until the bucket that refused holds a token again, packets of the
 * same source and class get the same verdict from the cache. */
static __always_inline void cache_refusal(const struct xdp_config *cfg, __u64 lists_generation,
					  struct xdp_drop_cache *dc, struct rate_value *v,
					  const struct pkt *p, const __u64 key[2], __u8 class,
					  enum xdp_reason reason, __u64 wait_ns, __u64 now)
{
	cache_flush(dc, v, p, key);
	dc->generation = cfg->generation;
	dc->lists_generation = lists_generation;
	dc->family = p->family;
	dc->key[0] = key[0];
	dc->key[1] = key[1];
	dc->class = class;
	dc->reason = reason;
	dc->until_ns = now + wait_ns;
	/*
	 * Jiffies j are read at or after tick j and before tick j + 1 is processed, which may
	 * be one tick late (the coarse clock's assumption too). A hit at jiffies jn < jr +
	 * wait/tick - 2 is therefore less than (jn - jr + 2) ticks <= wait_ns after now.
	 */
	dc->until_jiffies = jiffies_until(cfg, wait_ns);
}

/* Whether the cached refusal is about this packet's bucket and class under this config
 * (the packet passed the lists and the port policy); its time is checked by the caller. */
static __always_inline bool cache_matches(const struct xdp_config *cfg,
					  const struct xdp_drop_cache *dc, const struct pkt *p,
					  const __u64 key[2], __u8 class)
{
	return same_bucket(dc, p, key) && dc->class == class && dc->generation == cfg->generation;
}

/* A hit after the lists: this address just passed the lists of lists_generation, so the
 * entry now names it (the same bucket) and that generation, for early_refusal. */
static __always_inline enum xdp_reason cache_repeat(struct xdp_drop_cache *dc, const __u64 key[2],
						    __u64 lists_generation)
{
	dc->key[0] = key[0];
	dc->key[1] = key[1];
	dc->lists_generation = lists_generation;
	dc->pending++;
	return dc->reason;
}

/*
 * The flood path, before the lists: a refusal of this very address, class, config and
 * lists generation that has not ended is the verdict the full path would give. ND
 * packets are never refused; a SYN the port policy refuses is refused for that reason.
 * Time is judged by jiffies (an inlined load, see cache_refusal): a refusal ending within
 * two ticks, and anything else, takes the full path, whose own check reads the clocks.
 */
static __always_inline enum xdp_reason early_refusal(const struct xdp_config *cfg,
						     struct xdp_drop_cache *dc, const struct pkt *p,
						     const __u64 key[2], __u8 class,
						     __u64 lists_generation)
{
	if (dc->key[0] != key[0] || dc->key[1] != key[1] || dc->family != p->family ||
	    dc->class != class || dc->generation != cfg->generation ||
	    dc->lists_generation != lists_generation || p->nd)
		return XDP_REASON_PASS;
	if (class == XDP_CLASS_SYN && !port_allowed(cfg, p->dport))
		return XDP_REASON_PASS;
	if (bpf_jiffies64() >= dc->until_jiffies)
		return XDP_REASON_PASS;
	dc->pending++;
	return dc->reason;
}

static __always_inline enum xdp_reason take_tokens(const struct xdp_config *cfg, struct pkt *p,
						   struct xdp_drop_cache *dc, const __u64 key[2],
						   __u8 class, __u64 lists_generation)
{
	enum xdp_reason reason = XDP_REASON_PASS;
	struct clock clk = {.cfg = cfg};
	struct rate_value *v;
	__u64 wait = 0, now;

	/*
	 * The coarse clock (the last tick) costs a fraction of the exact one but lags it by up
	 * to coarse_slack_ns: a hit by it plus the slack is a hit by the exact clock too. Only
	 * a refusal ending sooner than that pays for the exact read here; a packet the entry
	 * is not about reads no clock at all until it needs one.
	 */
	if (dc && cache_matches(cfg, dc, p, key, class)) {
		if (cfg->coarse_slack_ns &&
		    bpf_ktime_get_coarse_ns() + cfg->clock_offset_ns + cfg->coarse_slack_ns <
			dc->until_ns)
			return cache_repeat(dc, key, lists_generation);
		if (clock_now(&clk) < dc->until_ns)
			return cache_repeat(dc, key, lists_generation);
	}
	v = source_entry(cfg, p, &clk);
	/* The LRU map always makes room: no entry means the new-source budget is spent. */
	if (!v)
		return XDP_REASON_NEW_SOURCE;
	now = clock_now(&clk);
	if (dc)
		cache_flush(dc, v, p, key);
	__sync_fetch_and_add(&v->packets, 1);
	if (class == XDP_CLASS_SYN && !tb_take(&v->syn_tat, &cfg->syn, now)) {
		reason = XDP_REASON_SYN_RATE;
		wait = tb_wait_ns(v->syn_tat, &cfg->syn, now);
	} else if (class == XDP_CLASS_UDP && !tb_take(&v->udp_tat, &cfg->udp, now)) {
		reason = XDP_REASON_UDP_RATE;
		wait = tb_wait_ns(v->udp_tat, &cfg->udp, now);
	} else if (class == XDP_CLASS_ICMP && !tb_take(&v->icmp_tat, &cfg->icmp, now)) {
		reason = XDP_REASON_ICMP_RATE;
		wait = tb_wait_ns(v->icmp_tat, &cfg->icmp, now);
	} else if (!tb_take(&v->pkt_tat, &cfg->pkt, now)) {
		reason = XDP_REASON_PKT_RATE;
		wait = tb_wait_ns(v->pkt_tat, &cfg->pkt, now);
	}
	if (reason == XDP_REASON_PASS)
		return reason;
	__sync_fetch_and_add(&v->drops, 1);
	if (dc && wait)
		cache_refusal(cfg, lists_generation, dc, v, p, key, class, reason, wait, now);
	return reason;
}

SEC("xdp")
int xdp_shield(struct xdp_md *ctx)
{
	struct pkt p = {};
	const struct xdp_config *cfg;
	struct xdp_drop_cache *dc;
	__u64 key[2], lists = 0, *gen;
	enum xdp_reason reason;
	__u32 zero = 0;
	__u8 class;

	reason = parse(ctx, &p);
	if (reason != XDP_REASON_PASS)
		return verdict(reason);
	cfg = bpf_map_lookup_elem(&config, &zero);
	dc = bpf_map_lookup_elem(&drop_cache, &zero);
	/* Read before the lists: a writer replaces it after its change (see lists_gen). */
	gen = bpf_map_lookup_elem(&lists_gen, &zero);
	if (gen)
		lists = *(volatile __u64 *)gen;
	class = packet_class(&p);
	cache_key(&p, key);
	if (cfg && dc) {
		reason = early_refusal(cfg, dc, &p, key, class, lists);
		if (reason != XDP_REASON_PASS)
			return verdict(reason);
	}
	if (in_list(&p, &deny_v4, &deny_v6))
		return verdict(XDP_REASON_DENY);
	if (in_list(&p, &allow_v4, &allow_v6))
		return verdict(XDP_REASON_ALLOW);
	if (p.nd)
		return verdict(XDP_REASON_ND);
	if (!cfg)
		return verdict(XDP_REASON_PASS);
	if (class == XDP_CLASS_SYN && !port_allowed(cfg, p.dport))
		return verdict(XDP_REASON_PORT);
	return verdict(take_tokens(cfg, &p, dc, key, class, lists));
}

char LICENSE[] SEC("license") = "GPL";
