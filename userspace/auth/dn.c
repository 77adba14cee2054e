#include "auth/dn.h"

#include <ctype.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DN_MAX_AVAS 16 /* per RDN */
#define DN_OID_MAX 80

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *p = realloc(b->p, cap);

		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_putc(struct sbuf *b, char c)
{
	sb_put(b, &c, 1);
}

/* "OID=value" with the value folded and its separators escaped, so the form is injective. */
static void ava_encode(struct sbuf *out, const char *oid, const unsigned char *v, size_t n)
{
	bool space = false, any = false;

	sb_put(out, oid, strlen(oid));
	sb_putc(out, '=');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = v[i];

		if (c == ' ') {
			space = any;
			continue;
		}
		if (space)
			sb_putc(out, ' ');
		space = false;
		any = true;
		if (c == ',' || c == '+' || c == '\\' || c == '=')
			sb_putc(out, '\\');
		sb_putc(out, c < 0x80 ? (char)tolower(c) : (char)c);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct rdn {
	char *avas[DN_MAX_AVAS];
	int n;
};

static void rdn_clear(struct rdn *r)
{
	for (int i = 0; i < r->n; i++)
		free(r->avas[i]);
	r->n = 0;
}

/* Appends the RDN (sorted AVAs joined with '+') to out, with ',' before all but the first. */
static void rdn_flush(struct rdn *r, struct sbuf *out)
{
	if (!r->n)
		return;
	qsort(r->avas, r->n, sizeof(r->avas[0]), cmp_str);
	if (out->len)
		sb_putc(out, ',');
	for (int i = 0; i < r->n; i++) {
		if (i)
			sb_putc(out, '+');
		sb_put(out, r->avas[i], strlen(r->avas[i]));
	}
	rdn_clear(r);
}

static bool rdn_add(struct rdn *r, const char *oid, const unsigned char *v, size_t n)
{
	struct sbuf b = {0};

	if (r->n == DN_MAX_AVAS)
		return false;
	ava_encode(&b, oid, v, n);
	if (b.oom || !b.p) {
		free(b.p);
		return false;
	}
	r->avas[r->n++] = b.p;
	return true;
}

static bool oid_text(const ASN1_OBJECT *obj, char *out, size_t outlen)
{
	int n = OBJ_obj2txt(out, (int)outlen, obj, 1);

	return n > 0 && (size_t)n < outlen;
}

/* "CN", "commonName", "cn" or "2.5.4.3" to the numeric OID. */
static bool type_oid(const char *type, char *out, size_t outlen)
{
	ASN1_OBJECT *obj = NULL;
	char up[64];
	int nid;
	bool ok;

	if (isdigit((unsigned char)type[0])) {
		obj = OBJ_txt2obj(type, 1);
	} else {
		nid = OBJ_txt2nid(type);
		if (nid == NID_undef && strlen(type) < sizeof(up)) {
			for (size_t i = 0; i <= strlen(type); i++)
				up[i] = (char)toupper((unsigned char)type[i]);
			nid = OBJ_sn2nid(up);
		}
		if (nid != NID_undef)
			obj = OBJ_nid2obj(nid);
	}
	ok = obj && oid_text(obj, out, outlen);
	ASN1_OBJECT_free(obj); /* a no-op for the static table's objects */
	return ok;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One value up to an unescaped ',' or '+' or the end; *s moves past it. */
static bool parse_value(const char **s, struct sbuf *v, char *err, size_t errlen)
{
	const char *p = *s;

	while (*p == ' ')
		p++;
	if (*p == '#') {
		snprintf(err, errlen, "hex (\"#...\") values are not supported");
		return false;
	}
	for (; *p && *p != ',' && *p != '+'; p++) {
		if (*p != '\\') {
			sb_putc(v, *p);
			continue;
		}
		if (hexval((unsigned char)p[1]) >= 0 && hexval((unsigned char)p[2]) >= 0) {
			char c =
			    (char)(hexval((unsigned char)p[1]) << 4 | hexval((unsigned char)p[2]));

			if (!c) {
				snprintf(err, errlen, "\\00 is not allowed");
				return false;
			}
			sb_putc(v, c);
			p += 2;
		} else if (p[1] && strchr(" \"#+,;<=>\\", p[1])) {
			sb_putc(v, *++p);
		} else {
			snprintf(err, errlen, "bad escape at \"%.10s\"", p);
			return false;
		}
	}
	*s = p;
	return true;
}

/* "type=" with spaces around the type; *s moves past the '='. */
static bool parse_type(const char **s, char *oid, size_t oidlen, char *err, size_t errlen)
{
	const char *p = *s, *start, *end;
	char type[64];

	while (*p == ' ')
		p++;
	start = p;
	while (isalnum((unsigned char)*p) || *p == '-' || *p == '.')
		p++;
	end = p;
	while (*p == ' ')
		p++;
	if (end == start || *p != '=' || (size_t)(end - start) >= sizeof(type)) {
		snprintf(err, errlen, "expected \"type=value\" at \"%.20s\"", start);
		return false;
	}
	memcpy(type, start, end - start);
	type[end - start] = '\0';
	if (!type_oid(type, oid, oidlen)) {
		snprintf(err, errlen, "unknown attribute type \"%s\"", type);
		return false;
	}
	*s = p + 1;
	return true;
}

char *dn_canon_text(const char *s, char *err, size_t errlen)
{
	struct sbuf out = {0}, v = {0};
	struct rdn r = {0};
	char oid[DN_OID_MAX];
	bool ok = true;

	sb_put(&out, "", 0);
	while (ok && *s) {
		v.len = 0;
		sb_put(&v, "", 0);
		ok = parse_type(&s, oid, sizeof(oid), err, errlen) &&
		     parse_value(&s, &v, err, errlen);
		if (ok && !(ok = !v.oom && rdn_add(&r, oid, (unsigned char *)v.p, v.len)))
			snprintf(err, errlen, "too many values in one RDN");
		if (ok && *s == ',')
			rdn_flush(&r, &out);
		if (ok && *s && !*++s) {
			snprintf(err, errlen, "ends with a separator");
			ok = false;
		}
	}
	rdn_flush(&r, &out);
	rdn_clear(&r);
	free(v.p);
	if (ok && out.oom)
		snprintf(err, errlen, "out of memory");
	if (!ok || out.oom) {
		free(out.p);
		return NULL;
	}
	return out.p;
}

char *dn_canon_x509(const X509_NAME *name)
{
	struct sbuf out = {0};
	struct rdn r = {0};
	int set = -1;
	bool ok = true;

	sb_put(&out, "", 0);
	/* ASN.1 order is most significant first; RFC 4514 strings go the other way. */
	for (int i = X509_NAME_entry_count(name) - 1; ok && i >= 0; i--) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
		unsigned char *utf8 = NULL;
		char oid[DN_OID_MAX];
		int n;

		if (X509_NAME_ENTRY_set(e) != set)
			rdn_flush(&r, &out);
		set = X509_NAME_ENTRY_set(e);
		n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
		ok = n >= 0 && !memchr(utf8, '\0', n) &&
		     oid_text(X509_NAME_ENTRY_get_object(e), oid, sizeof(oid)) &&
		     rdn_add(&r, oid, utf8, n);
		OPENSSL_free(utf8);
	}
	rdn_flush(&r, &out);
	rdn_clear(&r);
	if (!ok || out.oom) {
		free(out.p);
		return NULL;
	}
	return out.p;
}
