#include "auth/b64url.h"

#include <stdint.h>

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

bool b64url_decode(const char *in, size_t len, unsigned char *out, size_t *outlen)
{
	uint32_t acc = 0;
	size_t i, n = 0;
	int bits = 0;

	if (len % 4 == 1)
		return false;
	for (i = 0; i < len; i++) {
		int v = b64url_value((unsigned char)in[i]);

		if (v < 0)
			return false;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	/* Leftover bits must be zero: otherwise "AB" and "AC" would decode alike. */
	if (bits && (acc & ((1u << bits) - 1)))
		return false;
	*outlen = n;
	return true;
}

size_t b64url_encode(const unsigned char *in, size_t len, char *out)
{
	size_t i, n = 0;

	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[n++] = b64url_alphabet[v >> 18];
		out[n++] = b64url_alphabet[(v >> 12) & 63];
		out[n++] = b64url_alphabet[(v >> 6) & 63];
		out[n++] = b64url_alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[n++] = b64url_alphabet[v >> 18];
		out[n++] = b64url_alphabet[(v >> 12) & 63];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[n++] = b64url_alphabet[v >> 18];
		out[n++] = b64url_alphabet[(v >> 12) & 63];
		out[n++] = b64url_alphabet[(v >> 6) & 63];
	}
	out[n] = '\0';
	return n;
}
