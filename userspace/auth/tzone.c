#include "auth/tzone.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TZ_MAX_FILE_BYTES (256 * 1024)
#define TZ_NAME_MAX 128

struct rule_date {
	char kind; /* 'J': Julian 1..365 without Feb 29, 'n': 0..365 with it, 'M': m.w.d */
	int n, m, w, d;
	int32_t time; /* local seconds after midnight; may be negative or beyond 24h */
};

struct posix_rule {
	bool valid;
	bool has_dst;
	int32_t std_off, dst_off; /* seconds east of UTC */
	struct rule_date start, end;
};

struct tzone {
	int64_t *trans; /* transition instants, ascending */
	uint8_t *type;	/* local time type after each transition */
	int ntrans;
	int32_t *offs; /* UTC offset of each type */
	int ntypes;
	struct posix_rule rule; /* for instants after the last transition */
};

/* Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int64_t year_from_days(int64_t z)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	return yoe + era * 400 + (mp >= 10);
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Day number (since 1970-01-01) on which the rule date falls in year y. */
static int64_t rule_day(const struct rule_date *r, int64_t y)
{
	int64_t first, jan1 = days_from_civil(y, 1, 1);
	int dow, day;

	if (r->kind == 'J')
		return jan1 + r->n - 1 + (is_leap(y) && r->n >= 60);
	if (r->kind == 'n')
		return jan1 + r->n;
	first = days_from_civil(y, r->m, 1);
	dow = (int)((first + 4) % 7 + 7) % 7; /* 1970-01-01 was a Thursday */
	day = (r->d - dow + 7) % 7 + (r->w - 1) * 7;
	while (day >= month_days(y, r->m))
		day -= 7;
	return first + day;
}

static int32_t posix_offset(const struct posix_rule *r, int64_t t)
{
	int64_t y, start, end;
	bool dst;

	if (!r->has_dst)
		return r->std_off;
	y = year_from_days(floor_div(t + r->std_off, 86400));
	start = rule_day(&r->start, y) * 86400 + r->start.time - r->std_off;
	end = rule_day(&r->end, y) * 86400 + r->end.time - r->dst_off;
	if (start < end)
		dst = t >= start && t < end;
	else /* southern hemisphere: daylight time spans the new year */
		dst = !(t >= end && t < start);
	return dst ? r->dst_off : r->std_off;
}

static bool parse_num(const char **s, int min, int max, int *out)
{
	long v = 0;
	int digits = 0;

	while (isdigit((unsigned char)**s) && digits < 4) {
		v = v * 10 + (**s - '0');
		(*s)++;
		digits++;
	}
	if (!digits || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* [+-]hh[:mm[:ss]]; RFC 8536 allows hours up to 167 in rule times. */
static bool parse_hms(const char **s, int max_hours, int32_t *out)
{
	int sign = 1, h, m = 0, sec = 0;

	if (**s == '+' || **s == '-')
		sign = *(*s)++ == '-' ? -1 : 1;
	if (!parse_num(s, 0, max_hours, &h))
		return false;
	if (**s == ':') {
		(*s)++;
		if (!parse_num(s, 0, 59, &m))
			return false;
		if (**s == ':') {
			(*s)++;
			if (!parse_num(s, 0, 59, &sec))
				return false;
		}
	}
	*out = sign * (h * 3600 + m * 60 + sec);
	return true;
}

static bool parse_abbr(const char **s)
{
	const char *p = *s;

	if (*p == '<') {
		const char *close = strchr(p, '>');

		if (!close || close - p < 4)
			return false;
		*s = close + 1;
		return true;
	}
	while (isalpha((unsigned char)*p))
		p++;
	if (p - *s < 3)
		return false;
	*s = p;
	return true;
}

static bool parse_rule_date(const char **s, struct rule_date *r)
{
	r->time = 7200; /* 02:00 local unless given */
	if (**s == 'J') {
		(*s)++;
		r->kind = 'J';
		if (!parse_num(s, 1, 365, &r->n))
			return false;
	} else if (**s == 'M') {
		(*s)++;
		r->kind = 'M';
		if (!parse_num(s, 1, 12, &r->m) || *(*s)++ != '.' || !parse_num(s, 1, 5, &r->w) ||
		    *(*s)++ != '.' || !parse_num(s, 0, 6, &r->d))
			return false;
	} else {
		r->kind = 'n';
		if (!parse_num(s, 0, 365, &r->n))
			return false;
	}
	if (**s == '/') {
		(*s)++;
		return parse_hms(s, 167, &r->time);
	}
	return true;
}

static bool parse_posix(const char *s, struct posix_rule *r)
{
	int32_t off;

	memset(r, 0, sizeof(*r));
	/* POSIX offsets count hours west of Greenwich: "KST-9" is UTC+9. */
	if (!parse_abbr(&s) || !parse_hms(&s, 24, &off))
		return false;
	r->std_off = -off;
	r->dst_off = r->std_off;
	if (*s) {
		if (!parse_abbr(&s))
			return false;
		r->has_dst = true;
		r->dst_off = r->std_off + 3600;
		if (*s && *s != ',') {
			if (!parse_hms(&s, 24, &off))
				return false;
			r->dst_off = -off;
		}
		if (!*s) {
			/* POSIX leaves the default rule to the implementation; glibc uses US rules.
			 */
			s = ",M3.2.0,M11.1.0";
		}
		if (*s++ != ',' || !parse_rule_date(&s, &r->start) || *s++ != ',' ||
		    !parse_rule_date(&s, &r->end))
			return false;
	}
	r->valid = *s == '\0';
	return r->valid;
}

struct tzone *tzone_from_posix(const char *rule)
{
	struct tzone *z = calloc(1, sizeof(*z));

	if (!z)
		return NULL;
	if (!parse_posix(rule, &z->rule)) {
		free(z);
		return NULL;
	}
	return z;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct tzif_counts {
	uint32_t isut, isstd, leap, time, type, chars;
};

static bool tzif_header(const unsigned char *p, size_t len, struct tzif_counts *c)
{
	if (len < 44 || memcmp(p, "TZif", 4))
		return false;
	c->isut = be32(p + 20);
	c->isstd = be32(p + 24);
	c->leap = be32(p + 28);
	c->time = be32(p + 32);
	c->type = be32(p + 36);
	c->chars = be32(p + 40);
	return c->type >= 1 && c->type <= 256 && c->time <= 100000 && c->chars <= 65536 &&
	       c->leap <= 100000 && c->isut <= 256 && c->isstd <= 256;
}

static size_t tzif_block_len(const struct tzif_counts *c, size_t timesize)
{
	return c->time * timesize + c->time + c->type * 6 + c->chars + c->leap * (timesize + 4) +
	       c->isstd + c->isut;
}

/* Fills z from the data block that starts at p (after its header). */
static bool tzif_block(struct tzone *z, const unsigned char *p, const struct tzif_counts *c,
		       size_t timesize)
{
	const unsigned char *types = p + c->time * timesize, *info = types + c->time;
	uint32_t i;

	z->ntrans = c->time;
	z->ntypes = c->type;
	z->trans = calloc(c->time + 1, sizeof(*z->trans));
	z->type = calloc(c->time + 1, 1);
	z->offs = calloc(c->type, sizeof(*z->offs));
	if (!z->trans || !z->type || !z->offs)
		return false;
	for (i = 0; i < c->time; i++) {
		z->trans[i] = timesize == 8 ? be64(p + 8 * i) : (int32_t)be32(p + 4 * i);
		z->type[i] = types[i];
		if (types[i] >= c->type || (i && z->trans[i] <= z->trans[i - 1]))
			return false;
	}
	for (i = 0; i < c->type; i++) {
		z->offs[i] = (int32_t)be32(info + 6 * i);
		if (z->offs[i] < -89999 || z->offs[i] > 93599) /* RFC 8536 3.2 */
			return false;
	}
	return true;
}

static bool tzif_parse(struct tzone *z, const unsigned char *buf, size_t len, char *err,
		       size_t errlen)
{
	struct tzif_counts c;
	size_t off, blen;
	const char *footer, *nl;

	if (!tzif_header(buf, len, &c) || (blen = tzif_block_len(&c, 4)) > len - 44) {
		snprintf(err, errlen, "not a TZif file");
		return false;
	}
	if (buf[4] == '\0') /* version 1: 32-bit data only, no footer */
		return tzif_block(z, buf + 44, &c, 4) || (snprintf(err, errlen, "corrupt"), false);
	off = 44 + blen;
	if (!tzif_header(buf + off, len - off, &c) ||
	    (blen = tzif_block_len(&c, 8)) > len - off - 44 ||
	    !tzif_block(z, buf + off + 44, &c, 8)) {
		snprintf(err, errlen, "corrupt TZif data");
		return false;
	}
	if (c.leap) {
		snprintf(err, errlen, "zones with leap seconds (\"right/\") are not supported");
		return false;
	}
	footer = (const char *)buf + off + 44 + blen;
	if ((size_t)(footer - (const char *)buf) < len && *footer == '\n' &&
	    (nl = memchr(footer + 1, '\n', len - (footer + 1 - (const char *)buf))) &&
	    nl > footer + 1) {
		char rule[128];

		if ((size_t)(nl - footer - 1) >= sizeof(rule)) {
			snprintf(err, errlen, "TZ rule too long");
			return false;
		}
		memcpy(rule, footer + 1, nl - footer - 1);
		rule[nl - footer - 1] = '\0';
		if (!parse_posix(rule, &z->rule)) {
			snprintf(err, errlen, "unsupported TZ rule \"%s\"", rule);
			return false;
		}
	}
	return true;
}

static bool zone_name_ok(const char *name)
{
	const char *p;

	if (!*name || *name == '/' || strlen(name) >= TZ_NAME_MAX || strstr(name, ".."))
		return false;
	for (p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("/_+-", *p))
			return false;
	return true;
}

static unsigned char *read_zone(const char *name, size_t *len, char *err, size_t errlen)
{
	const char *dir = getenv("TZDIR");
	char path[512];
	unsigned char *buf;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
	f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "unknown time zone \"%s\" (%s: %s)", name, path,
			 strerror(errno));
		return NULL;
	}
	buf = malloc(TZ_MAX_FILE_BYTES);
	*len = buf ? fread(buf, 1, TZ_MAX_FILE_BYTES, f) : 0;
	if (!buf || ferror(f) || *len == TZ_MAX_FILE_BYTES) {
		snprintf(err, errlen, "cannot read time zone file %s", path);
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

struct tzone *tzone_load(const char *name, char *err, size_t errlen)
{
	unsigned char *buf;
	struct tzone *z;
	size_t len;
	char why[160];

	if (!zone_name_ok(name)) {
		snprintf(err, errlen, "invalid time zone name \"%s\"", name);
		return NULL;
	}
	buf = read_zone(name, &len, err, errlen);
	if (!buf)
		return NULL;
	z = calloc(1, sizeof(*z));
	if (!z || !tzif_parse(z, buf, len, why, sizeof(why))) {
		if (z)
			snprintf(err, errlen, "time zone \"%s\": %s", name, why);
		else
			snprintf(err, errlen, "out of memory");
		tzone_free(z);
		z = NULL;
	}
	free(buf);
	return z;
}

void tzone_free(struct tzone *z)
{
	if (!z)
		return;
	free(z->trans);
	free(z->type);
	free(z->offs);
	free(z);
}

int32_t tzone_offset(const struct tzone *z, int64_t t)
{
	int lo = 0, hi = z->ntrans - 1;

	if (!z->ntrans)
		return z->rule.valid ? posix_offset(&z->rule, t) : z->ntypes ? z->offs[0] : 0;
	if (t < z->trans[0])
		return z->offs[0];
	if (t >= z->trans[z->ntrans - 1] && z->rule.valid)
		return posix_offset(&z->rule, t);
	/* Last transition at or before t. */
	while (lo < hi) {
		int mid = lo + (hi - lo + 1) / 2;

		if (z->trans[mid] <= t)
			lo = mid;
		else
			hi = mid - 1;
	}
	return z->offs[z->type[lo]];
}
