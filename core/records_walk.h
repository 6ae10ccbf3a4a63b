#ifndef FLEXLOG_RECORDS_WALK_H
#define FLEXLOG_RECORDS_WALK_H

#include <stddef.h>
#include <stdint.h>

#define RW_OK 0
#define RW_ELENGTH -1   /* a record's length runs outside the section */
#define RW_EDELTA -2    /* a record's timestampDelta runs past the record */
#define RW_ESHORT -3    /* the section ends before recordsCount records */
#define RW_ETRAILING -4 /* bytes after the last record */
#define RW_EVARINT -5   /* a varint of more than ten bytes */

int rw_max_timestamp_delta(const uint8_t *body, size_t size, int32_t count, int64_t *largest);

#endif
