/*
 * h2/: the server session fed crafted frames (header blocks made with nghttp2's HPACK
 * deflater, frames laid out by hand), and a real nghttp2 client for the normal cases.
 */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2/h2.h"
#include "unit/check.h"

struct rec {
	int nrequests;
	bool too_large, end_stream;
	char method[16], path[64], authority[64];
	int nfields;
	char body[256];
	size_t body_len;
	int nend, nclose;
	uint32_t last_close_code;
	int ntrailers, trailers_before_end;
	char trailer[64];
};

static void on_request(void *arg, int32_t sid, const struct h2s_request *r)
{
	struct rec *rc = arg;

	rc->nrequests++;
	rc->too_large = r->too_large;
	rc->end_stream = r->end_stream;
	rc->nfields = r->nfields;
	for (int i = 0; i < r->nfields; i++) {
		const struct http_header *f = &r->fields[i];
		char *dst = http_str_eq_nocase(f->name, ":method")	? rc->method
			    : http_str_eq_nocase(f->name, ":path")	? rc->path
			    : http_str_eq_nocase(f->name, ":authority") ? rc->authority
									: NULL;

		if (dst && f->value.len < 64)
			memcpy(dst, f->value.p, f->value.len), dst[f->value.len] = '\0';
	}
}

static void on_data(void *arg, int32_t sid, void *host, const char *p, size_t n)
{
	struct rec *rc = arg;

	if (rc->body_len + n <= sizeof(rc->body)) {
		memcpy(rc->body + rc->body_len, p, n);
		rc->body_len += n;
	}
}

static void on_end(void *arg, int32_t sid, void *host)
{
	((struct rec *)arg)->nend++;
}

static void on_close(void *arg, int32_t sid, void *host, uint32_t code)
{
	struct rec *rc = arg;

	rc->nclose++;
	rc->last_close_code = code;
}

static void on_trailers(void *arg, int32_t sid, void *host, const struct http_header *f, int n)
{
	struct rec *rc = arg;

	rc->ntrailers = n;
	rc->trailers_before_end = rc->nend == 0;
	if (n && f[0].name.len + f[0].value.len + 1 < sizeof(rc->trailer))
		snprintf(rc->trailer, sizeof(rc->trailer), "%.*s=%.*s", (int)f[0].name.len,
			 f[0].name.p, (int)f[0].value.len, f[0].value.p);
}

static const struct h2s_callbacks cbs = {on_request, on_data, on_end, on_close, on_trailers};

static struct h2s_limits limits(void)
{
	struct h2s_limits l = {.max_concurrent_streams = 100,
			       .max_header_bytes = 4096,
			       .max_block_bytes = 8192,
			       .max_continuations = 8,
			       .reset_burst = 50,
			       .reset_per_s = 10,
			       .max_outbound_ack = 100};
	return l;
}

/* ---- crafted frames ---- */

struct wbuf {
	uint8_t b[1 << 18];
	size_t n;
};

static void frame(struct wbuf *w, uint8_t type, uint8_t flags, uint32_t sid, const void *p,
		  size_t len)
{
	uint8_t *h = w->b + w->n;

	h[0] = len >> 16, h[1] = len >> 8, h[2] = len;
	h[3] = type, h[4] = flags;
	h[5] = sid >> 24 & 0x7f, h[6] = sid >> 16, h[7] = sid >> 8, h[8] = sid;
	memcpy(h + 9, p, len);
	w->n += 9 + len;
}

static void preface(struct wbuf *w)
{
	memcpy(w->b + w->n, H2_PREFACE, H2_PREFACE_LEN);
	w->n += H2_PREFACE_LEN;
	frame(w, NGHTTP2_SETTINGS, 0, 0, "", 0);
}

#define NV(n, v)                                                                                   \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, 0                    \
	}

static size_t block(nghttp2_hd_deflater *d, const nghttp2_nv *nv, size_t n, uint8_t *out,
		    size_t cap)
{
	ssize_t k = nghttp2_hd_deflate_hd(d, out, cap, nv, n);

	return k < 0 ? 0 : (size_t)k;
}

static void get_headers(struct wbuf *w, nghttp2_hd_deflater *d, uint32_t sid,
			const nghttp2_nv *extra, size_t nextra, uint8_t flags)
{
	nghttp2_nv nv[16] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":path", "/a?b=1"),
			     NV(":authority", "api.example")};
	uint8_t out[8192];
	size_t n;

	if (nextra)
		memcpy(nv + 4, extra, nextra * sizeof(*nv));
	n = block(d, nv, 4 + nextra, out, sizeof(out));
	frame(w, NGHTTP2_HEADERS, flags, sid, out, n);
}

/* Output frames: the first of `type` (its payload into *p), or -1. */
static int find_frame(const uint8_t *o, size_t n, uint8_t type, uint32_t sid_or_any,
		      const uint8_t **p)
{
	size_t i = 0;

	while (i + 9 <= n) {
		size_t len = (size_t)o[i] << 16 | o[i + 1] << 8 | o[i + 2];
		uint32_t sid =
		    (uint32_t)(o[i + 5] & 0x7f) << 24 | o[i + 6] << 16 | o[i + 7] << 8 | o[i + 8];

		if (o[i + 3] == type && (sid_or_any == (uint32_t)-1 || sid == sid_or_any)) {
			*p = o + i + 9;
			return (int)len;
		}
		i += 9 + len;
	}
	return -1;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static uint8_t out[1 << 20];

static size_t drain(struct h2s *h)
{
	size_t n = 0, k;

	while ((k = h2s_send(h, (char *)out + n, sizeof(out) - n)) > 0)
		n += k;
	return n;
}

/* GOAWAY's error code in the output, or -1 when there is none. */
static long goaway_code(size_t n)
{
	const uint8_t *p;

	return find_frame(out, n, NGHTTP2_GOAWAY, 0, &p) >= 8 ? (long)be32(p + 4) : -1;
}

static void test_simple_get(void)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, &rc);
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	struct http_header f[] = {{{"Content-Type", 12}, {"text/plain", 10}},
				  {{"Connection", 10}, {"close", 5}}};
	const uint8_t *p;
	size_t n;
	int len;

	nghttp2_hd_deflate_new(&d, 4096);
	w.n = 0;
	preface(&w);
	get_headers(&w, d, 1, NULL, 0, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM);
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 1), 0);
	CHECK_EQ(rc.nrequests, 1);
	CHECK(rc.end_stream);
	CHECK_STR(rc.method, "GET");
	CHECK_STR(rc.path, "/a?b=1");
	CHECK_STR(rc.authority, "api.example");
	h2s_set_stream_host(h, 1, &rc);
	CHECK(h2s_respond(h, 1, 200, f, 2, "hello", 5, true, NULL, 0));
	n = drain(h);
	CHECK(find_frame(out, n, NGHTTP2_HEADERS, 1, &p) > 0);
	len = find_frame(out, n, NGHTTP2_DATA, 1, &p);
	CHECK_EQ(len, 5);
	CHECK(len == 5 && !memcmp(p, "hello", 5));
	CHECK_EQ(rc.nclose, 1);
	CHECK_EQ(h2s_open_streams(h), 0);
	/* the response header block: "connection" is never sent */
	{
		nghttp2_hd_inflater *inf;
		const uint8_t *hp;
		int hl = find_frame(out, n, NGHTTP2_HEADERS, 1, &hp);
		bool saw_conn = false, saw_ct = false;

		nghttp2_hd_inflate_new(&inf);
		while (hl > 0) {
			nghttp2_nv nv;
			int fl = 0;
			ssize_t k = nghttp2_hd_inflate_hd2(inf, &nv, &fl, hp, hl, 1);

			if (k < 0)
				break;
			hp += k, hl -= k;
			if (fl & NGHTTP2_HD_INFLATE_EMIT) {
				saw_conn |= nv.namelen == 10 && !memcmp(nv.name, "connection", 10);
				saw_ct |= nv.namelen == 12 && !memcmp(nv.name, "content-type", 12);
			}
			if (fl & NGHTTP2_HD_INFLATE_FINAL)
				break;
		}
		nghttp2_hd_inflate_del(inf);
		CHECK(!saw_conn);
		CHECK(saw_ct);
	}
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

static void test_post_body_and_trailers(void)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, &rc);
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	nghttp2_nv post[] = {NV(":method", "POST")};
	struct http_header tr[] = {{{"grpc-status", 11}, {"0", 1}}};
	const uint8_t *p;
	size_t n;

	nghttp2_hd_deflate_new(&d, 4096);
	w.n = 0;
	preface(&w);
	{
		nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "http"), NV(":path", "/p"),
				   NV(":authority", "x")};
		uint8_t b[512];
		size_t k = block(d, nv, 4, b, sizeof(b));

		(void)post;
		frame(&w, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, b, k);
	}
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 1), 0);
	CHECK_EQ(rc.nrequests, 1);
	CHECK(!rc.end_stream);
	h2s_set_stream_host(h, 1, &rc);
	w.n = 0;
	frame(&w, NGHTTP2_DATA, 0, 1, "abc", 3);
	frame(&w, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "de", 2);
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 2), 0);
	CHECK_EQ(rc.body_len, 5);
	CHECK(!memcmp(rc.body, "abcde", 5));
	CHECK_EQ(rc.nend, 1);
	CHECK(h2s_respond(h, 1, 200, NULL, 0, "x", 1, true, tr, 1));
	n = drain(h);
	/* HEADERS, DATA without END_STREAM, then the trailers' HEADERS with END_STREAM */
	{
		size_t i = 0;
		int headers = 0;
		bool trailer_end = false;

		while (i + 9 <= n) {
			size_t len = (size_t)out[i] << 16 | out[i + 1] << 8 | out[i + 2];

			if (out[i + 3] == NGHTTP2_HEADERS && ++headers == 2)
				trailer_end = out[i + 4] & NGHTTP2_FLAG_END_STREAM;
			if (out[i + 3] == NGHTTP2_DATA)
				CHECK(!(out[i + 4] & NGHTTP2_FLAG_END_STREAM));
			i += 9 + len;
		}
		CHECK_EQ(headers, 2);
		CHECK(trailer_end);
	}
	CHECK(find_frame(out, n, NGHTTP2_DATA, 1, &p) == 1);
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

/* A malformed or forbidden field: RST_STREAM PROTOCOL_ERROR, the request never seen. */
static void malformed(const nghttp2_nv *extra, size_t n, bool replace_path)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, &rc);
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	const uint8_t *p;
	size_t o;

	nghttp2_hd_deflate_new(&d, 4096);
	w.n = 0;
	preface(&w);
	if (replace_path) {
		uint8_t b[512];
		size_t k = block(d, extra, n, b, sizeof(b));

		frame(&w, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1, b,
		      k);
	} else {
		get_headers(&w, d, 1, extra, n, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM);
	}
	h2s_recv(h, (char *)w.b, w.n, 1);
	CHECK_EQ(rc.nrequests, 0);
	o = drain(h);
	CHECK(find_frame(out, o, NGHTTP2_RST_STREAM, 1, &p) == 4);
	CHECK(find_frame(out, o, NGHTTP2_RST_STREAM, 1, &p) == 4 && be32(p) == H2_PROTOCOL_ERROR);
	CHECK_EQ(h2s_open_streams(h), 0);
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

static void test_malformed_headers(void)
{
	nghttp2_nv upper[] = {NV("X-Upper", "1")};
	nghttp2_nv conn[] = {NV("connection", "keep-alive")};
	nghttp2_nv te[] = {NV("te", "gzip")};
	nghttp2_nv tenc[] = {NV("transfer-encoding", "chunked")};
	nghttp2_nv upgrade[] = {NV("upgrade", "h2c")};
	nghttp2_nv badname[] = {NV("x y", "1")};
	nghttp2_nv late_pseudo[] = {NV("x-a", "1"), NV(":foo", "1")};
	nghttp2_nv no_path[] = {NV(":method", "GET"), NV(":scheme", "https"),
				NV(":authority", "a")};
	nghttp2_nv dup_method[] = {NV(":method", "GET"), NV(":method", "POST"),
				   NV(":scheme", "https"), NV(":path", "/"), NV(":authority", "a")};
	nghttp2_nv resp_pseudo[] = {NV(":status", "200")};

	malformed(upper, 1, false);
	malformed(conn, 1, false);
	malformed(te, 1, false);
	malformed(tenc, 1, false);
	malformed(upgrade, 1, false);
	malformed(badname, 1, false);
	malformed(late_pseudo, 2, false);
	malformed(no_path, 3, true);
	malformed(dup_method, 5, true);
	malformed(resp_pseudo, 1, false);
}

static void test_te_trailers_ok(void)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, &rc);
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	nghttp2_nv te[] = {NV("te", "trailers")};

	nghttp2_hd_deflate_new(&d, 4096);
	w.n = 0;
	preface(&w);
	get_headers(&w, d, 1, te, 1, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM);
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 1), 0);
	CHECK_EQ(rc.nrequests, 1);
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

/* HPACK bomb: a 1000-byte field put in the dynamic table once, then referenced again and
 * again by one-byte indexes: the decoded list passes max_header_bytes long before the
 * block ends. */
static void test_hpack_bomb(void)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, &rc);
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	uint8_t b[8192];
	size_t k = 0;

	nghttp2_hd_deflate_new(&d, 4096);
	w.n = 0;
	preface(&w);
	b[k++] = 0x82; /* :method GET */
	b[k++] = 0x87; /* :scheme https */
	b[k++] = 0x84; /* :path / */
	b[k++] = 0x01; /* :authority, literal without indexing */
	b[k++] = 0x01;
	b[k++] = 'a';
	/* literal with incremental indexing, new name "x-big", 1000-byte value */
	b[k++] = 0x40;
	b[k++] = 5;
	memcpy(b + k, "x-big", 5);
	k += 5;
	b[k++] = 0x7f, b[k++] = 0xe9, b[k++] = 0x06; /* 127 + 873 */
	memset(b + k, 'a', 1000);
	k += 1000;
	for (int i = 0; i < 200; i++)
		b[k++] = 0x80 | 62; /* the newest dynamic entry */
	frame(&w, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1, b, k);
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 1), 0);
	CHECK_EQ(rc.nrequests, 1);
	CHECK(rc.too_large);
	CHECK_EQ(rc.nfields, 0);
	/* the session goes on: the HPACK state stayed in step (x-big is still entry 62) */
	w.n = 0;
	k = 0;
	b[k++] = 0x82, b[k++] = 0x87, b[k++] = 0x84, b[k++] = 0x01, b[k++] = 0x01, b[k++] = 'a';
	b[k++] = 0x80 | 62;
	frame(&w, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 3, b, k);
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 2), 0);
	CHECK_EQ(rc.nrequests, 2);
	CHECK(!rc.too_large);
	CHECK_EQ(rc.nfields, 5);
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

static void test_continuation_flood(void)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, &rc);
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	size_t n;

	nghttp2_hd_deflate_new(&d, 4096);
	w.n = 0;
	preface(&w);
	get_headers(&w, d, 1, NULL, 0, 0); /* no END_HEADERS */
	for (int i = 0; i < 100; i++)
		frame(&w, NGHTTP2_CONTINUATION, 0, 1, "\x40\x01x\x01y", 5);
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 1), -1);
	CHECK(strstr(h2s_error(h), "CONTINUATION") != NULL);
	CHECK_EQ(rc.nrequests, 0);
	n = drain(h);
	CHECK_EQ(goaway_code(n), H2_ENHANCE_YOUR_CALM);
	CHECK(h2s_done(h));
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

/* Few CONTINUATIONs but big ones: the encoded block is bounded too. */
static void test_header_block_bytes(void)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, &rc);
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	static uint8_t junk[4000];
	size_t n;

	memset(junk, 0x40, sizeof(junk));
	nghttp2_hd_deflate_new(&d, 4096);
	w.n = 0;
	preface(&w);
	get_headers(&w, d, 1, NULL, 0, 0);
	for (int i = 0; i < 3; i++)
		frame(&w, NGHTTP2_CONTINUATION, 0, 1, junk, sizeof(junk));
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 1), -1);
	CHECK(strstr(h2s_error(h), "header block too large") != NULL);
	n = drain(h);
	CHECK_EQ(goaway_code(n), H2_ENHANCE_YOUR_CALM);
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

/* Fed one byte at a time the scanner still finds the frame boundaries. */
static void test_scanner_bytewise(void)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, &rc);
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	int rv = 0;

	nghttp2_hd_deflate_new(&d, 4096);
	w.n = 0;
	preface(&w);
	for (uint32_t sid = 1; sid < 20; sid += 2)
		get_headers(&w, d, sid, NULL, 0,
			    NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM);
	for (size_t i = 0; i < w.n && !rv; i++)
		rv = h2s_recv(h, (char *)w.b + i, 1, 1);
	CHECK_EQ(rv, 0);
	CHECK_EQ(rc.nrequests, 10);
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

/* CVE-2023-44487: open a stream, reset it, again and again. */
static void test_rapid_reset(void)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, &rc);
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	uint8_t code[4] = {0, 0, 0, 8};
	int rv = 0, i;
	size_t n;

	nghttp2_hd_deflate_new(&d, 4096);
	w.n = 0;
	preface(&w);
	rv = h2s_recv(h, (char *)w.b, w.n, 1000);
	for (i = 0; i < 500 && !rv; i++) {
		w.n = 0;
		get_headers(&w, d, 1 + 2 * i, NULL, 0, NGHTTP2_FLAG_END_HEADERS);
		frame(&w, NGHTTP2_RST_STREAM, 0, 1 + 2 * i, code, 4);
		rv = h2s_recv(h, (char *)w.b, w.n, 1000);
		if (!rv)
			drain(h);
	}
	CHECK_EQ(rv, -1);
	CHECK(i > 40 && i <= 51); /* the burst, then the bucket is empty */
	CHECK(strstr(h2s_error(h), "reset") != NULL);
	n = drain(h);
	CHECK_EQ(goaway_code(n), H2_ENHANCE_YOUR_CALM);
	nghttp2_hd_deflate_del(d);
	h2s_free(h);

	/* a client resetting at less than the rate goes on */
	memset(&rc, 0, sizeof(rc));
	h = h2s_new(&l, &cbs, &rc);
	nghttp2_hd_deflate_new(&d, 4096);
	w.n = 0;
	preface(&w);
	rv = h2s_recv(h, (char *)w.b, w.n, 1000);
	for (i = 0; i < 200 && !rv; i++) {
		w.n = 0;
		get_headers(&w, d, 1 + 2 * i, NULL, 0, NGHTTP2_FLAG_END_HEADERS);
		frame(&w, NGHTTP2_RST_STREAM, 0, 1 + 2 * i, code, 4);
		rv = h2s_recv(h, (char *)w.b, w.n, 1000 + i * 200); /* 5/s < 10/s */
		drain(h);
	}
	CHECK_EQ(rv, 0);
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

/* PINGs from a client that never reads: the ACK queue is bounded. */
static void test_ping_flood(void)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, &rc);
	static struct wbuf w;
	int rv;

	w.n = 0;
	preface(&w);
	for (int i = 0; i < 1000; i++)
		frame(&w, NGHTTP2_PING, 0, 0, "12345678", 8);
	rv = h2s_recv(h, (char *)w.b, w.n, 1);
	CHECK_EQ(rv, -1);
	drain(h);
	CHECK(h2s_done(h));
	h2s_free(h);

	/* SETTINGS the same way */
	memset(&rc, 0, sizeof(rc));
	h = h2s_new(&l, &cbs, &rc);
	w.n = 0;
	preface(&w);
	for (int i = 0; i < 1000; i++)
		frame(&w, NGHTTP2_SETTINGS, 0, 0, "", 0);
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 1), -1);
	h2s_free(h);
}

static void test_max_concurrent(void)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h;
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	const uint8_t *p;
	size_t n;

	l.max_concurrent_streams = 2;
	h = h2s_new(&l, &cbs, &rc);
	nghttp2_hd_deflate_new(&d, 4096);
	w.n = 0;
	preface(&w);
	for (uint32_t sid = 1; sid <= 5; sid += 2)
		get_headers(&w, d, sid, NULL, 0,
			    NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM);
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 1), 0);
	CHECK_EQ(rc.nrequests, 2);
	n = drain(h);
	CHECK(find_frame(out, n, NGHTTP2_RST_STREAM, 5, &p) == 4 && be32(p) == H2_REFUSED_STREAM);
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

/* Graceful GOAWAY: the stream taken finishes, a later one is not taken. */
static void test_graceful_goaway(void)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, &rc);
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	const uint8_t *p;
	size_t n;

	nghttp2_hd_deflate_new(&d, 4096);
	w.n = 0;
	preface(&w);
	get_headers(&w, d, 1, NULL, 0, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM);
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 1), 0);
	h2s_set_stream_host(h, 1, &rc);
	h2s_goaway(h);
	n = drain(h);
	CHECK(find_frame(out, n, NGHTTP2_GOAWAY, 0, &p) == 8 && be32(p) == 1 &&
	      be32(p + 4) == H2_NO_ERROR);
	CHECK(!h2s_done(h));
	w.n = 0;
	get_headers(&w, d, 3, NULL, 0, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM);
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 2), 0);
	CHECK_EQ(rc.nrequests, 1);
	CHECK(h2s_respond(h, 1, 204, NULL, 0, NULL, 0, false, NULL, 0));
	n = drain(h);
	CHECK(find_frame(out, n, NGHTTP2_HEADERS, 1, &p) > 0);
	CHECK(h2s_done(h));
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

static void test_bad_preface(void)
{
	struct rec rc = {0};
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, &rc);
	static const char junk[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

	CHECK_EQ(h2s_recv(h, junk, sizeof(junk) - 1, 1), -1);
	h2s_free(h);
}

/* A POST stream's HEADERS (no END_STREAM) on a fresh session; the host is rc. */
static struct h2s *post_stream(struct rec *rc, nghttp2_hd_deflater *d, struct wbuf *w)
{
	struct h2s_limits l = limits();
	struct h2s *h = h2s_new(&l, &cbs, rc);
	nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "http"), NV(":path", "/p"),
			   NV(":authority", "x")};
	uint8_t b[512];
	size_t k = block(d, nv, 4, b, sizeof(b));

	w->n = 0;
	preface(w);
	frame(w, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, b, k);
	CHECK_EQ(h2s_recv(h, (char *)w->b, w->n, 1), 0);
	h2s_set_stream_host(h, 1, rc);
	drain(h);
	return h;
}

/* A held stream's window opens only as far as the host consumed; the connection's at once. */
static void test_held_request_window(void)
{
	struct rec rc = {0};
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	static char data[16384];
	const uint8_t *p;
	struct h2s *h;
	size_t n;

	nghttp2_hd_deflate_new(&d, 4096);
	h = post_stream(&rc, d, &w);
	h2s_hold_window(h, 1, true);
	w.n = 0;
	for (int i = 0; i < 3; i++)
		frame(&w, NGHTTP2_DATA, 0, 1, data, sizeof(data));
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 2), 0);
	n = drain(h);
	CHECK(find_frame(out, n, NGHTTP2_WINDOW_UPDATE, 0, &p) == 4);
	CHECK(find_frame(out, n, NGHTTP2_WINDOW_UPDATE, 1, &p) < 0);
	h2s_consume(h, 1, 3 * sizeof(data));
	n = drain(h);
	CHECK(find_frame(out, n, NGHTTP2_WINDOW_UPDATE, 1, &p) == 4);
	CHECK(find_frame(out, n, NGHTTP2_WINDOW_UPDATE, 1, &p) == 4 && be32(p) == 3 * sizeof(data));
	/* released: what comes next is acknowledged without the host */
	h2s_hold_window(h, 1, false);
	w.n = 0;
	for (int i = 0; i < 3; i++)
		frame(&w, NGHTTP2_DATA, 0, 1, data, sizeof(data));
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 3), 0);
	n = drain(h);
	CHECK(find_frame(out, n, NGHTTP2_WINDOW_UPDATE, 1, &p) == 4);
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

/* A streaming answer: HEADERS at once, DATA as written (bounded), trailers at the end. */
static void test_streaming_answer(void)
{
	struct rec rc = {0};
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	static char big[H2S_STREAM_BUF + 100];
	struct http_header tr[] = {{{"grpc-status", 11}, {"5", 1}}};
	const uint8_t *p;
	struct h2s *h;
	size_t n, total = 0, i;

	nghttp2_hd_deflate_new(&d, 4096);
	h = post_stream(&rc, d, &w);
	CHECK(h2s_respond_stream(h, 1, 200, NULL, 0));
	CHECK(!h2s_respond(h, 1, 200, NULL, 0, "x", 1, true, NULL, 0));
	n = drain(h);
	CHECK(find_frame(out, n, NGHTTP2_HEADERS, 1, &p) > 0);
	CHECK(find_frame(out, n, NGHTTP2_DATA, 1, &p) < 0);
	CHECK_EQ(h2s_stream_write(h, 1, "abc", 3), 3);
	n = drain(h);
	CHECK(find_frame(out, n, NGHTTP2_DATA, 1, &p) == 3 && !memcmp(p, "abc", 3));
	CHECK_EQ(h2s_stream_room(h, 1), H2S_STREAM_BUF);
	/* the client's window (65535) has 65532 left: the rest waits in the stream's buffer */
	CHECK_EQ(h2s_stream_write(h, 1, big, sizeof(big)), H2S_STREAM_BUF);
	CHECK_EQ(h2s_stream_room(h, 1), 0);
	CHECK_EQ(h2s_stream_write(h, 1, big, 10), 0);
	n = drain(h);
	for (i = 0; i + 9 <= n; i += 9 + ((size_t)out[i] << 16 | out[i + 1] << 8 | out[i + 2]))
		if (out[i + 3] == NGHTTP2_DATA)
			total += (size_t)out[i] << 16 | out[i + 1] << 8 | out[i + 2];
	CHECK_EQ(total, 65532);
	CHECK_EQ(h2s_stream_pending(h, 1), H2S_STREAM_BUF - 65532);
	CHECK(h2s_stream_end(h, 1, tr, 1));
	CHECK(!h2s_stream_end(h, 1, NULL, 0));
	CHECK_EQ(rc.nclose, 0);
	/* the client opens its window: the rest, then the trailers ending the stream */
	w.n = 0;
	{
		uint8_t inc[4] = {0, 0, 0x10, 0};

		frame(&w, NGHTTP2_WINDOW_UPDATE, 0, 1, inc, 4);
		frame(&w, NGHTTP2_WINDOW_UPDATE, 0, 0, inc, 4);
	}
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 2), 0);
	n = drain(h);
	CHECK(find_frame(out, n, NGHTTP2_DATA, 1, &p) == H2S_STREAM_BUF - 65532);
	CHECK(find_frame(out, n, NGHTTP2_HEADERS, 1, &p) > 0);
	CHECK(find_frame(out, n, NGHTTP2_HEADERS, 1, &p) > 0 && (p[-5] & NGHTTP2_FLAG_END_STREAM));
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

/* Request trailers reach the host before the stream's end. */
static void test_request_trailers(void)
{
	struct rec rc = {0};
	nghttp2_hd_deflater *d;
	static struct wbuf w;
	nghttp2_nv tr[] = {NV("x-checksum", "abc123")};
	uint8_t b[256];
	struct h2s *h;
	size_t k;

	nghttp2_hd_deflate_new(&d, 4096);
	h = post_stream(&rc, d, &w);
	w.n = 0;
	frame(&w, NGHTTP2_DATA, 0, 1, "body", 4);
	k = block(d, tr, 1, b, sizeof(b));
	frame(&w, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1, b, k);
	CHECK_EQ(h2s_recv(h, (char *)w.b, w.n, 2), 0);
	CHECK_EQ(rc.body_len, 4);
	CHECK_EQ(rc.ntrailers, 1);
	CHECK_STR(rc.trailer, "x-checksum=abc123");
	CHECK(rc.trailers_before_end);
	CHECK_EQ(rc.nend, 1);
	CHECK_EQ(rc.nrequests, 1);
	nghttp2_hd_deflate_del(d);
	h2s_free(h);
}

static void test_grpc_timeout(void)
{
	static const struct {
		const char *v;
		bool ok;
		uint64_t ms;
	} cases[] = {
	    {"100m", true, 100},
	    {"5S", true, 5000},
	    {"2M", true, 120000},
	    {"1H", true, 3600000},
	    {"1500u", true, 2},
	    {"1n", true, 1},
	    {"99999999m", true, 99999999},
	    {"0m", true, 0},
	    {"m", false, 0},
	    {"123456789m", false, 0},
	    {"10x", false, 0},
	    {"1.5S", false, 0},
	    {"-1S", false, 0},
	    {"", false, 0},
	    {"10 S", false, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ms = 7;
		bool ok =
		    h2_grpc_timeout_ms((struct http_str){cases[i].v, strlen(cases[i].v)}, &ms);

		CHECK_EQ(ok, cases[i].ok);
		if (ok)
			CHECK_EQ(ms, cases[i].ms);
	}
}

int main(void)
{
	RUN(test_simple_get);
	RUN(test_post_body_and_trailers);
	RUN(test_malformed_headers);
	RUN(test_te_trailers_ok);
	RUN(test_hpack_bomb);
	RUN(test_continuation_flood);
	RUN(test_header_block_bytes);
	RUN(test_scanner_bytewise);
	RUN(test_rapid_reset);
	RUN(test_ping_flood);
	RUN(test_max_concurrent);
	RUN(test_graceful_goaway);
	RUN(test_bad_preface);
	RUN(test_held_request_window);
	RUN(test_streaming_answer);
	RUN(test_request_trailers);
	RUN(test_grpc_timeout);
	return CHECK_DONE();
}
