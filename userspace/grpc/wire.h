/* Protobuf wire-format primitives shared by the descriptor reader and the transcoder. */
#ifndef XGATE_GRPC_WIRE_H
#define XGATE_GRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

struct wire {
	const unsigned char *p;
	size_t n, off;
};

/* One field read from a message. */
struct wire_field {
	uint32_t number;
	int wt;
	uint64_t v;	       /* varint, i64 and i32 payloads */
	const char *data;      /* WT_LEN payload */
	size_t len;
};

bool wire_varint(struct wire *w, uint64_t *v);
/* Next field: 1, 0 at the end, -1 malformed. Groups are skipped whole. */
int wire_next(struct wire *w, struct wire_field *f);

struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

void buf_put(struct buf *b, const void *p, size_t n);
void buf_varint(struct buf *b, uint64_t v);
void buf_tag(struct buf *b, uint32_t number, int wt);
void buf_fixed32(struct buf *b, uint32_t v);
void buf_fixed64(struct buf *b, uint64_t v);
/* Inserts the varint length of everything written since `start` at `start`. */
void buf_close_len(struct buf *b, size_t start);

#endif
