/*
 * Kernel/userspace ABI of the XDP edge shield (bpf/xdp_shield.bpf.c): map keys, values and
 * the verdict-reason enum. Every map is pinned under edge.pin_dir by its name below and is
 * read by xgate (edge/), xgatectl and bpftool; changing a layout breaks pinned maps that
 * survive a restart, so append, never reorder.
 */
#ifndef XGATE_MAPS_XDP_SHIELD_H
#define XGATE_MAPS_XDP_SHIELD_H

#include <linux/types.h>

#include "maps/token_bucket.h"

/*
 * Why a packet got its verdict, in one list that makes both the enum the program and
 * userspace switch on and the field names of the "stats" counters (lower-case name):
 * X(NAME, name, what it means). Passing verdicts come first (see XDP_REASON_ND).
 */
#define XDP_REASONS(X)                                                                            \
	X(PASS, pass, "passed every check")                                                       \
	X(ALLOW, allow, "source in allow_v4/allow_v6: passed without limits")                     \
	X(NON_IP, non_ip, "ARP and other non-IP EtherTypes: passed")                              \
	X(ND, nd, "IPv6 neighbour discovery (hop limit 255): never limited")                      \
	X(DENY, deny, "source in deny_v4/deny_v6")                                                \
	X(PORT, port, "new TCP connection to a port not in allow_tcp_ports")                      \
	X(SYN_RATE, syn_rate, "per-source SYN bucket empty")                                      \
	X(PKT_RATE, pkt_rate, "per-source all-packets bucket empty")                              \
	X(UDP_RATE, udp_rate, "per-source UDP bucket empty")                                      \
	X(ICMP_RATE, icmp_rate, "per-source ICMP/ICMPv6 bucket empty")                            \
	X(BAD_ETH, bad_eth, "frame shorter than its Ethernet/VLAN headers")                       \
	X(BAD_VLAN, bad_vlan, "more than two VLAN tags")                                          \
	X(BAD_IPV4, bad_ipv4, "truncated, version, ihl < 5, tot_len inconsistent")                \
	X(BAD_IPV6, bad_ipv6, "truncated, version, payload_len beyond the frame")                 \
	X(BAD_IPV6_EXT, bad_ipv6_ext, "extension header truncated or chain too long")             \
	X(BAD_TCP, bad_tcp, "truncated, doff < 5, options beyond the packet")                     \
	X(BAD_TCP_FLAGS, bad_tcp_flags, "no flags, SYN+FIN, SYN+RST, FIN+PSH+URG")                \
	X(BAD_UDP, bad_udp, "truncated, length field inconsistent")                               \
	X(BAD_ICMP, bad_icmp, "truncated ICMP/ICMPv6 header")                                     \
	X(NEW_SOURCE, new_source, "an untracked source while new ones exceed new_sources_per_s")

#define XDP_REASON_ENUM_(NAME, name, what) XDP_REASON_##NAME,
enum xdp_reason { XDP_REASONS(XDP_REASON_ENUM_) XDP_REASON_MAX };

/*
 * The single entry of the per-CPU "stats" array: one packet counter per reason, the
 * field named after it, so `bpftool map dump` prints {"pass": N, "deny": N, ...} per CPU.
 * An array of one entry rather than a hash keyed by reason: the program's lookup is
 * inlined to a pointer computation (a hash lookup cost ~20 ns per packet, as much as the
 * rest of the deny path). The program indexes the counters by reason: they are laid out
 * in enum order.
 */
#define XDP_REASON_FIELD_(NAME, name, what) __u64 name;
struct xdp_stats {
	XDP_REASONS(XDP_REASON_FIELD_)
};
_Static_assert(sizeof(struct xdp_stats) == XDP_REASON_MAX * sizeof(__u64),
	       "struct xdp_stats holds one counter per reason, in enum order");

/* Extension headers walked before giving up (XDP_REASON_BAD_IPV6_EXT). */
#define XDP_IPV6_EXT_MAX 6

/* LPM trie keys for deny_v4/allow_v4 and deny_v6/allow_v6 (addresses in network order). */
struct lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/*
 * Who put a CIDR in the list. A reload re-asserts the entries of the config (sets
 * from_config) and removes those it no longer lists only if no operator added them too
 * (from_operator); entries added with xgatectl survive reloads and restarts.
 */
struct cidr_value {
	__u8 from_config;
	__u8 from_operator;
	__u8 pad[6];
};

/* Per-source buckets: IPv4 by /32, IPv6 by /64 (one subscriber's allocation). */
struct rate_v4_key {
	__u8 addr[4];
};

struct rate_v6_key {
	__u8 prefix[8];
};

/* Bucket words (token_bucket.h) and counters; updated atomically from every CPU. */
struct rate_value {
	__u64 syn_tat;
	__u64 pkt_tat;
	__u64 udp_tat;
	__u64 icmp_tat;
	__u64 packets; /* seen from this source past deny/allow */
	__u64 drops;   /* of them dropped by a bucket */
};

/*
 * The single entry of the per-CPU "drop_cache" array: the last source this CPU refused
 * and until when its bucket stays empty. A flood from one source then costs one per-CPU
 * lookup and a compare instead of the list lookups and the shared LRU lookup: the shared
 * bucket cannot hold a token before until_ns (other CPUs only spend tokens), so the verdict
 * is the one the full path would give, as long as the config (rates, ports) and the
 * deny/allow lists are the ones it was computed under (generation, lists_generation).
 * key: the whole source address, IPv4 in its first 4 bytes (the rest 0). The check made
 * before the lists needs the address itself (a list entry may single out one IPv6 address
 * of a /64); the one made after them matches the source's bucket (its /64 for IPv6).
 * pending counts packets dropped from the cache and not yet added to the source's
 * rate_value (added on its next full-path visit; readers add it themselves).
 */
struct xdp_drop_cache {
	__u64 key[2];
	__u64 until_ns;
	__u64 pending;
	__u64 lists_generation; /* the lists_gen word it was computed under */
	/* Before the lists, the cache is judged by jiffies (an inlined load, no helper call):
	 * it applies while jiffies < until_jiffies, set two ticks short of until_ns. */
	__u64 until_jiffies;
	__u32 generation;	/* xdp_config.generation it was computed under */
	__u8 class;		/* enum xdp_pkt_class of the packets it applies to */
	__u8 reason;		/* the verdict to repeat */
	__u8 family;		/* 4 or 6; 0: empty */
	__u8 pad;
};

/*
 * The one __u64 of the "lists_gen" array: a value that every writer of deny_v4/deny_v6/
 * allow_v4/allow_v6 replaces with a fresh random one after its change (edge_lists_changed),
 * so the drop cache, checked before the lists, never repeats a verdict for a source the
 * lists now treat differently. Random rather than incremented: writers need no
 * read-modify-write, so a reload and an xgatectl racing cannot lose a change. A list
 * edited by hand (bpftool) without writing it keeps a cached refusal until the source's
 * bucket refills (at most one token interval).
 */

/*
 * Each CPU's entry of "new_sources": its bucket of sources it may start tracking, and a
 * memo of its last refusal so a flood of untracked sources (each a miss of the rate maps)
 * is refused without reading the exact clock: while jiffies < until_jiffies under config
 * generation, the bucket (spent only by this CPU) holds no token.
 */
struct xdp_new_sources {
	__u64 word;
	__u64 until_jiffies;
	__u32 generation;
	__u32 pad;
};

/* Which bucket decides a packet's fate after the all-packets one. */
enum xdp_pkt_class {
	XDP_CLASS_SYN,
	XDP_CLASS_UDP,
	XDP_CLASS_ICMP,
	XDP_CLASS_OTHER,
};

#define XDP_CFG_PORT_POLICY (1U << 0) /* drop SYNs to ports not in tcp_ports */

/*
 * The one entry of the "config" array. Rates are precomputed tb_params (interval 0 =
 * unlimited). clock_offset_ns is added to bpf_ktime_get_ns(): tests advance time with it
 * instead of sleeping; the gateway keeps it 0.
 */
struct xdp_config {
	struct tb_params syn;
	struct tb_params pkt;
	struct tb_params udp;
	struct tb_params icmp;
	__u64 clock_offset_ns;
	__u32 flags;
	__u32 generation; /* changes on every write: invalidates drop_cache verdicts */
	__u64 tcp_ports[65536 / 64]; /* bit p set: new connections to port p allowed */
	/* Each CPU's budget of sources it starts tracking (its share of new_sources_per_s). */
	struct tb_params new_source;
	/*
	 * How far bpf_ktime_get_coarse_ns() may lag bpf_ktime_get_ns(): two ticks (the coarse
	 * clock's resolution) so a late tick is covered. 0: the drop cache reads only the exact
	 * clock.
	 */
	__u64 coarse_slack_ns;
	/* One jiffy in ns (the coarse clock's resolution); 0: no jiffies-judged cache hits. */
	__u64 tick_ns;
};

#define XDP_LPM_MAX_ENTRIES 16384
#define XDP_RATE_MAX_ENTRIES 65536

#endif
