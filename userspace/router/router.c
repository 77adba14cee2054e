/*
 * Route trie over path segments.
 *
 * A route path "/a/b" names the trie node reached by the segments "a", "b" (the root is
 * the empty path before the first '/'). Each node carries three route lists:
 *   exact  - "/a/b$": the request path ends at this node;
 *   prefix - "/a/b":  the request path ends here or continues with '/';
 *   dir    - "/a/b/": the request path continues with '/' ("/" itself is dir at the root,
 *            so it catches everything).
 * Child edges live in one open-addressing table keyed by (parent node, segment), so a
 * lookup costs one hash per request segment whatever the number of routes.
 */
#include "router/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct route_ref {
	int route;
	int path; /* index into routes[route].paths, for error messages */
};

struct route_list {
	struct route_ref *refs; /* config order */
	int n, cap;
};

struct trie_node {
	size_t seg_off; /* segment text in router->text */
	uint32_t seg_len;
	uint32_t len; /* length of the path string this node stands for */
	int parent;
	struct route_list exact, prefix, dir;
};

struct trie_edge {
	uint64_t hash;
	int parent;
	int child; /* 0 = empty slot: the root is never a child */
};

struct router {
	struct trie_node *nodes;
	int nnodes, cap_nodes;
	struct trie_edge *edges;
	size_t edge_mask; /* capacity - 1, capacity a power of two */
	size_t nedges;
	char *text;
	size_t text_len, text_cap;
};

#define ALL_METHODS (((1u << HTTP_METHOD_COUNT) - 1) & ~1u)

/*
 * Path segments match without regard to ASCII case: "/ADMIN" is the "/admin" route, because
 * upstreams on case-insensitive frameworks or file systems (IIS, ASP.NET, Spring with
 * case-insensitive matching) would serve "/admin" for it, and an open "/" route must not
 * carry it there past the protected one. The path is forwarded as the client wrote it.
 */
static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static uint64_t segment_hash(int parent, const char *seg, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ ((uint64_t)(uint32_t)parent * 0x9e3779b97f4a7c15ULL);

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)ascii_lower(seg[i]);
		h *= 0x100000001b3ULL;
	}
	/* FNV's low bits are weak; the table indexes by them. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static int find_child(const struct router *r, int parent, const char *seg, size_t len)
{
	uint64_t h = segment_hash(parent, seg, len);

	for (size_t i = h & r->edge_mask;; i = (i + 1) & r->edge_mask) {
		const struct trie_edge *e = &r->edges[i];
		const struct trie_node *c;

		if (!e->child)
			return -1;
		if (e->hash != h || e->parent != parent)
			continue;
		c = &r->nodes[e->child];
		if (c->seg_len == len && !strncasecmp(r->text + c->seg_off, seg, len))
			return e->child;
	}
}

static void edge_put(struct trie_edge *table, size_t mask, const struct trie_edge *e)
{
	size_t i = e->hash & mask;

	while (table[i].child)
		i = (i + 1) & mask;
	table[i] = *e;
}

static int edges_grow(struct router *r)
{
	size_t cap = (r->edge_mask + 1) * 2;
	struct trie_edge *table = calloc(cap, sizeof(*table));

	if (!table)
		return -1;
	for (size_t i = 0; i <= r->edge_mask; i++)
		if (r->edges[i].child)
			edge_put(table, cap - 1, &r->edges[i]);
	free(r->edges);
	r->edges = table;
	r->edge_mask = cap - 1;
	return 0;
}

static int text_append(struct router *r, const char *s, size_t len, size_t *off)
{
	/* Allocated even for empty segments: find_child() offsets into text, NULL + 0 is UB. */
	if (!r->text || r->text_len + len > r->text_cap) {
		size_t cap = r->text_cap ? r->text_cap : 1024;
		char *text;

		while (cap < r->text_len + len)
			cap *= 2;
		text = realloc(r->text, cap);
		if (!text)
			return -1;
		r->text = text;
		r->text_cap = cap;
	}
	if (len)
		memcpy(r->text + r->text_len, s, len);
	*off = r->text_len;
	r->text_len += len;
	return 0;
}

static int node_new(struct router *r, int parent, const char *seg, size_t len)
{
	struct trie_node *n;

	if (r->nnodes == r->cap_nodes) {
		int cap = r->cap_nodes ? r->cap_nodes * 2 : 64;
		struct trie_node *nodes = realloc(r->nodes, cap * sizeof(*nodes));

		if (!nodes)
			return -1;
		r->nodes = nodes;
		r->cap_nodes = cap;
	}
	n = &r->nodes[r->nnodes];
	memset(n, 0, sizeof(*n));
	if (text_append(r, seg, len, &n->seg_off))
		return -1;
	n->seg_len = len;
	n->parent = parent;
	/* The root stands for "" and each child adds "/" + segment. */
	n->len = parent < 0 ? 0 : r->nodes[parent].len + 1 + len;
	return r->nnodes++;
}

static int child_add(struct router *r, int parent, const char *seg, size_t len)
{
	struct trie_edge e;
	int child = find_child(r, parent, seg, len);

	if (child >= 0)
		return child;
	if ((r->nedges + 1) * 2 > r->edge_mask + 1 && edges_grow(r))
		return -1;
	child = node_new(r, parent, seg, len);
	if (child < 0)
		return -1;
	e.hash = segment_hash(parent, seg, len);
	e.parent = parent;
	e.child = child;
	edge_put(r->edges, r->edge_mask, &e);
	r->nedges++;
	return child;
}

/* Node for the path p[0..len) (p[0] == '/'); len 0 is the root. */
static int path_insert(struct router *r, const char *p, size_t len)
{
	int node = 0;
	size_t pos = 1;

	if (!len)
		return 0;
	for (;;) {
		const char *slash = memchr(p + pos, '/', len - pos);
		size_t end = slash ? (size_t)(slash - p) : len;

		node = child_add(r, node, p + pos, end - pos);
		if (node < 0 || end == len)
			return node;
		pos = end + 1;
	}
}

static int list_add(struct route_list *l, int route, int path)
{
	if (l->n == l->cap) {
		int cap = l->cap ? l->cap * 2 : 2;
		struct route_ref *refs = realloc(l->refs, cap * sizeof(*refs));

		if (!refs)
			return -1;
		l->refs = refs;
		l->cap = cap;
	}
	l->refs[l->n].route = route;
	l->refs[l->n].path = path;
	l->n++;
	return 0;
}

static bool host_listed(char *const *hosts, int n, const char *host)
{
	for (int i = 0; i < n; i++)
		if (!strcasecmp(hosts[i], host))
			return true;
	return false;
}

static bool header_listed(const struct header_match *list, int n, const struct header_match *h)
{
	for (int i = 0; i < n; i++) {
		if (strcasecmp(list[i].name, h->name))
			continue;
		if (!list[i].value != !h->value)
			continue;
		if (!h->value || !strcmp(list[i].value, h->value))
			return true;
	}
	return false;
}

static bool same_filters(const struct route_config *a, const struct route_config *b)
{
	if (a->nhosts != b->nhosts || a->nheaders != b->nheaders)
		return false;
	for (int i = 0; i < b->nhosts; i++)
		if (!host_listed(a->hosts, a->nhosts, b->hosts[i]))
			return false;
	for (int i = 0; i < b->nheaders; i++)
		if (!header_listed(a->headers, a->nheaders, &b->headers[i]))
			return false;
	return true;
}

static uint32_t methods_of(const struct route_config *rc)
{
	return rc->methods ? rc->methods : ALL_METHODS;
}

/*
 * A later route at the same path whose filters equal an earlier one's and whose methods
 * are all taken by it can never be chosen: almost certainly a config mistake.
 */
static int shadowed_by(const struct route_list *l, const struct route_config *routes, int route)
{
	const struct route_config *rc = &routes[route];

	for (int i = 0; i < l->n; i++) {
		const struct route_config *earlier = &routes[l->refs[i].route];

		if (l->refs[i].route == route)
			continue;
		if ((methods_of(rc) & ~methods_of(earlier)) == 0 && same_filters(earlier, rc))
			return l->refs[i].route;
	}
	return -1;
}

static int route_path_add(struct router *r, const struct route_config *routes, int route,
			  int pathno, char *err, size_t errlen)
{
	const char *p = routes[route].paths[pathno];
	size_t len = p ? strlen(p) : 0;
	bool exact = false, dir = false;
	struct route_list *list;
	int node, earlier;

	if (!len || p[0] != '/') {
		snprintf(err, errlen, "routes[%d].paths[%d]: must start with '/'", route, pathno);
		return -1;
	}
	if (p[len - 1] == '$') {
		exact = true;
		len--;
	} else if (p[len - 1] == '/') {
		dir = true;
		len--;
	}
	node = path_insert(r, p, len);
	if (node < 0) {
		snprintf(err, errlen, "routes: out of memory");
		return -1;
	}
	list = exact ? &r->nodes[node].exact : dir ? &r->nodes[node].dir : &r->nodes[node].prefix;
	earlier = shadowed_by(list, routes, route);
	if (earlier >= 0) {
		snprintf(err, errlen,
			 "routes[%d].paths[%d]: \"%s\" can never match: routes[%d] has the same "
			 "path, hosts and headers and takes all its methods",
			 route, pathno, p, earlier);
		return -1;
	}
	if (list_add(list, route, pathno)) {
		snprintf(err, errlen, "routes: out of memory");
		return -1;
	}
	return 0;
}

struct router *router_build(const struct route_config *routes, int nroutes, char *err,
			    size_t errlen)
{
	struct router *r = calloc(1, sizeof(*r));

	if (errlen)
		err[0] = '\0';
	if (!r)
		goto oom;
	r->edges = calloc(64, sizeof(*r->edges));
	if (!r->edges)
		goto oom;
	r->edge_mask = 63;
	if (node_new(r, -1, "", 0) < 0)
		goto oom;
	for (int i = 0; i < nroutes; i++)
		for (int j = 0; j < routes[i].npaths; j++)
			if (route_path_add(r, routes, i, j, err, errlen))
				goto fail;
	return r;
oom:
	snprintf(err, errlen, "routes: out of memory");
fail:
	router_free(r);
	return NULL;
}

void router_free(struct router *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->nnodes; i++) {
		free(r->nodes[i].exact.refs);
		free(r->nodes[i].prefix.refs);
		free(r->nodes[i].dir.refs);
	}
	free(r->nodes);
	free(r->edges);
	free(r->text);
	free(r);
}

enum host_fit { HOST_NO = -1, HOST_ANY, HOST_WILDCARD, HOST_EXACT };

/*
 * How a route's hosts fit: an exact name, "*.example.com" for any host strictly below
 * example.com, or any host when the route lists none. Names compare without regard to
 * case; the request host comes without port or trailing dot.
 */
static enum host_fit host_fits(const struct route_config *rc, const char *host, size_t host_len)
{
	enum host_fit best = HOST_NO;

	if (!rc->nhosts)
		return HOST_ANY;
	for (int i = 0; i < rc->nhosts; i++) {
		const char *h = rc->hosts[i];
		size_t len = strlen(h);

		if (h[0] == '*' && h[1] == '.') {
			len--;
			if (host_len > len && !strncasecmp(host + host_len - len, h + 1, len))
				best = HOST_WILDCARD;
		} else if (len == host_len && !strncasecmp(h, host, len)) {
			return HOST_EXACT;
		}
	}
	return best;
}

/* Every listed header present (any occurrence with the exact value, when one is given). */
static bool headers_fit(const struct route_config *rc, const struct http_request *req)
{
	for (int i = 0; i < rc->nheaders; i++) {
		const struct header_match *m = &rc->headers[i];
		size_t name_len = strlen(m->name), value_len = m->value ? strlen(m->value) : 0;
		bool found = false;

		for (int j = 0; j < req->nheaders && !found; j++) {
			const struct http_header *h = &req->headers[j];

			if (h->name.len != name_len || strncasecmp(h->name.p, m->name, name_len))
				continue;
			found = !m->value || (h->value.len == value_len &&
					      !memcmp(h->value.p, m->value, value_len));
		}
		if (!found)
			return false;
	}
	return true;
}

struct match_walk {
	const struct route_config *routes;
	const struct http_request *req;
	const char *host;
	size_t host_len;
	uint32_t method_bit;
	size_t level_len; /* route path length of the level being collected */
	bool level_has_candidates;
	uint32_t level_allowed;
};

enum walk_step { WALK_NEXT, WALK_MATCH, WALK_405 };

/*
 * Lists are fed longest route path first. Lists with the same route path length form one
 * level ("/a$" with "/a"; "/a/$" with "/a/"), so an exact route is preferred by order
 * but a method mismatch on it still lets the prefix route of that path answer.
 */
static enum walk_step walk_list(struct match_walk *w, const struct route_list *l, size_t level_len,
				size_t prefix_len, struct route_match *out)
{
	if (level_len != w->level_len) {
		if (w->level_has_candidates)
			return WALK_405;
		w->level_len = level_len;
		w->level_allowed = 0;
	}
	/* The most specific host fit first (exact name, then wildcard, then routes without
	 * hosts), config order within each: a host's own route is not taken by a host-less
	 * route of the same path that happens to come first in the file. */
	for (enum host_fit want = HOST_EXACT; want >= HOST_ANY; want--) {
		for (int i = 0; i < l->n; i++) {
			int route = l->refs[i].route;
			const struct route_config *rc = &w->routes[route];

			if (host_fits(rc, w->host, w->host_len) != want || !headers_fit(rc, w->req))
				continue;
			w->level_has_candidates = true;
			w->level_allowed |= methods_of(rc);
			if (!rc->methods || (rc->methods & w->method_bit)) {
				out->route = route;
				out->prefix_len = prefix_len;
				return WALK_MATCH;
			}
		}
	}
	return WALK_NEXT;
}

/* Deepest trie node on the request path; *ends_there when the path has nothing after it. */
static int path_walk(const struct router *r, const char *path, size_t len, bool *ends_there)
{
	int node = 0;
	size_t pos = 1;

	*ends_there = false;
	for (;;) {
		const char *slash = memchr(path + pos, '/', len - pos);
		size_t end = slash ? (size_t)(slash - path) : len;
		int child = find_child(r, node, path + pos, end - pos);

		if (child < 0)
			return node;
		node = child;
		if (end == len) {
			*ends_there = true;
			return node;
		}
		pos = end + 1;
	}
}

static enum route_result walk_up(const struct router *r, struct match_walk *w, int node,
				 bool ends_there, struct route_match *out)
{
	enum walk_step step;

	if (ends_there) {
		const struct trie_node *n = &r->nodes[node];

		step = walk_list(w, &n->exact, n->len, n->len, out);
		if (step == WALK_NEXT)
			step = walk_list(w, &n->prefix, n->len, n->len, out);
		if (step != WALK_NEXT)
			goto done;
		node = n->parent;
	}
	for (; node >= 0; node = r->nodes[node].parent) {
		const struct trie_node *n = &r->nodes[node];

		/* The trailing '/' of a dir route is not stripped: the rest keeps its slash. */
		step = walk_list(w, &n->dir, n->len + 1, n->len, out);
		if (step == WALK_NEXT)
			step = walk_list(w, &n->prefix, n->len, n->len, out);
		if (step != WALK_NEXT)
			goto done;
	}
	step = w->level_has_candidates ? WALK_405 : WALK_NEXT;
done:
	if (step == WALK_MATCH)
		return ROUTE_MATCH;
	if (step == WALK_405) {
		out->allowed_methods = w->level_allowed;
		return ROUTE_METHOD_NOT_ALLOWED;
	}
	return ROUTE_NOT_FOUND;
}

enum route_result router_match(const struct router *r, const struct route_config *routes,
			       const struct http_request *req, const char *path, size_t path_len,
			       const char *host, size_t host_len, struct route_match *out)
{
	struct match_walk w = {
	    .routes = routes,
	    .req = req,
	    .host = host ? host : "",
	    .host_len = host ? host_len : 0,
	    .method_bit = 1u << req->method,
	    .level_len = (size_t)-1,
	};
	bool ends_there;
	int node;

	out->route = -1;
	out->prefix_len = 0;
	out->allowed_methods = 0;
	if (!path_len || path[0] != '/')
		return ROUTE_NOT_FOUND;
	node = path_walk(r, path, path_len, &ends_there);
	return walk_up(r, &w, node, ends_there, out);
}

size_t router_format_allow(uint32_t methods, char *out, size_t outlen)
{
	size_t len = 0;

	if (outlen)
		out[0] = '\0';
	for (int m = HTTP_OTHER + 1; m < HTTP_METHOD_COUNT; m++) {
		const char *name;
		int n;

		if (!(methods & (1u << m)))
			continue;
		name = http_method_name(m);
		n = snprintf(len < outlen ? out + len : NULL, len < outlen ? outlen - len : 0,
			     "%s%s", len ? ", " : "", name);
		if (n < 0)
			break;
		len += n;
	}
	return len;
}
