/*
 * In-kernel splicing of long-lived flows with sockmap: an sk_skb verdict program redirects
 * every byte received on one socket to its peer's send path (bpf/splice.bpf.c).
 */
#ifndef XGATE_SPLICE_SPLICE_H
#define XGATE_SPLICE_SPLICE_H

#include <stdbool.h>
#include <stdint.h>

struct splice; /* one per process: the loaded program and its sockhash */

/* Loads the programs; NULL (with a reason logged) when sockmap is unavailable. */
struct splice *splice_open(void);
void splice_close(struct splice *s);
bool splice_supported(void);

/*
 * Puts both sockets in the map with each other as redirect target. Any bytes already read
 * from either side must have been forwarded by the caller before calling. 0 or -errno.
 */
int splice_pair(struct splice *s, int fd_a, int fd_b);
/* Removes a socket (on close or fallback). */
void splice_unpair(struct splice *s, int fd_a, int fd_b);

struct splice_flow_stats {
	uint64_t bytes_a_to_b, bytes_b_to_a;
};
int splice_flow_stats(struct splice *s, int fd_a, struct splice_flow_stats *out);

struct splice_stats {
	unsigned long flows_active, flows_total, bytes, fallbacks;
};
void splice_stats_get(struct splice *s, struct splice_stats *out);

#endif
