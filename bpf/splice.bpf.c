// SPDX-License-Identifier: GPL-2.0
/*
 * Sockmap splice: every byte received on a socket in splice_socks runs through this
 * stream verdict. Paired sockets have their bytes redirected to the peer's egress, so a
 * WebSocket or L4 flow never crosses into userspace. Three rules keep it correct:
 *  - order: redirection of a direction starts only once userspace has forwarded every
 *    byte it was handed (state.passed == ctl.handled); until then bytes keep going to
 *    userspace, behind the ones it is still forwarding;
 *  - bound: sockmap has no backpressure (the peer's psock queue grows without limit when
 *    its receiver stalls), so bytes redirected but not yet taken by the peer's TCP are
 *    capped at inflight_limit; past it the direction falls back to userspace for good
 *    (the bytes land in this socket's receive queue, where TCP flow control applies);
 *  - anything unexpected (peer gone, redirect refused) passes to userspace, never drops.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "maps/splice_maps.h"

/* Only the field the bound needs; CO-RE relocates it against the running kernel. */
struct tcp_sock {
	__u32 write_seq;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SPLICE_MAX_SOCKETS);
	__type(key, __u64);
	__type(value, __u64);
} splice_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SPLICE_MAX_SOCKETS);
	__type(key, __u64);
	__type(value, struct splice_state);
} splice_states SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SPLICE_MAX_SOCKETS);
	__type(key, __u64);
	__type(value, struct splice_ctl);
} splice_ctls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SPLICE_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} splice_stats SEC(".maps");

/* Userspace may change it at run time (mmap'd .data). */
__u64 inflight_limit = SPLICE_DEFAULT_INFLIGHT_LIMIT;

static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&splice_stats, &idx);

	if (v)
		*v += n;
}

/* Advances st->consumed by the peer's write_seq progress; false when the peer is gone. */
static __always_inline int update_consumed(struct splice_state *st, __u64 peer_cookie)
{
	struct bpf_sock *peer = bpf_map_lookup_elem(&splice_socks, &peer_cookie);
	struct tcp_sock *tp;
	__u32 seq;

	if (!peer)
		return 0;
	tp = bpf_skc_to_tcp_sock(peer);
	if (!tp) {
		bpf_sk_release(peer);
		return 0;
	}
	seq = tp->write_seq;
	bpf_sk_release(peer);
	/* 32-bit deltas accumulate into 64 bits: fine while < 4 GiB move between verdicts,
	 * which the in-flight bound guarantees. */
	if (st->flags & SPLICE_F_PEER_SEQ)
		st->consumed += (__u32)(seq - st->peer_seq);
	st->peer_seq = seq;
	st->flags |= SPLICE_F_PEER_SEQ;
	return 1;
}

static __always_inline int pass(struct splice_state *st, __u32 len)
{
	st->passed += len;
	stat_add(SPLICE_STAT_PASSED_BYTES, len);
	return SK_PASS;
}

SEC("sk_skb/stream_verdict")
int splice_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb), peer_cookie;
	struct splice_state *st;
	struct splice_ctl *ctl;
	__u32 len = skb->len;
	long ret;

	/* The FIN arrives as an empty skb; redirected, it would make the peer's psock report
	 * EPIPE and stop transmitting. Passed, it is the EOF userspace watches for. */
	if (!len)
		return SK_PASS;
	st = bpf_map_lookup_elem(&splice_states, &cookie);
	if (!st)
		return SK_PASS;
	if (st->flags & SPLICE_F_FALLBACK)
		return pass(st, len);
	ctl = bpf_map_lookup_elem(&splice_ctls, &cookie);
	if (!ctl || !ctl->peer_cookie || st->passed != ctl->handled)
		return pass(st, len);
	peer_cookie = ctl->peer_cookie;
	if (!update_consumed(st, peer_cookie)) {
		stat_add(SPLICE_STAT_REDIRECT_ERRORS, 1);
		return pass(st, len);
	}
	if (st->redirected - st->consumed + len > inflight_limit) {
		st->flags |= SPLICE_F_FALLBACK;
		stat_add(SPLICE_STAT_FALLBACKS, 1);
		return pass(st, len);
	}
	ret = bpf_sk_redirect_hash(skb, &splice_socks, &peer_cookie, 0);
	if (ret != SK_PASS) {
		stat_add(SPLICE_STAT_REDIRECT_ERRORS, 1);
		return pass(st, len);
	}
	st->redirected += len;
	stat_add(SPLICE_STAT_REDIRECTED_BYTES, len);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
