/*
 * Kernel/userspace ABI of the sockmap splice (bpf/splice.bpf.c, userspace/splice/).
 * Every socket is keyed by its socket cookie (SO_COOKIE). Each map has one writer:
 * splice_state is written only by the verdict program, splice_ctl only by userspace, so a
 * userspace update can never overwrite a counter the program is advancing.
 */
#ifndef XGATE_MAPS_SPLICE_MAPS_H
#define XGATE_MAPS_SPLICE_MAPS_H

#include <linux/types.h>

#define SPLICE_MAX_SOCKETS 65536
/* Bytes redirected to a peer that its TCP has not yet taken into its send queue. */
#define SPLICE_DEFAULT_INFLIGHT_LIMIT (4u << 20)

enum splice_stat {
	SPLICE_STAT_REDIRECTED_BYTES, /* moved socket-to-socket in the kernel */
	SPLICE_STAT_PASSED_BYTES,     /* delivered to userspace (before pairing, fallback) */
	SPLICE_STAT_FALLBACKS,	      /* directions switched to the userspace relay */
	SPLICE_STAT_REDIRECT_ERRORS,  /* peer gone or redirect refused: passed instead */
	SPLICE_STAT_COUNT
};

enum splice_state_flags {
	SPLICE_F_PEER_SEQ = 1 << 0, /* peer_seq holds a valid baseline */
	SPLICE_F_FALLBACK = 1 << 1, /* bound exceeded: this direction is relayed by userspace */
};

/* Per source socket: the direction "this socket -> its peer". Written by BPF only. */
struct splice_state {
	__u64 passed;	  /* bytes handed to userspace (recv) since splice_add */
	__u64 redirected; /* bytes redirected to the peer's egress */
	__u64 consumed;	  /* of those, bytes the peer's TCP took (its write_seq progress) */
	__u32 peer_seq;	  /* peer write_seq at the last verdict */
	__u32 flags;	  /* enum splice_state_flags */
};

/* Per source socket, written by userspace only. */
struct splice_ctl {
	__u64 peer_cookie; /* 0: not paired, always pass */
	__u64 handled;	   /* bytes userspace read from this socket and fully forwarded */
	/* Not used by the program: baselines at pairing for splice_poll()'s queued bytes. */
	__u64 peer_written_base; /* bytes the peer's TCP had been given */
	__u64 handled_base;
};

#endif
