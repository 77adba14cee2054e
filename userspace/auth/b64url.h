/* Strict base64url (RFC 4648 section 5) as JOSE uses it: no padding, no whitespace. */
#ifndef XGATE_AUTH_B64URL_H
#define XGATE_AUTH_B64URL_H

#include <stdbool.h>
#include <stddef.h>

/* Upper bound of the decoded size of len input characters. */
static inline size_t b64url_decoded_max(size_t len)
{
	return len / 4 * 3 + 2;
}

/*
 * Decodes len characters into out (b64url_decoded_max(len) bytes). Returns false on '='
 * padding, any character outside [A-Za-z0-9_-], a length of 1 mod 4, or non-zero unused
 * bits in the last character (which would let two encodings mean the same bytes).
 */
bool b64url_decode(const char *in, size_t len, unsigned char *out, size_t *outlen);

/* Encodes into out (4 * ceil(len / 3) + 1 bytes), NUL-terminated; returns the length. */
size_t b64url_encode(const unsigned char *in, size_t len, char *out);

#endif
