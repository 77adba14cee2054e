/*
 * The JSON ⇄ XML mapping of transform body_format (SPEC "Transformation"): attributes are
 * "@name" (values stay strings), text is "#text" (an element with only text is a string),
 * repeated elements are arrays, the root element is the single top-level key; a JSON value
 * with several top-level keys (or not an object) is wrapped in <root>.
 */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transform/transform.h"

struct out {
	char *p;
	size_t len, cap;
	bool failed;
};

static void put(struct out *o, const char *s, size_t n)
{
	char *np;

	if (o->failed)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 1024;

		while (cap < o->len + n + 1)
			cap *= 2;
		np = realloc(o->p, cap);
		if (!np) {
			o->failed = true;
			return;
		}
		o->p = np;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* Text or attribute content, escaped (quotes too: the same routine serves both). */
static void put_escaped(struct out *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (s[i]) {
		case '<':
			puts_(o, "&lt;");
			break;
		case '>':
			puts_(o, "&gt;");
			break;
		case '&':
			puts_(o, "&amp;");
			break;
		case '"':
			puts_(o, "&quot;");
			break;
		default:
			/* XML 1.0 has no way to write the other C0 controls */
			if ((unsigned char)s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' &&
			    s[i] != '\r')
				o->failed = true;
			else
				put(o, s + i, 1);
		}
	}
}

/* A scalar's text; false for objects and arrays. */
static bool put_scalar(struct out *o, json_t *v)
{
	char num[64];

	if (json_is_string(v))
		put_escaped(o, json_string_value(v), json_string_length(v));
	else if (json_is_integer(v))
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v)),
		    puts_(o, num);
	else if (json_is_real(v))
		snprintf(num, sizeof(num), "%.17g", json_real_value(v)), puts_(o, num);
	else if (json_is_boolean(v))
		puts_(o, json_is_true(v) ? "true" : "false");
	else if (!json_is_null(v))
		return false;
	return true;
}

static bool xml_name(const char *s)
{
	return *s && xmlValidateName((const xmlChar *)s, 0) == 0;
}

static void put_element(struct out *o, const char *name, json_t *v, int depth);

static void put_children(struct out *o, json_t *v, int depth)
{
	const char *k;
	json_t *c;

	json_object_foreach(v, k, c)
	{
		if (k[0] == '@')
			continue;
		if (!strcmp(k, "#text")) {
			if (!put_scalar(o, c))
				o->failed = true;
		} else {
			put_element(o, k, c, depth + 1);
		}
	}
}

static void put_element(struct out *o, const char *name, json_t *v, int depth)
{
	const char *k;
	size_t i;
	json_t *c;

	if (depth > 64 || !xml_name(name)) {
		o->failed = true;
		return;
	}
	if (json_is_array(v)) {
		json_array_foreach(v, i, c) put_element(o, name, c, depth + 1);
		return;
	}
	puts_(o, "<");
	puts_(o, name);
	if (json_is_object(v)) {
		json_object_foreach(v, k, c)
		{
			if (k[0] != '@')
				continue;
			if (!xml_name(k + 1) || json_is_object(c) || json_is_array(c)) {
				o->failed = true;
				return;
			}
			puts_(o, " ");
			puts_(o, k + 1);
			puts_(o, "=\"");
			put_scalar(o, c);
			puts_(o, "\"");
		}
		puts_(o, ">");
		put_children(o, v, depth);
	} else {
		puts_(o, ">");
		put_scalar(o, v);
	}
	puts_(o, "</");
	puts_(o, name);
	puts_(o, ">");
}

char *transform_json_to_xml(json_t *j, size_t *len)
{
	struct out o = {0};
	const char *k;
	json_t *v;

	puts_(&o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	if (json_is_object(j) && json_object_size(j) == 1) {
		json_object_foreach(j, k, v) put_element(&o, k, v, 0);
	} else if (json_is_array(j)) {
		json_t *w = json_pack("{sO}", "item", j);

		put_element(&o, "root", w, 0);
		json_decref(w);
	} else {
		put_element(&o, "root", j, 0);
	}
	if (o.failed) {
		free(o.p);
		return NULL;
	}
	*len = o.len;
	return o.p;
}

static bool blank(const char *s)
{
	return !s[strspn(s, " \t\r\n")];
}

/* Adds v under key: a second element of the same name turns the value into an array. */
static void add_child(json_t *obj, const char *key, json_t *v)
{
	json_t *have = json_object_get(obj, key);

	if (!have) {
		json_object_set_new(obj, key, v);
	} else if (json_is_array(have)) {
		json_array_append_new(have, v);
	} else {
		json_t *arr = json_array();

		json_array_append(arr, have);
		json_array_append_new(arr, v);
		json_object_set_new(obj, key, arr);
	}
}

static json_t *node_value(xmlDocPtr doc, xmlNodePtr el, int depth)
{
	json_t *obj = json_object(), *r;
	struct out text = {0};
	char key[256];

	for (xmlAttrPtr a = el->properties; a; a = a->next) {
		xmlChar *v = xmlNodeListGetString(doc, a->children, 1);

		snprintf(key, sizeof(key), "@%s", (const char *)a->name);
		json_object_set_new(obj, key, json_string(v ? (const char *)v : ""));
		xmlFree(v);
	}
	for (xmlNodePtr c = el->children; c; c = c->next) {
		if (c->type == XML_ELEMENT_NODE)
			add_child(obj, (const char *)c->name,
				  depth < 64 ? node_value(doc, c, depth + 1) : json_null());
		else if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) &&
			 c->content)
			puts_(&text, (const char *)c->content);
	}
	if (!json_object_size(obj)) {
		json_decref(obj);
		r = json_string(text.p ? text.p : "");
		free(text.p);
		return r;
	}
	/* beside attributes or children, the text is trimmed (the layout around them) */
	if (text.p && !blank(text.p)) {
		const char *t = text.p + strspn(text.p, " \t\r\n");
		size_t n = strlen(t);

		while (n && strchr(" \t\r\n", t[n - 1]))
			n--;
		json_object_set_new(obj, "#text", json_stringn(t, n));
	}
	free(text.p);
	return obj;
}

json_t *transform_xml_to_json(const char *p, size_t n)
{
	/* No network, no entity substitution, no DTD loading: an upstream body cannot make
	 * the gateway fetch or expand anything. */
	xmlDocPtr doc = xmlReadMemory(p, n, NULL, NULL,
				      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmlNodePtr root;
	json_t *r = NULL;

	if (!doc)
		return NULL;
	root = xmlDocGetRootElement(doc);
	if (root) {
		r = json_object();
		json_object_set_new(r, (const char *)root->name, node_value(doc, root, 0));
	}
	xmlFreeDoc(doc);
	return r;
}

/* q of one media range entry (1 when absent). */
static double q_of(const char *params, const char *end)
{
	const char *q = params;

	while (q && q < end && (q = strstr(q, "q=")) && q < end) {
		if (q == params || q[-1] == ';' || q[-1] == ' ')
			return strtod(q + 2, NULL);
		q += 2;
	}
	return 1;
}

bool transform_prefers_xml(struct http_str accept)
{
	double qxml = -1, qjson = -1, qany = -1;
	const char *s = accept.p, *end = accept.p + accept.len;

	while (s && s < end) {
		const char *comma = memchr(s, ',', end - s), *e = comma ? comma : end;
		const char *semi = memchr(s, ';', e - s), *te = semi ? semi : e;
		double q;

		while (s < te && (*s == ' ' || *s == '\t'))
			s++;
		while (te > s && (te[-1] == ' ' || te[-1] == '\t'))
			te--;
		q = semi ? q_of(semi, e) : 1;
		if ((te - s == 15 && !strncasecmp(s, "application/xml", 15)) ||
		    (te - s == 8 && !strncasecmp(s, "text/xml", 8)))
			qxml = q > qxml ? q : qxml;
		else if (te - s == 16 && !strncasecmp(s, "application/json", 16))
			qjson = q > qjson ? q : qjson;
		else if (te - s == 3 && !strncmp(s, "*/*", 3))
			qany = q;
		s = comma ? comma + 1 : NULL;
	}
	if (qjson < 0)
		qjson = qany;
	return qxml > 0 && qxml > qjson;
}
