/*
 * In-kernel splicing of long-lived flows with sockmap: an sk_skb verdict program redirects
 * every byte received on one socket to its peer's send path (bpf/splice.bpf.c).
 *
 * Contract for the proxy (one struct splice per process, thread-safe: all state is in BPF
 * maps and atomics):
 *
 * 1. Enrol before reading. splice_add(fd) must run before the first byte is read from fd:
 *    for an L4 listener right after accept(); for the upstream side right after connect()
 *    completes (before writing the request); for a WebSocket client connection at the
 *    Upgrade request, which is safe because an RFC 6455 client sends nothing until it has
 *    the 101 (check that the request was the last byte read). From then on every byte the
 *    proxy reads from fd passed the verdict program; count them ("handled" below).
 *    Reading and writing an enrolled socket works as usual (recv/io_uring).
 *
 * 2. Pair. splice_pair(a, handled_a, b, handled_b) with the number of bytes read from each
 *    socket since splice_add and already fully written to the other side (or consumed, e.g.
 *    the HTTP upgrade request). For WebSocket: read the upstream's 101, write the (rewritten)
 *    101 and any bytes that followed it to the client, then pair. Redirection of a
 *    direction starts by itself as soon as the kernel has handed userspace no more than
 *    "handled" bytes from it. If more had already arrived (they wait in the socket's
 *    receive queue), the proxy keeps reading the socket as usual, writes those bytes
 *    verbatim and fully to the peer, then reports the new total with splice_handled(); the
 *    program redirects from the next byte on. No byte is lost or reordered, because a
 *    direction is redirected only while userspace holds nothing of it. After pairing the
 *    proxy writes to a spliced socket only such leftovers, and relayed bytes in RELAY state.
 *
 * 3. Watch every spliced socket for POLLIN | POLLRDHUP (POLLERR/POLLHUP always). Measured
 *    on Linux 6.18 (tests/bpf/test_splice.c): redirected bytes do not wake the poll and
 *    recv() returns EAGAIN; a FIN from the remote end makes the socket readable and recv()
 *    returns 0; an RST gives POLLERR|POLLHUP and recv() fails with ECONNRESET. On POLLIN:
 *      - recv() > 0: leftover or fallback bytes, handle per splice_poll() below;
 *      - recv() == 0 (half-close from that side): wait until splice_poll() on that socket
 *        reports queued == 0 (re-check every few ms; bytes redirected before the FIN may
 *        still be on their way into the peer's socket), then shutdown(peer, SHUT_WR). Keep
 *        the other direction spliced. When both directions have seen EOF, close both;
 *      - error (ECONNRESET etc.): close both; set SO_LINGER {1, 0} on the peer first so
 *        the reset reaches the other end.
 *    Before close() of a paired socket call splice_unpair(a, b) (or splice_remove(fd) for
 *    one that was enrolled but never paired): it removes the sockets from the sockhash and
 *    frees their entries. Never unpair a flow that goes on: leaving the sockhash discards
 *    bytes the kernel has queued on the socket for userspace.
 *
 * 4. Bound and fallback. Sockmap applies no backpressure: when a receiver stops reading,
 *    redirected bytes pile up in the kernel. The program therefore caps, per direction, the
 *    bytes redirected but not yet taken into the peer's TCP send queue at inflight_limit
 *    (splice_set_inflight_limit, default 4 MiB); kernel memory per direction stays below
 *    that plus the peer's send buffer. Past the cap the direction falls back, for good, to
 *    the userspace relay: bytes then land in the source socket's receive queue (TCP flow
 *    control applies again) and wake POLLIN. splice_poll() tells the proxy what to do:
 *      SPLICE_KERNEL    the kernel moves the bytes; recv() data here is leftover from
 *                       before pairing: forward it and call splice_handled();
 *      SPLICE_DRAINING  fell back, but bytes redirected earlier are still queued for the
 *                       peer: do not write to the peer yet (ordering); stop reading this
 *                       socket and re-check in a few ms (a receiver that never reads leaves
 *                       it here until the idle timeout closes the flow);
 *      SPLICE_RELAY     fell back and drained: relay this direction in userspace (read
 *                       this socket, write the peer, with normal backpressure) until close;
 *      SPLICE_STALLED   like DRAINING, but the peer's send queue is empty, so the kernel
 *                       is not moving the queued bytes. Transient right after a send-buffer
 *                       stall; if it persists for a second, reset both sockets: measured on
 *                       6.18, a psock whose redirects met a full send buffer can stop
 *                       pushing for good (tests/bpf/test_splice.c reports when it does).
 *    Only a receiver that stops reading reaches the bound: the fallback then keeps memory
 *    bounded, and the worst case is that this flow (only) is reset.
 */
#ifndef XGATE_SPLICE_SPLICE_H
#define XGATE_SPLICE_SPLICE_H

#include <stdbool.h>
#include <stdint.h>

struct splice; /* one per process: the loaded program and its sockhash */

/* Loads the programs; NULL (with a reason logged) when sockmap is unavailable. */
struct splice *splice_open(void);
void splice_close(struct splice *s);
/* Whether splice_open() can work here (probed once by loading the program). */
bool splice_supported(void);

/* Enrols a socket (see 1). 0 or -errno (-ENOSPC when the map is full). */
int splice_add(struct splice *s, int fd);
/* Unenrols a socket that was never paired, before close(). */
void splice_remove(struct splice *s, int fd);

/*
 * Makes a and b each other's redirect target (see 2). Sockets not yet enrolled are
 * enrolled here, which is only correct when nothing was read from them (handled == 0).
 * 0 or -errno; on error nothing is spliced and the proxy relays the flow itself.
 */
int splice_pair(struct splice *s, int fd_a, uint64_t handled_a, int fd_b, uint64_t handled_b);
/* Total bytes read from fd since splice_add and fully forwarded (see 2). 0 or -errno. */
int splice_handled(struct splice *s, int fd, uint64_t handled_total);
/* Removes both sockets (on close). */
void splice_unpair(struct splice *s, int fd_a, int fd_b);

enum splice_dir_state { SPLICE_KERNEL, SPLICE_DRAINING, SPLICE_RELAY, SPLICE_STALLED };

/* The direction "fd -> its peer". */
struct splice_status {
	enum splice_dir_state state;
	uint64_t passed;     /* bytes handed to userspace on fd since splice_add */
	uint64_t redirected; /* bytes moved to the peer in the kernel */
	uint64_t queued;     /* of those, not yet in the peer's TCP send queue */
};
int splice_poll(struct splice *s, int fd, int peer_fd, struct splice_status *out);

struct splice_flow_stats {
	uint64_t bytes_a_to_b, bytes_b_to_a;
};
int splice_flow_stats(struct splice *s, int fd_a, struct splice_flow_stats *out);

/* Bytes redirected but not yet taken by the peer's TCP, per direction (see 4). */
void splice_set_inflight_limit(struct splice *s, uint64_t bytes);

struct splice_stats {
	unsigned long flows_active, flows_total, bytes, fallbacks;
	unsigned long passed_bytes, redirect_errors;
};
void splice_stats_get(struct splice *s, struct splice_stats *out);

#endif
