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
/* Used when limits is NULL or max_header_bytes is 0 (SPEC default). */
#define HTTP_DEFAULT_MAX_HEADER_BYTES 16384
/* Chunked framing bounds: one size/extension or trailer line incl. CRLF; all trailers. */
#define HTTP_CHUNK_LINE_MAX 4096
#define HTTP_CHUNK_TRAILER_MAX 16384

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
	HTTP_ERR_BAD = -400,	      /* malformed or ambiguous: respond 400 and close */
	HTTP_ERR_URI_TOO_LONG = -414, /* request line longer than the limit */
	HTTP_ERR_HEADERS_TOO_LARGE = -431,
	HTTP_ERR_NOT_IMPLEMENTED = -501, /* reserved; the parser itself never returns it */
	HTTP_ERR_VERSION = -505,	 /* not HTTP/1.0 or HTTP/1.1 */
};

struct http_limits {
	size_t max_request_line; /* 414 beyond (without CRLF); 0 = max_header_bytes */
	size_t max_header_bytes; /* 431 beyond (whole head incl. request line and final CRLF);
				    0 = HTTP_DEFAULT_MAX_HEADER_BYTES; capped at 1 GiB */
};

struct http_request {
	enum http_method method;
	struct http_str method_str;
	struct http_str target; /* request-target as sent (origin-form or absolute-form) */
	/*
	 * Path part of target, never empty. Points into the buffer except for absolute-form
	 * without a path, where it is a static "/" (http_path_normalize never writes to an
	 * already normal path). For OPTIONS * it is "*", for CONNECT the authority: both
	 * fail http_path_normalize, so they cannot match a route by accident.
	 */
	struct http_str path;
	struct http_str query; /* after '?', without it; len 0 when absent */
	int minor_version;     /* 0 or 1 */
	struct http_header headers[HTTP_MAX_HEADERS];
	int nheaders;
	struct http_str host; /* Host header value (or authority from absolute-form); "" if none */
	enum http_body body;
	uint64_t content_length; /* valid for HTTP_BODY_LENGTH (0 is a LENGTH body of 0) */
	bool keep_alive;	 /* after Connection/version rules */
	bool expect_continue;	 /* Expect: 100-continue */
	bool upgrade;		 /* Connection: upgrade + Upgrade header present */
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
 *
 * Decisions beyond RFC 9112 minimums (all HTTP_ERR_BAD unless noted):
 * - Content-Length: 1*DIGIT up to INT64_MAX. Identical duplicate fields are collapsed;
 *   comma lists ("5, 5"), signs, spaces inside, differing duplicates are rejected.
 * - Transfer-Encoding: exactly one field whose value is "chunked" (any case); lists
 *   ("gzip, chunked", "chunked, chunked"), repeats, other codings and any TE in an
 *   HTTP/1.0 message are rejected. The message body length is then unambiguous.
 * - Exactly one each of Host, Connection, Upgrade, Expect; Host must be reg-name/IP
 *   literal/port characters (no userinfo). Absolute-form: http/https only, no userinfo;
 *   the authority is the host and a Host header is ignored (RFC 9112 3.2.2), though it is
 *   still required in HTTP/1.1 and still checked.
 * - Expect other than "100-continue" (417-worthy) is rejected; ignored in HTTP/1.0.
 * - Path: RFC 3986 pchar and "/" only, with valid %XX; query: any VCHAR except '#'.
 * - Versions other than HTTP/1.0 and HTTP/1.1 (well-formed "HTTP/d.d"): HTTP_ERR_VERSION.
 *   Malformed versions ("HTTP/1.10", "http/1.1"): HTTP_ERR_BAD.
 * - More than HTTP_MAX_HEADERS fields: HTTP_ERR_HEADERS_TOO_LARGE.
 * - Empty lines (CRLF) before the request line are skipped (RFC 9112 2.2); they count
 *   toward the returned length, so the head to forward starts at method_str.p.
 * Errors are reported as soon as the bytes received prove them, even before the head is
 * complete; a valid head gives HTTP_INCOMPLETE for every proper prefix.
 */
int http_parse_request(const char *buf, size_t len, const struct http_limits *limits,
		       struct http_request *req);

/*
 * Parses a response head. `request_method` decides bodiless responses (HEAD, 2xx to CONNECT);
 * 1xx, 204, 304 never have a body. Same strictness as requests (CL+TE, differing CL, TE
 * other than "chunked" are HTTP_ERR_BAD; map them to 502). The SP before an empty reason
 * may be omitted. A body delimited by close (HTTP_BODY_EOF) clears keep_alive. The status
 * line counts toward max_header_bytes (431); max_request_line does not apply.
 */
int http_parse_response(const char *buf, size_t len, const struct http_limits *limits,
			enum http_method request_method, struct http_response *resp);

/* Case-insensitive header lookup; returns the first match or NULL. */
const struct http_header *http_find_header(const struct http_header *headers, int n,
					   const char *name);
/* A string literal as an http_str, its length known at compile time. */
#define HTTP_LIT(s) ((struct http_str){ (s), sizeof(s) - 1 })

/* true when s equals one of the n names in list (case-insensitive). */
bool http_str_in_nocase(struct http_str s, const struct http_str *list, size_t n);
bool http_str_eq_nocase_n(struct http_str s, const char *lit, size_t lit_len);
/* Inline so a literal's length is known at compile time: forwarding compares every header
 * name with a dozen literals, and a strlen per comparison showed in profiles. */
static inline bool http_str_eq_nocase(struct http_str s, const char *lit)
{
	return http_str_eq_nocase_n(s, lit, __builtin_strlen(lit));
}
/* true when `token` is in the comma-separated list `list` (case-insensitive). */
bool http_list_has_token(struct http_str list, const char *token, size_t token_len);
/*
 * Hop-by-hop: Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
 * Upgrade, Proxy-Authenticate, Proxy-Authorization, and any header named in `connection`.
 */
bool http_is_hop_by_hop(struct http_str name, struct http_str connection);
/*
 * A field name with '_' written as '-' (CGI, WSGI, Rack, PHP and many frameworks map both
 * to the same variable, so "X_Consumer" reads as "X-Consumer" there). Returns the name in
 * out, or false when the name has no '_' or does not fit (cap bytes).
 */
bool http_name_dashed(struct http_str name, char *out, size_t cap, struct http_str *dashed);

const char *http_method_name(enum http_method m);
const char *http_status_reason(int status);

/*
 * Streaming chunked-body scanner. The proxy forwards the raw chunked bytes it has
 * validated, so nothing the upstream sees can be framed differently than we framed it.
 */
struct http_chunked {
	int state;	      /* internal */
	uint64_t remaining;   /* data bytes left in the current chunk */
	size_t line_len;      /* bytes of the current size/trailer line so far (bounded) */
	uint64_t total;	      /* decoded data bytes so far (counted when a size line ends) */
	size_t trailer_bytes; /* trailer section so far, bounded by HTTP_CHUNK_TRAILER_MAX */
	bool done;	      /* the final CRLF after last-chunk and trailers was seen */
	/* Set by the caller: the scan returns right after the last-chunk line, so the
	 * trailer section (every byte after it, through the final CRLF) can be handled
	 * apart from the chunks (http_trailers_filter). */
	bool split_trailers;
	bool in_trailers; /* the last-chunk line was consumed: what follows is trailers */
};
void http_chunked_init(struct http_chunked *c);

/*
 * Trailer fields a client may send through the gateway (RFC 9110 6.5.1: a trailer must
 * not carry framing, routing, authentication or anything a recipient would act on as a
 * header): integrity digests, timing and gRPC status. Everything else is dropped.
 */
bool http_trailer_allowed(struct http_str name);
/*
 * Rewrites a complete trailer section as http_chunked_scan validated it (field lines,
 * then the final CRLF) keeping only the fields `keep` accepts, in order. out may equal in
 * (the output is never longer). Returns the bytes written, ending with the final CRLF,
 * or -1 when cap is too small or the section is not a complete one.
 */
ssize_t http_trailers_filter(const char *in, size_t len, char *out, size_t cap,
			     bool (*keep)(struct http_str name, void *arg), void *arg);
/*
 * Consumes up to len bytes of chunked body; returns bytes that belong to this body
 * (< len only when done or when `data` is full), or -1 on a framing error (bad hex, more
 * than 16 hex digits, missing CRLF, bare LF, CTL in an extension or trailer, obs-fold in
 * trailers, line longer than HTTP_CHUNK_LINE_MAX, trailers over HTTP_CHUNK_TRAILER_MAX).
 * Errors are sticky. Once done it returns 0. Optional `data` receives (offset, length)
 * spans of payload bytes within buf so a caller can decode instead of forward: *ndata is
 * the capacity on entry and the count used on return (the call stops early rather than
 * overflow them). Chunk extensions: after BWS only ';' may follow the size; their content
 * is any field-value character (no CR/LF/CTL), so they can never hide a line end.
 */
struct http_span {
	size_t off, len;
};
ssize_t http_chunked_scan(struct http_chunked *c, const char *buf, size_t len,
			  struct http_span *data, size_t *ndata);

/*
 * Normalizes a request path in place for routing and forwarding: decodes percent-encoded
 * unreserved characters (other escapes get upper-case hex), drops path parameters (";..."
 * up to the end of each segment, so "..;" is ".."), drops trailing dots of segments
 * ("admin." is "admin"), resolves "." and ".." segments (RFC 3986 5.2.4, also when encoded
 * as %2e) and merges repeated slashes. Returns the new length, or -1 when the path is
 * invalid (not starting with '/', escapes the root, encodes '/', '\\', ';' or a control
 * character, contains a raw '\\' or NUL, a segment of three or more dots, a segment
 * starting or ending with encoded space, "%25" followed by two hex digits, bad
 * percent-encoding). Writes nothing when the path is already normal.
 */
ssize_t http_path_normalize(char *path, size_t len);

/* X-Request-Id validity: 1..HTTP_REQUEST_ID_MAX chars of [A-Za-z0-9._:-]. */
#define HTTP_REQUEST_ID_MAX 128
bool http_request_id_valid(struct http_str id);

#endif
