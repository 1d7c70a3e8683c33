/* Serial inference protocol: framing, CRC-32 and a byte-at-a-time request parser.
 * Pure C11, no hardware access, so it also builds for the host (tests, fuzzing).
 *
 * Frame (both directions), all integers little-endian:
 *   magic 'P' 'Z' | type u8 | length u32 | payload[length] | crc32 u32
 * crc32 is CRC-32/ISO-HDLC (zlib's crc32) over type, length and payload.
 */
#ifndef PROTOCOL_H
#define PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC0 0x50u /* 'P' */
#define PROTO_MAGIC1 0x5Au /* 'Z' */
#define PROTO_HEADER_BYTES 7u /* magic(2) + type(1) + length(4) */
#define PROTO_OVERHEAD_BYTES 11u /* header + crc(4) */

/* Request types (host -> device). */
#define PROTO_REQ_INFER 0x01u /* payload: MODEL_INPUT_BYTES int8, NHWC, pixel-128 */
#define PROTO_REQ_INFO 0x02u  /* payload: empty */

/* Reply types (device -> host). */
#define PROTO_REP_INFER 0x81u /* status u8, class u8, n u8, 0 u8, cycles u32, scores int8[n] */
#define PROTO_REP_INFO 0x82u  /* see main.c: send_info */
#define PROTO_REP_ERROR 0xEEu /* status u8, 0 u8, 0 u8, 0 u8, detail u32 */

/* Status codes (first payload byte of every reply). */
enum proto_status {
    PROTO_OK = 0,
    PROTO_ERR_MAGIC = 1,   /* bytes that are not a frame were skipped; detail = count */
    PROTO_ERR_TYPE = 2,    /* unknown request type; detail = type */
    PROTO_ERR_LENGTH = 3,  /* length does not fit the type; detail = length received */
    PROTO_ERR_CRC = 4,     /* detail = crc received */
    PROTO_ERR_TIMEOUT = 5, /* frame truncated: the line went idle mid-frame; detail = bytes got */
    PROTO_ERR_MODEL = 6    /* model_run failed; detail = its return value */
};

/* What proto_feed / proto_timeout report. */
typedef enum {
    PROTO_EV_NONE = 0,  /* keep feeding */
    PROTO_EV_FRAME = 1, /* a valid request: p->type, p->payload[0..p->length) */
    PROTO_EV_ERROR = 2  /* a malformed frame: p->error, p->error_detail */
} proto_event_t;

typedef struct {
    /* configuration */
    uint8_t *payload;     /* caller-owned buffer */
    uint32_t capacity;    /* its size */
    uint32_t infer_bytes; /* required length of an INFER payload */
    /* state */
    uint8_t state;
    uint8_t type;
    uint8_t quiet;         /* an error was just reported: do not also report the skipped bytes */
    uint32_t length;
    uint32_t got;          /* bytes of the current field received */
    uint32_t crc;          /* running CRC */
    uint32_t crc_received;
    uint32_t skipped;      /* non-frame bytes skipped while hunting for the magic */
    /* result of the last ERROR event */
    uint8_t error;
    uint32_t error_detail;
} proto_parser_t;

uint32_t proto_crc32_update(uint32_t crc, const uint8_t *data, size_t n);
uint32_t proto_crc32(const uint8_t *data, size_t n);

void proto_init(proto_parser_t *p, uint8_t *payload, uint32_t capacity, uint32_t infer_bytes);
proto_event_t proto_feed(proto_parser_t *p, uint8_t byte);
/* The line has been idle: report a truncated frame or skipped garbage, then hunt for a magic. */
proto_event_t proto_timeout(proto_parser_t *p);
/* Nonzero while a frame or skipped garbage is pending (the caller's idle timer matters). */
int proto_busy(const proto_parser_t *p);

/* Writes header (7 bytes) for a reply of `length` payload bytes; returns the CRC state to
 * continue with proto_crc32_update over the payload; finish with proto_put_crc. */
uint32_t proto_put_header(uint8_t out[PROTO_HEADER_BYTES], uint8_t type, uint32_t length);
void proto_put_crc(uint8_t out[4], uint32_t crc_state);
/* Encodes a whole reply into out (capacity cap); returns its size or 0 if it does not fit. */
size_t proto_encode(uint8_t *out, size_t cap, uint8_t type, const uint8_t *payload, uint32_t length);

#endif
