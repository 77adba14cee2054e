/*
 * Character classes shared by the HTTP parser, the chunked scanner and the path normalizer.
 * One table lookup per byte replaces a chain of comparisons in every hot loop.
 */
#ifndef XGATE_HTTP_INTERNAL_H
#define XGATE_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	HTTP_C_TCHAR = 0x01, /* token (RFC 9110 5.6.2): methods, field names */
	HTTP_C_VALUE = 0x02, /* field-vchar, obs-text, SP, HTAB: field values, reasons */
	HTTP_C_PATH = 0x04,  /* pchar / "/" (RFC 3986) incl. '%' of pct-encoded */
	HTTP_C_QUERY = 0x08, /* any VCHAR except '#': queries stay opaque to routing */
	HTTP_C_HOST = 0x10,  /* reg-name / IP-literal / port: unreserved sub-delims % : [ ] */
	HTTP_C_HEX = 0x20,
	HTTP_C_UNRESERVED = 0x40, /* ALPHA DIGIT - . _ ~ */
	HTTP_C_REQUEST_ID = 0x80, /* ALPHA DIGIT . _ : - */
};

extern const uint8_t http_ctype[256];
extern const uint8_t http_lower[256];

static inline bool http_is(unsigned char c, uint8_t cls)
{
	return http_ctype[c] & cls;
}

static inline int http_hex_value(unsigned char c)
{
	if (c <= '9')
		return c - '0';
	return (c | 0x20) - 'a' + 10;
}

/* Compares n bytes case-insensitively against a lower-case literal. */
static inline bool http_eq_lower(const char *s, const char *lower_lit, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (http_lower[(unsigned char)s[i]] != (unsigned char)lower_lit[i])
			return false;
	return true;
}

#endif
