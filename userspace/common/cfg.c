#include "common/cfg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cfg_err(struct cfg_errs *errs, const char *path, const char *fmt, ...)
{
	char msg[768];
	int n;
	va_list ap;

	n = snprintf(msg, sizeof(msg), "%s: ", path && *path ? path : "(root)");
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	va_end(ap);
	n = strlen(msg);
	/* Keys and values come from the file: a control character must not start a new line. */
	for (int i = 0; i < n; i++)
		if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f)
			msg[i] = '?';
	if (errs->len + n + 2 > errs->cap) {
		size_t cap = errs->cap ? errs->cap * 2 : 1024;
		char *text;

		while (cap < errs->len + n + 2)
			cap *= 2;
		text = realloc(errs->text, cap);
		if (!text)
			return;
		errs->text = text;
		errs->cap = cap;
	}
	memcpy(errs->text + errs->len, msg, n);
	errs->len += n;
	errs->text[errs->len++] = '\n';
	errs->text[errs->len] = '\0';
	errs->count++;
}

void cfg_errs_free(struct cfg_errs *errs)
{
	free(errs->text);
	memset(errs, 0, sizeof(*errs));
}

/* A path too long for CFG_PATH_MAX is cut, ending in "...": the message stays readable. */
static const char *path_done(char *out, int written)
{
	if (written >= CFG_PATH_MAX)
		memcpy(out + CFG_PATH_MAX - 4, "...", 4);
	return out;
}

const char *cfg_path_key(char *out, const char *base, const char *key)
{
	return path_done(out, snprintf(out, CFG_PATH_MAX, "%s%s%s", base, *base ? "." : "", key));
}

const char *cfg_path_idx(char *out, const char *base, size_t idx)
{
	return path_done(out, snprintf(out, CFG_PATH_MAX, "%s[%zu]", base, idx));
}

void cfg_check_keys(json_t *obj, const char *path, const char *const *known, struct cfg_errs *errs)
{
	const char *key;
	json_t *val;
	char p[CFG_PATH_MAX];

	json_object_foreach(obj, key, val) {
		const char *const *k;

		for (k = known; *k; k++)
			if (!strcmp(*k, key))
				break;
		if (!*k)
			cfg_err(errs, cfg_path_key(p, path, key), "unknown key");
	}
}

bool cfg_get_int(json_t *obj, const char *key, const char *path, long long def, long long min,
		 long long max, long long *out, struct cfg_errs *errs)
{
	json_t *v = json_object_get(obj, key);
	char p[CFG_PATH_MAX];

	*out = def;
	if (!v || json_is_null(v))
		return true;
	if (!json_is_integer(v)) {
		cfg_err(errs, cfg_path_key(p, path, key), "must be an integer");
		return false;
	}
	if (json_integer_value(v) < min || json_integer_value(v) > max) {
		cfg_err(errs, cfg_path_key(p, path, key), "must be between %lld and %lld", min, max);
		return false;
	}
	*out = json_integer_value(v);
	return true;
}

bool cfg_get_bool(json_t *obj, const char *key, const char *path, bool def, bool *out,
		  struct cfg_errs *errs)
{
	json_t *v = json_object_get(obj, key);
	char p[CFG_PATH_MAX];

	*out = def;
	if (!v || json_is_null(v))
		return true;
	if (!json_is_boolean(v)) {
		cfg_err(errs, cfg_path_key(p, path, key), "must be true or false");
		return false;
	}
	*out = json_is_true(v);
	return true;
}

bool cfg_get_str(json_t *obj, const char *key, const char *path, const char *def, char **out,
		 struct cfg_errs *errs)
{
	json_t *v = json_object_get(obj, key);
	char p[CFG_PATH_MAX];
	const char *s = def;

	*out = NULL;
	if (v && !json_is_null(v)) {
		if (!json_is_string(v)) {
			cfg_err(errs, cfg_path_key(p, path, key), "must be a string");
			return false;
		}
		s = json_string_value(v);
	}
	if (s && !(*out = strdup(s))) {
		cfg_err(errs, cfg_path_key(p, path, key), "out of memory");
		return false;
	}
	return true;
}

bool cfg_get_enum(json_t *obj, const char *key, const char *path, const char *const *names,
		  int def, int *out, struct cfg_errs *errs)
{
	json_t *v = json_object_get(obj, key);
	char p[CFG_PATH_MAX], list[256] = "";
	int i;

	*out = def;
	if (!v || json_is_null(v))
		return true;
	for (i = 0; json_is_string(v) && names[i]; i++) {
		if (!strcmp(names[i], json_string_value(v))) {
			*out = i;
			return true;
		}
	}
	for (i = 0; names[i]; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s\"%s\"",
			 i ? ", " : "", names[i]);
	cfg_err(errs, cfg_path_key(p, path, key), "must be one of %s", list);
	return false;
}

static json_t *get_typed(json_t *obj, const char *key, const char *path, json_type type,
			 const char *what, struct cfg_errs *errs)
{
	json_t *v = json_object_get(obj, key);
	char p[CFG_PATH_MAX];

	if (!v || json_is_null(v))
		return NULL;
	if (json_typeof(v) != type) {
		cfg_err(errs, cfg_path_key(p, path, key), "must be %s", what);
		return NULL;
	}
	return v;
}

json_t *cfg_get_object(json_t *obj, const char *key, const char *path, struct cfg_errs *errs)
{
	return get_typed(obj, key, path, JSON_OBJECT, "an object", errs);
}

json_t *cfg_get_array(json_t *obj, const char *key, const char *path, struct cfg_errs *errs)
{
	return get_typed(obj, key, path, JSON_ARRAY, "an array", errs);
}

void cfg_strings_free(char **items, int n)
{
	for (int i = 0; i < n; i++)
		free(items[i]);
	free(items);
}

bool cfg_get_strings(json_t *obj, const char *key, const char *path, bool lower, char ***items,
		     int *n, struct cfg_errs *errs)
{
	json_t *arr = json_object_get(obj, key), *v;
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	int before = errs->count;
	size_t i;

	*items = NULL;
	*n = 0;
	if (!arr || json_is_null(arr))
		return true;
	cfg_path_key(p, path, key);
	if (!json_is_array(arr)) {
		cfg_err(errs, p, "must be an array of strings");
		return false;
	}
	*items = calloc(json_array_size(arr) + 1, sizeof(**items));
	if (!*items) {
		cfg_err(errs, p, "out of memory");
		return false;
	}
	json_array_foreach(arr, i, v) {
		char *copy;

		if (!json_is_string(v) || !json_string_length(v)) {
			cfg_err(errs, cfg_path_idx(ip, p, i), "must be a non-empty string");
			continue;
		}
		copy = strdup(json_string_value(v));
		if (!copy) {
			cfg_err(errs, p, "out of memory");
			break;
		}
		for (char *c = copy; lower && *c; c++)
			*c = tolower((unsigned char)*c);
		(*items)[(*n)++] = copy;
	}
	if (errs->count == before)
		return true;
	cfg_strings_free(*items, *n);
	*items = NULL;
	*n = 0;
	return false;
}

static bool parse_port(const char *s, uint16_t *port)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 0 || v > 65535 || *s == '+' || *s == '-')
		return false;
	*port = v;
	return true;
}

bool cfg_parse_addr(const char *text, struct sockaddr_storage *out, socklen_t *len, char *err,
		    size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *hs = text;
	size_t hl;
	uint16_t port;

	memset(out, 0, sizeof(*out));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (!close || close[1] != ':') {
			snprintf(err, errlen, "expected \"[IPv6]:port\"");
			return false;
		}
		hs = text + 1;
		hl = close - hs;
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (!colon) {
			snprintf(err, errlen, "expected \"host:port\"");
			return false;
		}
		hl = colon - text;
	}
	if (hl >= sizeof(host) || !parse_port(colon + 1, &port)) {
		snprintf(err, errlen, "invalid address \"%s\"", text);
		return false;
	}
	memcpy(host, hs, hl);
	host[hl] = '\0';
	if (text[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;

		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
			snprintf(err, errlen, "invalid IPv6 address \"%s\"", host);
			return false;
		}
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		*len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)out;

		if (!strcmp(host, "*") || !strcmp(host, "")) {
			strcpy(host, "0.0.0.0");
		} else if (!strcmp(host, "localhost")) {
			strcpy(host, "127.0.0.1");
		}
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
			snprintf(err, errlen, "invalid IPv4 address \"%s\" (use an IP literal)",
				 host);
			return false;
		}
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		*len = sizeof(*s4);
	}
	return true;
}

bool cfg_parse_cidr(const char *text, int *family, uint8_t addr[16], uint8_t *prefix_len)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t hl = slash ? (size_t)(slash - text) : strlen(text);
	int max, i;
	long plen;

	if (hl >= sizeof(host))
		return false;
	memcpy(host, text, hl);
	host[hl] = '\0';
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, host, addr) == 1) {
		*family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, addr) == 1) {
		*family = AF_INET6;
		max = 128;
	} else {
		return false;
	}
	plen = max;
	if (slash) {
		char *end;

		if (!slash[1] || slash[1] == '+' || slash[1] == '-')
			return false;
		plen = strtol(slash + 1, &end, 10);
		if (*end || plen < 0 || plen > max)
			return false;
	}
	/* Clear host bits so the same network always yields the same key. */
	for (i = plen; i < max; i++)
		addr[i / 8] &= ~(0x80 >> (i % 8));
	*prefix_len = plen;
	return true;
}
