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
 * Why a packet got its verdict; the key of the per-CPU "stats" map. The names reach the
 * object's BTF through that map's key type, so bpftool prints them.
 */
enum xdp_reason {
	XDP_REASON_PASS,	  /* passed every check */
	XDP_REASON_ALLOW,	  /* source in allow_v4/allow_v6: passed without limits */
	XDP_REASON_NON_IP,	  /* ARP and other non-IP EtherTypes: passed */
	XDP_REASON_ND,		  /* IPv6 neighbour discovery (hop limit 255): never limited */
	XDP_REASON_DENY,	  /* source in deny_v4/deny_v6 */
	XDP_REASON_PORT,	  /* new TCP connection to a port not in allow_tcp_ports */
	XDP_REASON_SYN_RATE,	  /* per-source SYN bucket empty */
	XDP_REASON_PKT_RATE,	  /* per-source all-packets bucket empty */
	XDP_REASON_UDP_RATE,	  /* per-source UDP bucket empty */
	XDP_REASON_ICMP_RATE,	  /* per-source ICMP/ICMPv6 bucket empty */
	XDP_REASON_BAD_ETH,	  /* frame shorter than its Ethernet/VLAN headers */
	XDP_REASON_BAD_VLAN,	  /* more than two VLAN tags */
	XDP_REASON_BAD_IPV4,	  /* truncated, version, ihl < 5, tot_len inconsistent */
	XDP_REASON_BAD_IPV6,	  /* truncated, version, payload_len beyond the frame */
	XDP_REASON_BAD_IPV6_EXT,  /* extension header truncated or chain too long */
	XDP_REASON_BAD_TCP,	  /* truncated, doff < 5, options beyond the packet */
	XDP_REASON_BAD_TCP_FLAGS, /* no flags, SYN+FIN, SYN+RST, FIN+PSH+URG */
	XDP_REASON_BAD_UDP,	  /* truncated, length field inconsistent */
	XDP_REASON_BAD_ICMP,	  /* truncated ICMP/ICMPv6 header */
	XDP_REASON_MAX,
};

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
	__u32 pad;
	__u64 tcp_ports[65536 / 64]; /* bit p set: new connections to port p allowed */
};

#define XDP_LPM_MAX_ENTRIES 16384
#define XDP_RATE_MAX_ENTRIES 65536

#endif
