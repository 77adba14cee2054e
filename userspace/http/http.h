/*
 * HTTP/1.1 message parsing (RFC 9110/9112), strict, zero-copy over a contiguous buffer.
 * The parser never allocates: header names/values point into the caller's buffer, which
 * must stay unchanged while the parsed message is used.
 *
 * Parsing is restartable: call again with the same (grown) buffer when it returns
 * HTTP_INCOMPLETE. The cost of re-parsing is bounded by max_header_bytes.
 */
#ifndef XGATE_HTTP_HTTP_H
#define XGATE_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_MAX_HEADERS 100

enum http_method {
	HTTP_OTHER = 0, /* a valid token we do not know: passed through */
	HTTP_GET,
	HTTP_HEAD,
	HTTP_POST,
	HTTP_PUT,
	HTTP_DELETE,
	HTTP_PATCH,
	HTTP_OPTIONS,
	HTTP_CONNECT,
	HTTP_TRACE,
	HTTP_METHOD_COUNT
};

enum http_body {
	HTTP_BODY_NONE,	   /* no body (requests without CL/TE, HEAD/1xx/204/304 responses) */
	HTTP_BODY_LENGTH,  /* content_length bytes */
	HTTP_BODY_CHUNKED, /* Transfer-Encoding: chunked */
	HTTP_BODY_EOF,	   /* responses only: delimited by connection close */
};

struct http_str {
	const char *p;
	size_t len;
};

struct http_header {
	struct http_str name, value; /* value without leading/trailing whitespace */
};

/* Result codes: > 0 is the length of the complete head (through the empty line). */
enum {
	HTTP_INCOMPLETE = 0,
	HTTP_ERR_BAD = -400,	       /* malformed or ambiguous: respond 400 and close */
	HTTP_ERR_URI_TOO_LONG = -414,  /* request line longer than the limit */
	HTTP_ERR_HEADERS_TOO_LARGE = -431,
	HTTP_ERR_NOT_IMPLEMENTED = -501, /* e.g. Transfer-Encoding other than chunked */
	HTTP_ERR_VERSION = -505,	 /* not HTTP/1.0 or HTTP/1.1 */
};

struct http_limits {
	size_t max_request_line; /* 414 beyond; 0 = max_header_bytes */
	size_t max_header_bytes; /* 431 beyond (whole head incl. request line) */
};

struct http_request {
	enum http_method method;
	struct http_str method_str;
	struct http_str target; /* request-target as sent (origin-form or absolute-form) */
	struct http_str path;	/* path part of target, never empty ("/" at least) */
	struct http_str query;	/* after '?', without it; len 0 when absent */
	int minor_version;	/* 0 or 1 */
	struct http_header headers[HTTP_MAX_HEADERS];
	int nheaders;
	struct http_str host; /* Host header value (or authority from absolute-form) */
	enum http_body body;
	uint64_t content_length;
	bool keep_alive;      /* after Connection/version rules */
	bool expect_continue; /* Expect: 100-continue */
	bool upgrade;	      /* Connection: upgrade + Upgrade header present */
	struct http_str upgrade_proto;
	struct http_str connection; /* raw Connection header value, for hop-by-hop tokens */
};

struct http_response {
	int status;
	int minor_version;
	struct http_str reason;
	struct http_header headers[HTTP_MAX_HEADERS];
	int nheaders;
	enum http_body body;
	uint64_t content_length;
	bool keep_alive;
	struct http_str connection;
};

/*
 * Parses a request head. Rejects (HTTP_ERR_BAD) everything that could be read two ways:
 * CL together with TE, differing duplicate CL, TE that is not exactly "chunked",
 * obs-fold, whitespace before a colon, control characters or bare CR/LF in the request
 * line or in header names/values, missing Host in HTTP/1.1, several Host headers,
 * invalid method/header tokens, a request-target that is not origin-form (absolute-form
 * is accepted and split; authority-form only for CONNECT; "*" only for OPTIONS).
 */
int http_parse_request(const char *buf, size_t len, const struct http_limits *limits,
		       struct http_request *req);

/*
 * Parses a response head. `request_method` decides bodiless responses (HEAD, 2xx to CONNECT);
 * 1xx, 204, 304 never have a body. Same strictness as requests.
 */
int http_parse_response(const char *buf, size_t len, const struct http_limits *limits,
			enum http_method request_method, struct http_response *resp);

/* Case-insensitive header lookup; returns the first match or NULL. */
const struct http_header *http_find_header(const struct http_header *headers, int n,
					   const char *name);
bool http_str_eq_nocase(struct http_str s, const char *lit);
/* true when `token` is in the comma-separated list `list` (case-insensitive). */
bool http_list_has_token(struct http_str list, const char *token, size_t token_len);
/*
 * Hop-by-hop: Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
 * Upgrade, Proxy-Authenticate, Proxy-Authorization, and any header named in `connection`.
 */
bool http_is_hop_by_hop(struct http_str name, struct http_str connection);

const char *http_method_name(enum http_method m);
const char *http_status_reason(int status);

/*
 * Streaming chunked-body scanner. The proxy forwards the raw chunked bytes it has
 * validated, so nothing the upstream sees can be framed differently than we framed it.
 */
struct http_chunked {
	int state;	       /* internal */
	uint64_t remaining;    /* data bytes left in the current chunk */
	size_t line_len;       /* bytes of the current size/trailer line so far (bounded) */
	uint64_t total;	       /* decoded data bytes so far */
	bool done;	       /* the final CRLF after last-chunk and trailers was seen */
};
void http_chunked_init(struct http_chunked *c);
/*
 * Consumes up to len bytes of chunked body; returns bytes that belong to this body
 * (< len only when done), or -1 on a framing error (bad hex, size overflow, missing CRLF,
 * bare LF, line too long). Optional `data` receives (offset, length) spans of payload
 * bytes within buf so a caller can decode instead of forward (up to *ndata entries; the
 * call stops early rather than overflow them).
 */
struct http_span {
	size_t off, len;
};
ssize_t http_chunked_scan(struct http_chunked *c, const char *buf, size_t len,
			  struct http_span *data, size_t *ndata);

/*
 * Normalizes a request path in place for routing and forwarding: decodes percent-encoded
 * unreserved characters, resolves "." and ".." segments (RFC 3986 5.2.4). Returns the new
 * length, or -1 when the path is invalid (escapes the root, encodes '/', '\\' or NUL, bad
 * percent-encoding).
 */
ssize_t http_path_normalize(char *path, size_t len);

/* X-Request-Id validity: 1..128 chars of [A-Za-z0-9._:-]. */
bool http_request_id_valid(struct http_str id);

#endif
