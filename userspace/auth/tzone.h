/*
 * UTC offsets of IANA time zones, read once from the system tz database (TZif files,
 * RFC 8536) and then answered without locks or global state. glibc's localtime_r() only
 * knows the process-wide TZ, and changing TZ with setenv() while workers run is not
 * thread-safe; so the zone's transitions are loaded at config time, and instants after
 * the last transition follow the file's POSIX TZ footer rule (daylight saving forever).
 */
#ifndef XGATE_AUTH_TZONE_H
#define XGATE_AUTH_TZONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tzone;

/* name like "Asia/Seoul" or "UTC"; files come from $TZDIR or /usr/share/zoneinfo. */
struct tzone *tzone_load(const char *name, char *err, size_t errlen);
void tzone_free(struct tzone *z);
/* Seconds east of UTC in force at unix time t. */
int32_t tzone_offset(const struct tzone *z, int64_t t);

/* Parses a POSIX TZ rule ("KST-9", "EST5EDT,M3.2.0,M11.1.0"); exposed for tests. */
struct tzone *tzone_from_posix(const char *rule);

#endif
