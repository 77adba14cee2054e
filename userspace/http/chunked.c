/*
 * Streaming validator for chunked bodies (RFC 9112 7.1). A byte-at-a-time state machine
 * for the framing lines, bulk skipping for chunk data, so any split of the input gives
 * the same result.
 */
#include <string.h>

#include "http/http.h"
#include "http/http_internal.h"

enum chunk_state {
	CH_SIZE,    /* hex digits of chunk-size */
	CH_EXT_BWS, /* whitespace after the size: only ';' may follow */
	CH_EXT,	    /* chunk extensions until CR */
	CH_SIZE_LF,
	CH_DATA,
	CH_DATA_CR,
	CH_DATA_LF,
	CH_TRAILER_START, /* start of a trailer line or of the final CRLF */
	CH_TRAILER_NAME,
	CH_TRAILER_VALUE,
	CH_TRAILER_LF,
	CH_FINAL_LF,
	CH_DONE,
	CH_ERROR,
};

#define CHUNK_SIZE_MAX_DIGITS 16

void http_chunked_init(struct http_chunked *c)
{
	*c = (struct http_chunked){.state = CH_SIZE};
}

/* c->line_len already counts ch, so in CH_SIZE it is the number of digits including ch. */
static int size_byte(struct http_chunked *c, unsigned char ch)
{
	if (http_is(ch, HTTP_C_HEX)) {
		if (c->line_len > CHUNK_SIZE_MAX_DIGITS)
			return CH_ERROR;
		c->remaining = c->remaining << 4 | (uint64_t)http_hex_value(ch);
		return CH_SIZE;
	}
	if (c->line_len == 1)
		return CH_ERROR;
	if (ch == '\r')
		return CH_SIZE_LF;
	if (ch == ';')
		return CH_EXT;
	if (ch == ' ' || ch == '\t')
		return CH_EXT_BWS;
	return CH_ERROR;
}

static int size_lf_byte(struct http_chunked *c, unsigned char ch)
{
	if (ch != '\n')
		return CH_ERROR;
	c->line_len = 0;
	if (c->remaining == 0)
		return CH_TRAILER_START;
	if (c->total + c->remaining < c->total)
		return CH_ERROR;
	c->total += c->remaining;
	return CH_DATA;
}

/* Trailer fields follow header syntax; obs-fold, bare LF and CTLs are errors. */
static int trailer_byte(struct http_chunked *c, unsigned char ch)
{
	if (++c->trailer_bytes > HTTP_CHUNK_TRAILER_MAX)
		return CH_ERROR;
	switch (c->state) {
	case CH_TRAILER_START:
		if (ch == '\r')
			return CH_FINAL_LF;
		return http_is(ch, HTTP_C_TCHAR) ? CH_TRAILER_NAME : CH_ERROR;
	case CH_TRAILER_NAME:
		if (ch == ':')
			return CH_TRAILER_VALUE;
		return http_is(ch, HTTP_C_TCHAR) ? CH_TRAILER_NAME : CH_ERROR;
	case CH_TRAILER_VALUE:
		if (ch == '\r')
			return CH_TRAILER_LF;
		return http_is(ch, HTTP_C_VALUE) ? CH_TRAILER_VALUE : CH_ERROR;
	case CH_TRAILER_LF:
		c->line_len = 0;
		return ch == '\n' ? CH_TRAILER_START : CH_ERROR;
	case CH_FINAL_LF:
		return ch == '\n' ? CH_DONE : CH_ERROR;
	}
	return CH_ERROR;
}

/* One byte outside chunk data; returns the next state. */
static int framing_byte(struct http_chunked *c, unsigned char ch)
{
	switch (c->state) {
	case CH_SIZE:
		return size_byte(c, ch);
	case CH_EXT_BWS:
		if (ch == ' ' || ch == '\t')
			return CH_EXT_BWS;
		return ch == ';' ? CH_EXT : CH_ERROR;
	case CH_EXT:
		/* quoted-strings cannot hold CR or LF, so extensions never hide a line end */
		if (ch == '\r')
			return CH_SIZE_LF;
		return http_is(ch, HTTP_C_VALUE) ? CH_EXT : CH_ERROR;
	case CH_SIZE_LF:
		return size_lf_byte(c, ch);
	case CH_DATA_CR:
		return ch == '\r' ? CH_DATA_LF : CH_ERROR;
	case CH_DATA_LF:
		c->line_len = 0;
		return ch == '\n' ? CH_SIZE : CH_ERROR;
	}
	return trailer_byte(c, ch);
}

ssize_t http_chunked_scan(struct http_chunked *c, const char *buf, size_t len,
			  struct http_span *data, size_t *ndata)
{
	size_t i = 0, nspans = 0, cap = data && ndata ? *ndata : 0;

	if (ndata)
		*ndata = 0;
	if (c->state == CH_ERROR)
		return -1;
	while (i < len && c->state != CH_DONE) {
		if (c->state == CH_DATA) {
			size_t take = len - i < c->remaining ? len - i : (size_t)c->remaining;

			if (data) {
				if (nspans == cap)
					break;
				data[nspans++] = (struct http_span){i, take};
			}
			i += take;
			c->remaining -= take;
			if (c->remaining == 0)
				c->state = CH_DATA_CR;
			continue;
		}
		if (++c->line_len > HTTP_CHUNK_LINE_MAX)
			c->state = CH_ERROR;
		else
			c->state = framing_byte(c, (unsigned char)buf[i++]);
		if (c->state == CH_ERROR)
			return -1;
		if (c->state == CH_TRAILER_START && !c->in_trailers) {
			c->in_trailers = true;
			if (c->split_trailers)
				break;
		}
	}
	c->done = c->state == CH_DONE;
	if (ndata)
		*ndata = nspans;
	return (ssize_t)i;
}

bool http_trailer_allowed(struct http_str name)
{
	static const char *const allowed[] = {
	    "content-digest",
	    "repr-digest",
	    "digest",
	    "content-md5",
	    "server-timing",
	    "grpc-status",
	    "grpc-message",
	    "grpc-status-details-bin",
	    NULL,
	};

	for (int i = 0; allowed[i]; i++)
		if (http_str_eq_nocase(name, allowed[i]))
			return true;
	return false;
}

ssize_t http_trailers_filter(const char *in, size_t len, char *out, size_t cap,
			     bool (*keep)(struct http_str name, void *arg), void *arg)
{
	size_t r = 0, w = 0;

	for (;;) {
		const char *eol = len - r >= 2 ? memmem(in + r, len - r, "\r\n", 2) : NULL;
		size_t line = eol ? (size_t)(eol - (in + r)) + 2 : 0;
		const char *colon;
		struct http_str name;

		if (!eol)
			return -1;
		if (line == 2) { /* the final CRLF */
			if (r + 2 != len || cap - w < 2)
				return -1;
			memmove(out + w, "\r\n", 2);
			return (ssize_t)(w + 2);
		}
		colon = memchr(in + r, ':', line);
		if (!colon)
			return -1;
		name = (struct http_str){in + r, (size_t)(colon - (in + r))};
		if (keep(name, arg)) {
			if (cap - w < line)
				return -1;
			memmove(out + w, in + r, line);
			w += line;
		}
		r += line;
	}
}
