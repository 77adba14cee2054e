/* Protobuf wire-format reading and writing. */
#include <stdlib.h>
#include <string.h>

#include "grpc/wire.h"

bool wire_varint(struct wire *w, uint64_t *v)
{
	uint64_t x = 0;

	for (int shift = 0; shift < 64; shift += 7) {
		unsigned char c;

		if (w->off >= w->n)
			return false;
		c = w->p[w->off++];
		x |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

static bool wire_fixed(struct wire *w, int bytes, uint64_t *v)
{
	uint64_t x = 0;

	if (w->n - w->off < (size_t)bytes)
		return false;
	for (int i = 0; i < bytes; i++)
		x |= (uint64_t)w->p[w->off + i] << (8 * i);
	w->off += bytes;
	*v = x;
	return true;
}

static bool skip_group(struct wire *w, uint32_t number, int depth)
{
	struct wire_field f;
	int r;

	if (depth > 32)
		return false;
	while ((r = wire_next(w, &f)) == 1)
		if (f.wt == WT_EGROUP)
			return f.number == number;
	return false;
}

int wire_next(struct wire *w, struct wire_field *f)
{
	uint64_t key;

	if (w->off >= w->n)
		return 0;
	if (!wire_varint(w, &key) || key >> 32 || (key >> 3) == 0)
		return -1;
	f->number = key >> 3;
	f->wt = key & 7;
	f->data = NULL;
	f->len = 0;
	switch (f->wt) {
	case WT_VARINT:
		return wire_varint(w, &f->v) ? 1 : -1;
	case WT_I64:
		return wire_fixed(w, 8, &f->v) ? 1 : -1;
	case WT_I32:
		return wire_fixed(w, 4, &f->v) ? 1 : -1;
	case WT_LEN:
		if (!wire_varint(w, &f->v) || f->v > w->n - w->off)
			return -1;
		f->data = (const char *)w->p + w->off;
		f->len = f->v;
		w->off += f->v;
		return 1;
	case WT_SGROUP:
		return skip_group(w, f->number, 0) ? 1 : -1;
	case WT_EGROUP:
		return 1;
	}
	return -1;
}

static bool buf_room(struct buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->oom)
		return false;
	if (b->cap - b->len >= n)
		return true;
	cap = b->cap ? b->cap * 2 : 256;
	while (cap - b->len < n)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void buf_put(struct buf *b, const void *p, size_t n)
{
	if (!n || !buf_room(b, n))
		return;
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static size_t varint_enc(unsigned char *out, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		out[n++] = (v & 0x7f) | 0x80;
		v >>= 7;
	}
	out[n++] = v;
	return n;
}

void buf_varint(struct buf *b, uint64_t v)
{
	unsigned char tmp[10];

	buf_put(b, tmp, varint_enc(tmp, v));
}

void buf_tag(struct buf *b, uint32_t number, int wt)
{
	buf_varint(b, (uint64_t)number << 3 | wt);
}

void buf_fixed32(struct buf *b, uint32_t v)
{
	unsigned char t[4];

	for (int i = 0; i < 4; i++)
		t[i] = v >> (8 * i);
	buf_put(b, t, 4);
}

void buf_fixed64(struct buf *b, uint64_t v)
{
	unsigned char t[8];

	for (int i = 0; i < 8; i++)
		t[i] = v >> (8 * i);
	buf_put(b, t, 8);
}

void buf_close_len(struct buf *b, size_t start)
{
	unsigned char tmp[10];
	size_t body = b->len - start, n = varint_enc(tmp, body);

	if (!buf_room(b, n))
		return;
	memmove(b->p + start + n, b->p + start, body);
	memcpy(b->p + start, tmp, n);
	b->len += n;
}
