/* Header helpers, method and status names, request-id validation. */
#include <string.h>

#include "http/http.h"
#include "http/http_internal.h"

bool http_str_eq_nocase_n(struct http_str s, const char *lit, size_t n)
{
	if (s.len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (http_lower[(unsigned char)s.p[i]] != http_lower[(unsigned char)lit[i]])
			return false;
	return true;
}

const struct http_header *http_find_header(const struct http_header *headers, int n,
					   const char *name)
{
	for (int i = 0; i < n; i++)
		if (http_str_eq_nocase(headers[i].name, name))
			return &headers[i];
	return NULL;
}

static bool bytes_eq_nocase(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (http_lower[(unsigned char)a[i]] != http_lower[(unsigned char)b[i]])
			return false;
	return true;
}

bool http_list_has_token(struct http_str list, const char *token, size_t token_len)
{
	const char *p = list.p, *end = list.p + list.len;

	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *e = comma ? comma : end;

		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - p) == token_len && bytes_eq_nocase(p, token, token_len))
			return true;
		if (!comma)
			break;
		p = comma + 1;
	}
	return false;
}

static const struct http_str hop_by_hop[] = {
    HTTP_LIT("connection"),
    HTTP_LIT("keep-alive"),
    HTTP_LIT("proxy-connection"),
    HTTP_LIT("te"),
    HTTP_LIT("trailer"),
    HTTP_LIT("upgrade"),
    HTTP_LIT("transfer-encoding"),
    HTTP_LIT("proxy-authenticate"),
    HTTP_LIT("proxy-authorization"),
};

bool http_str_in_nocase(struct http_str s, const struct http_str *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i].len == s.len && http_str_eq_nocase_n(s, list[i].p, list[i].len))
			return true;
	return false;
}

bool http_name_dashed(struct http_str name, char *out, size_t cap, struct http_str *dashed)
{
	if (!memchr(name.p, '_', name.len) || name.len > cap)
		return false;
	for (size_t i = 0; i < name.len; i++)
		out[i] = name.p[i] == '_' ? '-' : name.p[i];
	*dashed = (struct http_str){out, name.len};
	return true;
}

bool http_is_hop_by_hop(struct http_str name, struct http_str connection)
{
	if (http_str_in_nocase(name, hop_by_hop, sizeof(hop_by_hop) / sizeof(hop_by_hop[0])))
		return true;
	return connection.len && http_list_has_token(connection, name.p, name.len);
}

static const char *const method_names[HTTP_METHOD_COUNT] = {
    [HTTP_OTHER] = "OTHER", [HTTP_GET] = "GET",		[HTTP_HEAD] = "HEAD",
    [HTTP_POST] = "POST",   [HTTP_PUT] = "PUT",		[HTTP_DELETE] = "DELETE",
    [HTTP_PATCH] = "PATCH", [HTTP_OPTIONS] = "OPTIONS", [HTTP_CONNECT] = "CONNECT",
    [HTTP_TRACE] = "TRACE",
};

const char *http_method_name(enum http_method m)
{
	if ((unsigned)m >= HTTP_METHOD_COUNT)
		return "OTHER";
	return method_names[m];
}

static const char *status_class_reason(int status)
{
	switch (status / 100) {
	case 1:
		return "Informational";
	case 2:
		return "Success";
	case 3:
		return "Redirection";
	case 4:
		return "Client Error";
	case 5:
		return "Server Error";
	}
	return "Unknown";
}

static const struct {
	short status;
	const char *reason;
} status_reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *http_status_reason(int status)
{
	for (size_t i = 0; i < sizeof(status_reasons) / sizeof(status_reasons[0]); i++)
		if (status_reasons[i].status == status)
			return status_reasons[i].reason;
	return status_class_reason(status);
}

bool http_request_id_valid(struct http_str id)
{
	if (id.len == 0 || id.len > HTTP_REQUEST_ID_MAX)
		return false;
	for (size_t i = 0; i < id.len; i++)
		if (!http_is(id.p[i], HTTP_C_REQUEST_ID))
			return false;
	return true;
}
