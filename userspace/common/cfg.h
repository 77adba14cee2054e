/*
 * Helpers every config section parser uses: error collection with JSON paths
 * ("routes[2].upstream: unknown upstream \"pay\""), typed getters with range checks,
 * and unknown-key detection. A getter returns false and records an error when the
 * value is present but wrong; an absent key yields the default without error.
 */
#ifndef XGATE_COMMON_CFG_H
#define XGATE_COMMON_CFG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CFG_PATH_MAX 256

struct cfg_errs {
	int count;
	char *text; /* "path: message\n" lines */
	size_t len, cap;
};

void cfg_err(struct cfg_errs *errs, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void cfg_errs_free(struct cfg_errs *errs);

/* Path builders: write "base.key" / "base[idx]" into out (CFG_PATH_MAX bytes). */
const char *cfg_path_key(char *out, const char *base, const char *key);
const char *cfg_path_idx(char *out, const char *base, size_t idx);

/* Records an error for every key of obj not in the NULL-terminated list. */
void cfg_check_keys(json_t *obj, const char *path, const char *const *known, struct cfg_errs *errs);

/* Object member getters. `path` is the path of obj itself. */
bool cfg_get_int(json_t *obj, const char *key, const char *path, long long def, long long min,
		 long long max, long long *out, struct cfg_errs *errs);
bool cfg_get_bool(json_t *obj, const char *key, const char *path, bool def, bool *out,
		  struct cfg_errs *errs);
/* *out is a malloc'd copy (or of def; NULL when def is NULL and key absent). */
bool cfg_get_str(json_t *obj, const char *key, const char *path, const char *def, char **out,
		 struct cfg_errs *errs);
/* Picks the index of the value in the NULL-terminated names list. */
bool cfg_get_enum(json_t *obj, const char *key, const char *path, const char *const *names,
		  int def, int *out, struct cfg_errs *errs);
/* Returns the member if it is an object (or absent: NULL, no error). */
json_t *cfg_get_object(json_t *obj, const char *key, const char *path, struct cfg_errs *errs);
json_t *cfg_get_array(json_t *obj, const char *key, const char *path, struct cfg_errs *errs);
/*
 * An optional array of non-empty strings: *items becomes a malloc'd, NULL-terminated array
 * of copies (lower-cased when `lower`), *n its length; absent yields NULL and 0. Every bad
 * element is reported; then nothing is returned (false).
 */
bool cfg_get_strings(json_t *obj, const char *key, const char *path, bool lower, char ***items,
		     int *n, struct cfg_errs *errs);
void cfg_strings_free(char **items, int n);

/* "1.2.3.4:80", "[::1]:80", "*:80"/"0.0.0.0:80". Returns false with a message in err. */
bool cfg_parse_addr(const char *text, struct sockaddr_storage *out, socklen_t *len, char *err,
		    size_t errlen);
/* "198.18.0.0/15", "2001:db8::/32", or a bare address (full prefix). family AF_INET/AF_INET6. */
bool cfg_parse_cidr(const char *text, int *family, uint8_t addr[16], uint8_t *prefix_len);

#endif
