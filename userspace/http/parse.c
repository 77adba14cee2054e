/*
 * Strict HTTP/1.1 head parser (RFC 9112). Every call re-parses from the start of the
 * buffer; work per call is bounded by the head limit, so a slow client cannot make us
 * do more than O(max_header_bytes) per received segment.
 */
#include <string.h>

#include "http/http.h"
#include "http/http_internal.h"

/* Heads beyond this cannot be reported as a positive int length. */
#define HEAD_BYTES_CEILING (1u << 30)

static const char slash_path[] = "/";

struct head_limits {
	size_t line; /* request line without CRLF */
	size_t head; /* whole head including the terminating empty line */
};

/* Framing-relevant fields seen while scanning headers. */
struct fields {
	bool is_request;
	int minor_version;
	bool has_cl, has_te, has_host, has_conn, has_upgrade, has_expect;
	uint64_t content_length;
	struct http_str host, connection, upgrade, expect;
};

static void resolve_limits(const struct http_limits *l, struct head_limits *out)
{
	out->head = l && l->max_header_bytes ? l->max_header_bytes : HTTP_DEFAULT_MAX_HEADER_BYTES;
	if (out->head > HEAD_BYTES_CEILING)
		out->head = HEAD_BYTES_CEILING;
	out->line = l && l->max_request_line ? l->max_request_line : out->head;
}

static const char *skip_class(const char *p, const char *end, uint8_t cls)
{
	while (p < end && http_is(*p, cls))
		p++;
	return p;
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/*
 * Field values are long and almost always plain text: test 8 bytes at once for any byte
 * below 0x20 or equal to 0x7f, and let the table decide only for words that have one
 * (HTAB, the CR ending the line, or an invalid control).
 */
static const char *skip_value(const char *p, const char *end)
{
	while (end - p >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		if (((w - ONES * 0x20) | ((w ^ (ONES * 0x7f)) - ONES)) & ~w & HIGHS)
			break;
		p += 8;
	}
	return skip_class(p, end, HTTP_C_VALUE);
}

/*
 * Matches `pat` at p, where '#' stands for a digit. Returns 1 on a full match, 0 when the
 * available bytes match a prefix (need more), -1 on a mismatch.
 */
static int match_pattern(const char *p, const char *end, const char *pat, size_t n)
{
	size_t avail = (size_t)(end - p), i;

	for (i = 0; i < n && i < avail; i++) {
		unsigned char c = p[i];

		if (pat[i] == '#' ? !(c >= '0' && c <= '9') : c != (unsigned char)pat[i])
			return -1;
	}
	return i == n ? 1 : 0;
}

/* 1*DIGIT, at most INT64_MAX so it also fits off_t. */
static bool parse_content_length(struct http_str v, uint64_t *out)
{
	uint64_t n = 0;

	if (v.len == 0 || v.len > 19)
		return false;
	for (size_t i = 0; i < v.len; i++) {
		unsigned d = (unsigned char)v.p[i] - '0';

		if (d > 9)
			return false;
		n = n * 10 + d;
	}
	if (n > INT64_MAX)
		return false;
	*out = n;
	return true;
}

static bool valid_host(struct http_str h)
{
	return skip_class(h.p, h.p + h.len, HTTP_C_HOST) == h.p + h.len;
}

static int note_content_length(struct fields *f, struct http_str v)
{
	uint64_t n;

	if (!parse_content_length(v, &n))
		return HTTP_ERR_BAD;
	/* Identical duplicates are collapsed (RFC 9110 8.6); differing ones are ambiguous. */
	if (f->has_cl && f->content_length != n)
		return HTTP_ERR_BAD;
	f->has_cl = true;
	f->content_length = n;
	return 0;
}

static int note_transfer_encoding(struct fields *f, struct http_str v)
{
	/* Lists, other codings, repeats and HTTP/1.0 TE can all be framed two ways. */
	if (f->has_te || f->minor_version == 0 || v.len != 7 || !http_eq_lower(v.p, "chunked", 7))
		return HTTP_ERR_BAD;
	f->has_te = true;
	return 0;
}

static int note_unique(bool *seen, struct http_str *dst, struct http_str v)
{
	if (*seen)
		return HTTP_ERR_BAD;
	*seen = true;
	*dst = v;
	return 0;
}

/* Records the headers that decide framing and connection handling; 0 or an error. */
static int note_field(struct fields *f, const struct http_header *h)
{
	const char *n = h->name.p;

	switch (h->name.len) {
	case 4:
		if (!f->is_request || !http_eq_lower(n, "host", 4))
			return 0;
		if (!valid_host(h->value))
			return HTTP_ERR_BAD;
		return note_unique(&f->has_host, &f->host, h->value);
	case 6:
		if (!f->is_request || !http_eq_lower(n, "expect", 6))
			return 0;
		return note_unique(&f->has_expect, &f->expect, h->value);
	case 7:
		if (!http_eq_lower(n, "upgrade", 7))
			return 0;
		return note_unique(&f->has_upgrade, &f->upgrade, h->value);
	case 10:
		if (!http_eq_lower(n, "connection", 10))
			return 0;
		return note_unique(&f->has_conn, &f->connection, h->value);
	case 14:
		if (!http_eq_lower(n, "content-length", 14))
			return 0;
		return note_content_length(f, h->value);
	case 17:
		if (!http_eq_lower(n, "transfer-encoding", 17))
			return 0;
		return note_transfer_encoding(f, h->value);
	}
	return 0;
}

/* Result for a head that ran out of bytes before its end. */
static int head_incomplete(size_t len, const struct head_limits *lim)
{
	return len >= lim->head ? HTTP_ERR_HEADERS_TOO_LARGE : HTTP_INCOMPLETE;
}

/*
 * Scans "name: value CRLF" lines from p up to and including the empty line.
 * Returns the head length, HTTP_INCOMPLETE, or an error.
 */
static int parse_fields(const char *buf, size_t len, const char *p, const struct head_limits *lim,
			struct http_header *hdrs, int *nhdrs, struct fields *f)
{
	const char *hend = buf + (len < lim->head ? len : lim->head);
	int n = 0, err;

	for (;;) {
		const char *name = p, *colon, *value, *vend;

		if (p >= hend)
			return head_incomplete(len, lim);
		if (*p == '\r') {
			if (p + 1 >= hend)
				return head_incomplete(len, lim);
			if (p[1] != '\n')
				return HTTP_ERR_BAD;
			*nhdrs = n;
			return (int)(p + 2 - buf);
		}
		/* A leading SP/HTAB (obs-fold), SP before ':' and bare LF all stop here. */
		colon = skip_class(p, hend, HTTP_C_TCHAR);
		if (colon >= hend)
			return head_incomplete(len, lim);
		if (*colon != ':' || colon == name)
			return HTTP_ERR_BAD;
		value = colon + 1;
		while (value < hend && (*value == ' ' || *value == '\t'))
			value++;
		p = skip_value(value, hend);
		if (p + 1 >= hend)
			return head_incomplete(len, lim);
		if (p[0] != '\r' || p[1] != '\n')
			return HTTP_ERR_BAD;
		for (vend = p; vend > value && (vend[-1] == ' ' || vend[-1] == '\t'); vend--)
			;
		p += 2;
		if (n == HTTP_MAX_HEADERS)
			return HTTP_ERR_HEADERS_TOO_LARGE;
		hdrs[n].name = (struct http_str){name, (size_t)(colon - name)};
		hdrs[n].value = (struct http_str){value, (size_t)(vend - value)};
		err = note_field(f, &hdrs[n]);
		if (err)
			return err;
		n++;
	}
}

static enum http_method method_from(const char *m, size_t n)
{
	switch (n) {
	case 3:
		if (!memcmp(m, "GET", 3))
			return HTTP_GET;
		if (!memcmp(m, "PUT", 3))
			return HTTP_PUT;
		break;
	case 4:
		if (!memcmp(m, "POST", 4))
			return HTTP_POST;
		if (!memcmp(m, "HEAD", 4))
			return HTTP_HEAD;
		break;
	case 5:
		if (!memcmp(m, "PATCH", 5))
			return HTTP_PATCH;
		if (!memcmp(m, "TRACE", 5))
			return HTTP_TRACE;
		break;
	case 6:
		if (!memcmp(m, "DELETE", 6))
			return HTTP_DELETE;
		break;
	case 7:
		if (!memcmp(m, "OPTIONS", 7))
			return HTTP_OPTIONS;
		if (!memcmp(m, "CONNECT", 7))
			return HTTP_CONNECT;
		break;
	}
	return HTTP_OTHER;
}

static bool valid_pct_encoding(const char *p, const char *end)
{
	while ((p = memchr(p, '%', (size_t)(end - p))) != NULL) {
		if (end - p < 3 || !http_is(p[1], HTTP_C_HEX) || !http_is(p[2], HTTP_C_HEX))
			return false;
		p += 3;
	}
	return true;
}

/*
 * Scans path [? query] starting at p (which is '/' for origin- and absolute-form).
 * Returns 1 with *sp at the SP ending the target, HTTP_INCOMPLETE, or HTTP_ERR_BAD.
 */
static int scan_path_query(const char *p, const char *end, struct http_request *req,
			   const char **sp)
{
	const char *q = skip_class(p, end, HTTP_C_PATH);

	if (q >= end)
		return HTTP_INCOMPLETE;
	if (!valid_pct_encoding(p, q))
		return HTTP_ERR_BAD;
	req->path = (struct http_str){p, (size_t)(q - p)};
	req->query = (struct http_str){q, 0};
	if (*q == '?') {
		const char *qs = q + 1;

		q = skip_class(qs, end, HTTP_C_QUERY);
		if (q >= end)
			return HTTP_INCOMPLETE;
		req->query = (struct http_str){qs, (size_t)(q - qs)};
	}
	if (*q != ' ')
		return HTTP_ERR_BAD;
	*sp = q;
	return 1;
}

static int match_lower(const char *p, const char *end, const char *lit, size_t n)
{
	size_t avail = (size_t)(end - p), i;

	for (i = 0; i < n && i < avail; i++)
		if (http_lower[(unsigned char)p[i]] != (unsigned char)lit[i])
			return -1;
	return i == n ? 1 : 0;
}

/* "http://authority[/path][?query]"; only http and https URIs can name our origin. */
static int scan_absolute_form(const char *t, const char *end, struct http_request *req,
			      const char **sp)
{
	size_t scheme = end - t > 4 && (t[4] | 0x20) == 's' ? 5 : 4;
	const char *a, *ae;
	int r = match_lower(t, end, scheme == 5 ? "https://" : "http://", scheme + 3);

	if (r != 1)
		return r == 0 ? HTTP_INCOMPLETE : HTTP_ERR_BAD;
	a = t + scheme + 3;
	ae = skip_class(a, end, HTTP_C_HOST);
	if (ae >= end)
		return HTTP_INCOMPLETE;
	if (ae == a)
		return HTTP_ERR_BAD;
	req->host = (struct http_str){a, (size_t)(ae - a)};
	if (*ae == '/')
		return scan_path_query(ae, end, req, sp);
	if (*ae == '?') {
		r = scan_path_query(ae, end, req, sp);
		req->path = (struct http_str){slash_path, 1};
		return r;
	}
	if (*ae != ' ')
		return HTTP_ERR_BAD;
	req->path = (struct http_str){slash_path, 1};
	req->query = (struct http_str){ae, 0};
	*sp = ae;
	return 1;
}

/* CONNECT host:port; the authority doubles as path so it never looks like a route. */
static int scan_authority_form(const char *t, const char *end, struct http_request *req,
			       const char **sp)
{
	const char *e = skip_class(t, end, HTTP_C_HOST), *colon;

	if (e >= end)
		return HTTP_INCOMPLETE;
	if (*e != ' ' || e == t)
		return HTTP_ERR_BAD;
	colon = memrchr(t, ':', (size_t)(e - t));
	if (!colon || colon == t || colon + 1 == e || e - colon > 6)
		return HTTP_ERR_BAD;
	for (const char *d = colon + 1; d < e; d++)
		if (*d < '0' || *d > '9')
			return HTTP_ERR_BAD;
	req->path = (struct http_str){t, (size_t)(e - t)};
	req->query = (struct http_str){e, 0};
	*sp = e;
	return 1;
}

static int scan_target(const char *t, const char *end, struct http_request *req, const char **sp)
{
	bool connect = req->method == HTTP_CONNECT;

	if (t >= end)
		return HTTP_INCOMPLETE;
	if (connect)
		return scan_authority_form(t, end, req, sp);
	if (*t == '/')
		return scan_path_query(t, end, req, sp);
	if (*t == '*') {
		if (t + 1 >= end)
			return HTTP_INCOMPLETE;
		if (t[1] != ' ' || req->method != HTTP_OPTIONS)
			return HTTP_ERR_BAD;
		req->path = (struct http_str){t, 1};
		req->query = (struct http_str){t + 1, 0};
		*sp = t + 1;
		return 1;
	}
	return scan_absolute_form(t, end, req, sp);
}

/*
 * method SP request-target SP HTTP-version CRLF. `line_end` caps the scan at the line
 * limit, so an over-long line is detected before its end arrives. Returns 1 with *next at
 * the first header line, HTTP_INCOMPLETE when bytes ran out, or an error.
 */
static int scan_request_line(const char *line, const char *line_end, struct http_request *req,
			     const char **next)
{
	const char *p = skip_class(line, line_end, HTTP_C_TCHAR), *sp = NULL;
	int r;

	if (p >= line_end)
		return HTTP_INCOMPLETE;
	if (*p != ' ' || p == line)
		return HTTP_ERR_BAD;
	req->method_str = (struct http_str){line, (size_t)(p - line)};
	req->method = method_from(line, (size_t)(p - line));
	req->host = (struct http_str){"", 0};
	r = scan_target(p + 1, line_end, req, &sp);
	if (r != 1)
		return r;
	req->target = (struct http_str){p + 1, (size_t)(sp - p - 1)};
	r = match_pattern(sp + 1, line_end, "HTTP/#.#\r\n", 10);
	if (r != 1)
		return r == 0 ? HTTP_INCOMPLETE : HTTP_ERR_BAD;
	if (sp[6] != '1' || sp[8] > '1')
		return HTTP_ERR_VERSION;
	req->minor_version = sp[8] - '0';
	*next = sp + 11;
	return 1;
}

/* RFC 9112 2.2: empty lines before the request line are ignored for robustness. */
static const char *skip_leading_crlf(const char *p, const char *end)
{
	while (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
		p += 2;
	return p;
}

static int request_line(const char *buf, size_t len, const struct head_limits *lim,
			struct http_request *req, const char **next)
{
	const char *hend = buf + (len < lim->head ? len : lim->head);
	const char *line = skip_leading_crlf(buf, hend), *line_end = hend;
	int r;

	if (line + 1 == hend && *line == '\r')
		return head_incomplete(len, lim);
	if ((size_t)(hend - line) > lim->line + 2)
		line_end = line + lim->line + 2;
	r = scan_request_line(line, line_end, req, next);
	if (r != HTTP_INCOMPLETE)
		return r;
	if ((size_t)(line_end - line) >= lim->line + 2)
		return HTTP_ERR_URI_TOO_LONG;
	return head_incomplete(len, lim);
}

static bool conn_has(const struct fields *f, const char *token, size_t n)
{
	return f->has_conn && http_list_has_token(f->connection, token, n);
}

static int finish_request(struct http_request *req, const struct fields *f)
{
	bool absolute = req->host.len != 0;

	if (f->has_cl && f->has_te)
		return HTTP_ERR_BAD;
	if (req->minor_version == 1 && !f->has_host)
		return HTTP_ERR_BAD;
	/* RFC 9112 3.2.2: with absolute-form the Host field is ignored and the authority is
	 * the host; the gateway routes by it and forwards it as the only Host, so the two can
	 * never be read apart. */
	if (!absolute && f->has_host)
		req->host = f->host;
	if (f->has_expect) {
		/* RFC 9110 10.1.1: an HTTP/1.0 expectation is ignored */
		if (!http_str_eq_nocase(f->expect, "100-continue"))
			return HTTP_ERR_BAD;
		req->expect_continue = req->minor_version == 1;
	}
	req->body = f->has_te ? HTTP_BODY_CHUNKED : f->has_cl ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
	req->content_length = f->has_cl ? f->content_length : 0;
	req->connection = f->has_conn ? f->connection : (struct http_str){"", 0};
	if (req->minor_version == 1)
		req->keep_alive = !conn_has(f, "close", 5);
	else
		req->keep_alive = conn_has(f, "keep-alive", 10) && !conn_has(f, "close", 5);
	/* RFC 9110 7.8: Upgrade in an HTTP/1.0 request is ignored */
	req->upgrade = req->minor_version == 1 && f->has_upgrade && f->upgrade.len &&
		       conn_has(f, "upgrade", 7);
	req->upgrade_proto = req->upgrade ? f->upgrade : (struct http_str){"", 0};
	return 0;
}

int http_parse_request(const char *buf, size_t len, const struct http_limits *limits,
		       struct http_request *req)
{
	struct head_limits lim;
	struct fields f = {.is_request = true};
	const char *next = NULL;
	int r, err;

	resolve_limits(limits, &lim);
	req->nheaders = 0;
	req->expect_continue = false;
	r = request_line(buf, len, &lim, req, &next);
	if (r != 1)
		return r;
	f.minor_version = req->minor_version;
	r = parse_fields(buf, len, next, &lim, req->headers, &req->nheaders, &f);
	if (r <= 0)
		return r;
	err = finish_request(req, &f);
	return err ? err : r;
}

/* HTTP-version SP 3DIGIT [SP reason-phrase] CRLF; the SP before an empty reason is optional. */
static int status_line(const char *buf, size_t len, const struct head_limits *lim,
		       struct http_response *resp, const char **next)
{
	const char *hend = buf + (len < lim->head ? len : lim->head), *p;
	int r = match_pattern(buf, hend, "HTTP/#.# ###", 12);

	if (r != 1)
		return r == 0 ? head_incomplete(len, lim) : HTTP_ERR_BAD;
	if (buf[5] != '1' || buf[7] > '1')
		return HTTP_ERR_VERSION;
	resp->minor_version = buf[7] - '0';
	resp->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	if (resp->status < 100 || resp->status > 599)
		return HTTP_ERR_BAD;
	p = buf + 12;
	if (p < hend && *p == ' ')
		p++;
	resp->reason.p = p;
	p = skip_class(p, hend, HTTP_C_VALUE);
	if (p + 1 >= hend)
		return head_incomplete(len, lim);
	if (p[0] != '\r' || p[1] != '\n' || (p > buf + 12 && buf[12] != ' '))
		return HTTP_ERR_BAD;
	resp->reason.len = (size_t)(p - resp->reason.p);
	*next = p + 2;
	return 1;
}

/* RFC 9112 6.3, with ambiguous framing rejected instead of resolved. */
static int finish_response(struct http_response *resp, enum http_method request_method,
			   const struct fields *f)
{
	int s = resp->status;

	if (f->has_cl && f->has_te)
		return HTTP_ERR_BAD;
	resp->content_length = f->has_cl ? f->content_length : 0;
	if (request_method == HTTP_HEAD || s < 200 || s == 204 || s == 304)
		resp->body = HTTP_BODY_NONE;
	else if (request_method == HTTP_CONNECT && s < 300)
		resp->body = HTTP_BODY_NONE;
	else if (f->has_te)
		resp->body = HTTP_BODY_CHUNKED;
	else if (f->has_cl)
		resp->body = HTTP_BODY_LENGTH;
	else
		resp->body = HTTP_BODY_EOF;
	resp->connection = f->has_conn ? f->connection : (struct http_str){"", 0};
	if (resp->minor_version == 1)
		resp->keep_alive = !conn_has(f, "close", 5);
	else
		resp->keep_alive = conn_has(f, "keep-alive", 10) && !conn_has(f, "close", 5);
	if (resp->body == HTTP_BODY_EOF)
		resp->keep_alive = false;
	return 0;
}

int http_parse_response(const char *buf, size_t len, const struct http_limits *limits,
			enum http_method request_method, struct http_response *resp)
{
	struct head_limits lim;
	struct fields f = {.is_request = false};
	const char *next = NULL;
	int r, err;

	resolve_limits(limits, &lim);
	resp->nheaders = 0;
	r = status_line(buf, len, &lim, resp, &next);
	if (r != 1)
		return r;
	f.minor_version = resp->minor_version;
	r = parse_fields(buf, len, next, &lim, resp->headers, &resp->nheaders, &f);
	if (r <= 0)
		return r;
	err = finish_response(resp, request_method, &f);
	return err ? err : r;
}
