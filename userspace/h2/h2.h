/*
 * HTTP/2 server sessions: nghttp2 as the frame and HPACK engine, with the limits an edge
 * needs against the HTTP/2 attack classes, and nothing of sockets or rings. The host feeds
 * the bytes it received (h2s_recv), takes the bytes to send (h2s_send) and gets one
 * callback per request whose header block nghttp2 validated (pseudo-headers, connection-
 * specific fields, TE other than "trailers", uppercase names are stream errors there).
 *
 * Mitigations, all per connection:
 *   Rapid Reset (CVE-2023-44487)   client RST_STREAMs drain a token bucket (burst, rate
 *                                  per second); empty: GOAWAY ENHANCE_YOUR_CALM.
 *   CONTINUATION flood (CVE-2024-28182)  the frame headers are scanned before nghttp2 sees
 *                                  them: a header block over max_block_bytes or with more
 *                                  than max_continuations CONTINUATIONs is GOAWAY
 *                                  ENHANCE_YOUR_CALM, its frames never decoded.
 *   HPACK bomb                     the decoded header list (name + value + 32 per field,
 *                                  RFC 9113 6.5.2) is bounded by max_header_bytes: past it
 *                                  the request is refused with 431 (on_request's too_large),
 *                                  the rest of the block decoded (HPACK state) but not kept.
 *   SETTINGS/PING flood            nghttp2's outbound ACK queue is bounded (max_outbound_ack):
 *                                  past it the session fails (h2s_recv < 0). The host
 *                                  reads nothing while output is unflushed, so the queue
 *                                  only grows while the client does not read.
 *   concurrency                    SETTINGS_MAX_CONCURRENT_STREAMS; beyond it REFUSED_STREAM.
 */
#ifndef XGATE_H2_H2_H
#define XGATE_H2_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/http.h"

#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

/* RFC 9113 7 error codes the host uses. */
#define H2_NO_ERROR 0x0
#define H2_PROTOCOL_ERROR 0x1
#define H2_INTERNAL_ERROR 0x2
#define H2_REFUSED_STREAM 0x7
#define H2_CANCEL 0x8
#define H2_ENHANCE_YOUR_CALM 0xb

struct h2s_limits {
	uint32_t max_concurrent_streams;
	uint32_t max_header_bytes;  /* decoded header list */
	uint32_t max_block_bytes;   /* encoded header block, HEADERS + CONTINUATIONs */
	uint32_t max_continuations; /* per header block */
	uint32_t reset_burst, reset_per_s;
	uint32_t max_outbound_ack;
};

/* A request header list as nghttp2 decoded it: pseudo-headers first. */
struct h2s_request {
	const struct http_header *fields;
	int nfields;
	bool end_stream; /* no body follows */
	bool too_large;	 /* the list went past max_header_bytes: fields is empty */
};

struct h2s_callbacks {
	/* A request's header block is complete and valid. The fields are valid only during
	 * the call. */
	void (*on_request)(void *arg, int32_t sid, const struct h2s_request *req);
	/* Request body bytes of a stream the host set a pointer for (h2s_set_stream_host). */
	void (*on_data)(void *arg, int32_t sid, void *host, const char *p, size_t n);
	/* The client ended its side of the stream (END_STREAM). */
	void (*on_end)(void *arg, int32_t sid, void *host);
	/* The stream is closed (response sent, reset by either side, session ending). */
	void (*on_close)(void *arg, int32_t sid, void *host, uint32_t error_code);
	/* The request's trailers (valid during the call), before on_end; NULL: they are
	 * dropped. A block over max_header_bytes is dropped too. */
	void (*on_trailers)(void *arg, int32_t sid, void *host, const struct http_header *f, int n);
};

struct h2s;

/* NULL on memory exhaustion. Queues the server's SETTINGS. */
struct h2s *h2s_new(const struct h2s_limits *lim, const struct h2s_callbacks *cb, void *arg);
/* Frees the session without calling on_close (the host ends its streams itself). */
void h2s_free(struct h2s *h);

/* Feeds received bytes (all of them are taken). 0, or -1 when the connection must end:
 * a protocol error or a mitigation; the GOAWAY then waits in the output. */
int h2s_recv(struct h2s *h, const char *p, size_t n, uint64_t now_ms);
/* Copies up to cap bytes of output into out; returns how many. */
size_t h2s_send(struct h2s *h, char *out, size_t cap);
/* Output is waiting (queued frames or a partly copied one). */
bool h2s_want_write(const struct h2s *h);
/* The session is over: GOAWAY exchanged or a fatal error, nothing more to send. */
bool h2s_done(const struct h2s *h);
/* Why the session failed ("" while it did not): for logs and tests. */
const char *h2s_error(const struct h2s *h);

void h2s_set_stream_host(struct h2s *h, int32_t sid, void *host);
/* Open streams (requests not yet answered and closed). */
size_t h2s_open_streams(const struct h2s *h);

/*
 * Answers a stream: status, header fields (names are lowercased; connection-specific
 * ones are dropped), the body (copied; NULL with has_body false: HEADERS ends the
 * stream) and trailers (NULL/0: none). false on memory exhaustion or a closed stream.
 */
bool h2s_respond(struct h2s *h, int32_t sid, int status, const struct http_header *fields,
		 int nfields, const char *body, size_t len, bool has_body,
		 const struct http_header *trailers, int ntrailers);
/*
 * A streaming answer: HEADERS now, DATA as the host writes it, paced by the client's
 * flow-control window. At most H2S_STREAM_BUF bytes wait per stream: h2s_stream_write
 * takes what fits (h2s_stream_room) and the host holds the rest back until the room
 * grows (after h2s_send framed some). h2s_stream_end ends the body, with trailers
 * (copied; NULL/0: none). Each false on memory exhaustion or a closed stream.
 */
#define H2S_STREAM_BUF (64 * 1024)
bool h2s_respond_stream(struct h2s *h, int32_t sid, int status, const struct http_header *fields,
			int nfields);
size_t h2s_stream_room(struct h2s *h, int32_t sid);
size_t h2s_stream_write(struct h2s *h, int32_t sid, const char *p, size_t n);
bool h2s_stream_end(struct h2s *h, int32_t sid, const struct http_header *trailers, int ntrailers);
/* Body bytes written but not yet framed. */
size_t h2s_stream_pending(struct h2s *h, int32_t sid);

/*
 * Request flow control: a held stream's DATA is not acknowledged (no WINDOW_UPDATE for
 * the stream) until the host consumed it, so a client sends at most one stream window
 * ahead of what the host passed on. The connection window is granted as DATA arrives.
 * hold false: everything held so far is consumed, and later DATA at once.
 */
void h2s_hold_window(struct h2s *h, int32_t sid, bool hold);
void h2s_consume(struct h2s *h, int32_t sid, size_t n);

/* Resets a stream (e.g. a request body over its bound after the answer was sent). */
void h2s_reset(struct h2s *h, int32_t sid, uint32_t error_code);
/* Graceful shutdown: GOAWAY NO_ERROR naming the last stream taken; those finish, no new
 * ones are accepted. Harmless when called again. */
void h2s_goaway(struct h2s *h);
/* Immediate GOAWAY with an error (idle timeout, mitigations). */
void h2s_terminate(struct h2s *h, uint32_t error_code, const char *why);

/* A grpc-timeout value ("100m", "5S"; gRPC over HTTP/2) in milliseconds (rounded up);
 * false when it is malformed. */
bool h2_grpc_timeout_ms(struct http_str v, uint64_t *ms);

#endif
