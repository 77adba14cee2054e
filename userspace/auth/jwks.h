/*
 * Verification key sets: a JWKS file (RFC 7517; kty RSA, EC, OKP, oct) plus PEM public
 * keys, loaded into an immutable, refcounted keyset. Reloading builds a new keyset with a
 * new generation; readers keep the one they acquired until they release it.
 */
#ifndef XGATE_AUTH_JWKS_H
#define XGATE_AUTH_JWKS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "auth/jwa.h"

struct keyset {
	atomic_int refs;
	uint64_t generation; /* unique across all keysets ever loaded in this process */
	struct jwk *keys;
	int nkeys;
};

struct pem_source {
	char *path;
	char *kid; /* NULL: the key has no kid */
};

/* Identity of a file's contents as far as stat(2) can tell. */
struct file_stamp {
	bool valid;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

struct key_sources {
	char *jwks_file; /* NULL: none */
	struct pem_source *pems;
	int npems;
};

/*
 * Parses one JWK object. Returns 1 with *key filled, 0 when the key is not meant for
 * signatures or of a type we do not know (skipped; why in err), -1 on a malformed key.
 */
int jwk_parse(json_t *obj, struct jwk *key, char *err, size_t errlen);

/*
 * Loads every source; NULL with a message naming the file and the key on failure, and
 * *bad_source the failing source (0 the JWKS file, 1 + i the i-th PEM file).
 */
struct keyset *keyset_load(const struct key_sources *src, int *bad_source, char *err,
			   size_t errlen);
/*
 * A keyset from a JWKS document (or one bare JWK) in memory, parsed exactly like a
 * jwks_file; `name` stands for the file name in messages. NULL with the reason in err.
 */
struct keyset *keyset_from_jwks(const char *buf, size_t len, const char *name, char *err,
				size_t errlen);
struct keyset *keyset_get(struct keyset *ks);
void keyset_put(struct keyset *ks);

/*
 * Picks the key for a token: by kid when the token has one; a token without a matching kid
 * may only use the single key of a one-key set that has no kid itself.
 */
const struct jwk *keyset_find(const struct keyset *ks, const char *kid);

/* Stamps of all source files, in order (jwks file first); false when one cannot be stat'ed. */
bool key_sources_stamp(const struct key_sources *src, struct file_stamp *stamps);
int key_sources_count(const struct key_sources *src);
bool file_stamp_equal(const struct file_stamp *a, const struct file_stamp *b);
void key_sources_free(struct key_sources *src);

#endif
