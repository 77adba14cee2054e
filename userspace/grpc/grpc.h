/*
 * REST/JSON <-> gRPC transcoding, a pure library (no I/O) the grpc_json filter uses.
 *
 * A pool is loaded from a FileDescriptorSet (`protoc --include_imports
 * --descriptor_set_out`), read with a small wire-format reader of only the descriptor
 * fields transcoding needs: messages (fields, oneofs, map entries), enums, services and
 * their methods with the google.api.http option (extension 72295728). Messages are
 * translated between JSON (jansson) and the protobuf wire format per the proto3 JSON
 * mapping: lowerCamelCase names out (original names accepted in), 64-bit integers as
 * strings, bytes as base64, enums by name, "NaN"/"Infinity", default values omitted, the
 * well-known Timestamp, Duration, wrapper, Struct/Value/ListValue and FieldMask types in
 * their JSON forms. An input that does not fit the message fails with a message naming
 * the field ("user.age: not an integer"), which the filter answers with 400.
 *
 * HTTP bindings: each method of a chosen service gets `POST /pkg.Service/Method` (body: the
 * whole request message) plus one binding per google.api.http rule and additional binding,
 * with its path template compiled (literals, `*`, `**`, `{field.path}`, `{field=seg/ *}`,
 * `:verb`). grpc_match() picks a method for a request; grpc_build_request() assembles the
 * request message from the body, path variables and query parameters.
 */
#ifndef XGATE_GRPC_GRPC_H
#define XGATE_GRPC_GRPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pb_type {
	PB_DOUBLE = 1,
	PB_FLOAT = 2,
	PB_INT64 = 3,
	PB_UINT64 = 4,
	PB_INT32 = 5,
	PB_FIXED64 = 6,
	PB_FIXED32 = 7,
	PB_BOOL = 8,
	PB_STRING = 9,
	PB_GROUP = 10,
	PB_MESSAGE = 11,
	PB_BYTES = 12,
	PB_UINT32 = 13,
	PB_ENUM = 14,
	PB_SFIXED32 = 15,
	PB_SFIXED64 = 16,
	PB_SINT32 = 17,
	PB_SINT64 = 18,
};

/* Well-known types with their own JSON forms. */
enum pb_wkt {
	WKT_NONE,
	WKT_TIMESTAMP,
	WKT_DURATION,
	WKT_WRAPPER, /* google.protobuf.*Value with one field "value" */
	WKT_STRUCT,
	WKT_VALUE,
	WKT_LIST,
	WKT_FIELD_MASK,
	WKT_ANY, /* refused: it needs a type registry lookup per message */
};

struct pb_message;
struct pb_enum;

struct pb_field {
	char *name;
	char *json_name;
	uint32_t number;
	bool repeated;
	bool packed; /* encode repeated scalars packed (proto3 default, proto2 [packed=true]) */
	bool has_presence; /* proto3 optional, proto2 optional, oneof member, message */
	int type;	   /* enum pb_type */
	char *type_name;   /* ".pkg.Msg" for messages and enums */
	const struct pb_message *msg;
	const struct pb_enum *en;
	int oneof; /* index into the message's oneofs, -1: none */
};

struct pb_message {
	char *full_name; /* without the leading dot */
	struct pb_field *fields;
	int nfields;
	char **oneofs;
	int noneofs;
	bool map_entry;
	bool proto3;
	int wkt; /* enum pb_wkt */
};

struct pb_enum_value {
	char *name;
	int32_t number;
};

struct pb_enum {
	char *full_name;
	struct pb_enum_value *values;
	int nvalues;
};

enum grpc_verb { GV_GET, GV_PUT, GV_POST, GV_DELETE, GV_PATCH, GV_CUSTOM };

/* A compiled path template. */
enum tseg_kind { TSEG_LIT, TSEG_STAR, TSEG_DSTAR };
struct tseg {
	int kind;
	char *lit;
};
struct tvar {
	char *field_path; /* "a.b" */
	int start, end;	  /* segments [start, end) */
};
struct grpc_binding {
	char *method_name; /* "GET", or the custom kind */
	char *tmpl;	   /* the path template as written */
	struct tseg *segs;
	int nsegs;
	struct tvar *vars;
	int nvars;
	char *verb;	     /* ":verb" without the colon; NULL: none */
	char *body;	     /* NULL: no body; "*": the whole message; else a field name */
	char *response_body; /* NULL: the whole response message */
	const struct grpc_method *method;
};

struct grpc_method {
	char *name;
	char *path; /* "/pkg.Service/Method" */
	const struct pb_message *in, *out;
	char *in_name, *out_name;
	bool client_streaming, server_streaming;
};

struct grpc_service {
	char *full_name;
	struct grpc_method *methods;
	int nmethods;
	/* the http rules as read, bound to methods when the service is chosen */
	struct grpc_binding *rules;
	int nrules;
};

struct grpc_pool {
	struct pb_message **messages;
	int nmessages;
	struct pb_enum **enums;
	int nenums;
	struct grpc_service *services;
	int nservices;
	/* the bindings of the chosen services (grpc_pool_select), in match order */
	struct grpc_binding *bindings;
	int nbindings;
};

/* Loads a FileDescriptorSet; NULL with a message in err. */
struct grpc_pool *grpc_pool_load(const void *data, size_t len, char *err, size_t errlen);
struct grpc_pool *grpc_pool_load_file(const char *path, char *err, size_t errlen);
void grpc_pool_free(struct grpc_pool *pool);
/* Makes the services' methods reachable (their default and annotated bindings); false
 * with a message when a name is unknown or a binding does not compile. */
bool grpc_pool_select(struct grpc_pool *pool, const char *const *services, int n, char *err,
		      size_t errlen);

const struct pb_message *grpc_find_message(const struct grpc_pool *pool, const char *full_name);
const struct grpc_service *grpc_find_service(const struct grpc_pool *pool, const char *name);

/* JSON -> wire format. *out is malloc'd. false: err names the field. */
bool grpc_json_to_pb(const struct pb_message *m, json_t *j, char **out, size_t *out_len,
		     char *err, size_t errlen);
/* wire format -> JSON (a new reference); NULL when the bytes are not a valid message. */
json_t *grpc_pb_to_json(const struct pb_message *m, const char *p, size_t n, char *err,
			size_t errlen);

/* Compiles a path template into b (segs, vars, verb); false with err. */
bool grpc_template_compile(const char *tmpl, struct grpc_binding *b, char *err, size_t errlen);
void grpc_binding_clear(struct grpc_binding *b);

/* Path variable values of a match, percent-decoded (malloc'd). */
struct grpc_match {
	const struct grpc_binding *b;
	char *values[16];
	int nvalues;
};
enum grpc_match_result { GRPC_MATCH, GRPC_NO_MATCH, GRPC_BAD_METHOD };
/* method is "GET", "POST", ...; path without the query. GRPC_BAD_METHOD: some binding has
 * this path but not this method. */
enum grpc_match_result grpc_match(const struct grpc_pool *pool, const char *method,
				  const char *path, size_t path_len, struct grpc_match *m);
void grpc_match_clear(struct grpc_match *m);

/* The request message for a matched binding, as wire bytes (malloc'd): body (JSON text,
 * may be empty), path variables, query string (without '?', may be NULL). false: err
 * says why (400 material). */
bool grpc_build_request(const struct grpc_match *m, const char *body, size_t body_len,
			const char *query, char **out, size_t *out_len, char *err,
			size_t errlen);
/* The JSON text (malloc'd) of response messages: `frames` holds the gRPC-framed stream;
 * one message (or the response_body field of it), or a JSON array of them for server
 * streaming. NULL with err when a frame or message is malformed. */
char *grpc_build_response(const struct grpc_binding *b, const char *frames, size_t len,
			  char *err, size_t errlen);

/* gRPC framing: a 5-byte prefix (compressed flag, big-endian length). */
char *grpc_frame(const char *msg, size_t len, size_t *out_len);
/* Next frame at *off: 1 with the message, 0 at the end, -1 when malformed or compressed. */
int grpc_next_frame(const char *p, size_t len, size_t *off, const char **msg, size_t *mlen);

/* gRPC status code -> HTTP status, as Envoy maps it. */
int grpc_status_to_http(int code);
/* Decodes a grpc-message value (percent-encoded) into out. */
void grpc_message_decode(const char *p, size_t n, char *out, size_t cap);

/* Base64 (standard, padded) of n bytes; malloc'd. Decoding takes standard or URL-safe,
 * padded or not. */
char *grpc_b64_encode(const unsigned char *p, size_t n);
bool grpc_b64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len);

#endif
