/*
 * Path normalization for routing and forwarding: the upstream receives exactly the path
 * the router matched, so "/admin" cannot be reached as "/x/../admin", "/%61dmin",
 * "//admin", "/admin;x", "/x/..;/admin" or "/admin." past a route meant to guard it:
 * what common upstream frameworks would make of such a path is what the router sees.
 */
#include <string.h>

#include "http/http.h"
#include "http/http_internal.h"

static const char upper_hex[] = "0123456789ABCDEF";

/*
 * Already normal: no percent-escapes, no empty or dot segments, no path parameters, no
 * segment ending in '.', nothing forbidden.
 */
static bool is_normal(const char *path, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = path[i];

		if (c == '%' || c == '\\' || c == '\0' || c == ';')
			return false;
		if (c == '/' && i + 1 < len && (path[i + 1] == '/' || path[i + 1] == '.'))
			return false;
		if (c == '.' && (i + 1 == len || path[i + 1] == '/'))
			return false;
	}
	return true;
}

static bool is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/*
 * Copies the segment starting at path[r] (up to '/' or end) to path[w], decoding
 * percent-encoded unreserved characters and upper-casing the hex of the others. A raw ';'
 * starts path parameters (";jsessionid=...", RFC 3986 3.3): Tomcat, Jetty and Spring match
 * the segment without them, so they are dropped here too, and "..;x" is "..".
 * Advances *r and *w; false on a forbidden or malformed escape.
 */
static bool copy_segment(char *path, size_t len, size_t *r, size_t *w)
{
	size_t i = *r, o = *w;

	while (i < len && path[i] != '/') {
		unsigned char c = path[i];

		if (c == '\\' || c == '\0')
			return false;
		if (c == ';') {
			while (i < len && path[i] != '/')
				i++;
			break;
		}
		if (c != '%') {
			path[o++] = (char)c;
			i++;
			continue;
		}
		if (len - i < 3 || !http_is(path[i + 1], HTTP_C_HEX) ||
		    !http_is(path[i + 2], HTTP_C_HEX))
			return false;
		c = (unsigned char)(http_hex_value(path[i + 1]) << 4 | http_hex_value(path[i + 2]));
		/* an encoded ';' is refused: servers disagree on whether it starts
		 * parameters (Jetty 10 refuses it as ambiguous too) */
		if (c == '/' || c == '\\' || c == ';' || is_control(c))
			return false;
		if (http_is(c, HTTP_C_UNRESERVED)) {
			path[o++] = (char)c;
		} else {
			path[o++] = '%';
			path[o++] = upper_hex[c >> 4];
			path[o++] = upper_hex[c & 15];
		}
		i += 3;
	}
	*r = i;
	*w = o;
	return true;
}

/*
 * Checks and trims a copied segment (seg, *n bytes): a segment of three or more dots is
 * refused (Windows and some servers read it as ".."), trailing dots of any other segment
 * are dropped (IIS and Windows file systems ignore them: "admin." is "admin"), and a
 * segment that starts or ends with encoded whitespace is refused (frameworks that trim it
 * would see another segment than the router), and so is a double escape. False: reject
 * the path.
 */
static bool tidy_segment(const char *seg, size_t *n)
{
	size_t len = *n, dots = 0;

	while (dots < len && seg[dots] == '.')
		dots++;
	if (dots == len)
		return len <= 2;
	while (len && seg[len - 1] == '.')
		len--;
	if ((len >= 3 && !memcmp(seg, "%20", 3)) || (len >= 3 && !memcmp(seg + len - 3, "%20", 3)))
		return false;
	/* "%25" + two hex digits (as sent, or once "%41" became "A") is an escape again to a
	 * server that decodes twice (IIS did): "%252e%252e" would be ".." there */
	for (size_t i = 0; i + 5 <= len; i++)
		if (!memcmp(seg + i, "%25", 3) && http_is(seg[i + 3], HTTP_C_HEX) &&
		    http_is(seg[i + 4], HTTP_C_HEX))
			return false;
	*n = len;
	return true;
}

ssize_t http_path_normalize(char *path, size_t len)
{
	size_t r = 0, w = 0;

	if (len == 0 || path[0] != '/')
		return -1;
	if (is_normal(path, len))
		return (ssize_t)len;
	/* w <= r throughout: output never outgrows the input already consumed */
	while (r < len) {
		size_t seg_start = w, seg_len;

		while (r < len && path[r] == '/')
			r++;
		path[w++] = '/';
		if (!copy_segment(path, len, &r, &w))
			return -1;
		seg_len = w - seg_start - 1;
		if (!tidy_segment(path + seg_start + 1, &seg_len))
			return -1;
		w = seg_start + 1 + seg_len;
		if (seg_len == 0) {
			/* only the last segment may be empty: "/a/" keeps its slash, while
			 * "/;x/a" (a segment that was all parameters) is "/a" */
			if (r < len)
				w = seg_start;
			continue;
		}
		if (seg_len == 1 && path[seg_start + 1] == '.') {
			w = seg_start;
		} else if (seg_len == 2 && path[seg_start + 1] == '.' &&
			   path[seg_start + 2] == '.') {
			if (seg_start == 0)
				return -1; /* escapes the root */
			w = (size_t)((char *)memrchr(path, '/', seg_start) - path);
		} else {
			continue;
		}
		/* a dot segment at the end leaves its directory: "/a/b/.." is "/a/" */
		if (r >= len)
			path[w++] = '/';
	}
	return (ssize_t)w;
}
