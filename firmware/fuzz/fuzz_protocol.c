/* libFuzzer harness for firmware/rp2040/protocol.c (the serial request parser and reply encoder).
 *
 * Input: infer_bytes u16 | timeout_every u8 | stream bytes. The stream is fed byte by byte; after
 * every `timeout_every`-th byte (0 = never) and at the end the line "goes idle" (proto_timeout).
 * Besides ASan/UBSan, every event is checked against the bytes that produced it, and after the
 * stream a valid INFO and INFER frame must each be answered as exactly one FRAME event (resync).
 * The payload buffer is malloc'd at its exact capacity so one byte past it is an ASan report.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#define CAPACITY 512u

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                             \
        }                                                                        \
    } while (0)

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* data[0..end) was fed; `since` is where the bytes this event may depend on begin. Returns where
 * the bytes the next event may depend on begin. */
static size_t check_event(const proto_parser_t *p, proto_event_t ev, const uint8_t *data, size_t end,
                        size_t since, int timed_out)
{
    static uint8_t frame[CAPACITY + PROTO_OVERHEAD_BYTES];
    CHECK(ev == PROTO_EV_NONE || ev == PROTO_EV_FRAME || ev == PROTO_EV_ERROR);
    if (ev == PROTO_EV_FRAME) {
        CHECK(!timed_out);
        CHECK(p->type == PROTO_REQ_INFER || p->type == PROTO_REQ_INFO);
        CHECK(p->length == (p->type == PROTO_REQ_INFER ? p->infer_bytes : 0u));
        CHECK(p->length <= p->capacity);
        /* The frame is exactly the last bytes fed, with nothing idle in between. */
        size_t n = proto_encode(frame, sizeof frame, p->type, p->payload, p->length);
        CHECK(n == PROTO_OVERHEAD_BYTES + p->length);
        CHECK(end >= since + n);
        CHECK(memcmp(frame, data + end - n, n) == 0);
        CHECK(!proto_busy(p));
        return end;
    }
    if (ev == PROTO_EV_ERROR) {
        size_t span = end - since;
        switch (p->error) {
        case PROTO_ERR_MAGIC: CHECK(p->error_detail > 0 && p->error_detail <= span); break;
        case PROTO_ERR_TYPE:
            CHECK(!timed_out && p->error_detail == data[end - 1]);
            CHECK(p->error_detail != PROTO_REQ_INFER && p->error_detail != PROTO_REQ_INFO);
            break;
        case PROTO_ERR_LENGTH: CHECK(!timed_out && span >= 7 && p->error_detail == le32(data + end - 4)); break;
        case PROTO_ERR_CRC: CHECK(!timed_out && span >= 11 && p->error_detail == le32(data + end - 4)); break;
        case PROTO_ERR_TIMEOUT: CHECK(timed_out && p->error_detail >= 2 && p->error_detail <= span); break;
        default: CHECK(0 && "unknown error code");
        }
        if (p->error == PROTO_ERR_MAGIC && !timed_out) {
            /* reported on finding the next magic: the parser is already inside that frame */
            CHECK(proto_busy(p) && end >= since + 2);
            return end - 2;
        }
        CHECK(!proto_busy(p));
        return end;
    }
    return timed_out ? end : since;
}

static void feed_valid(proto_parser_t *p, uint8_t type, uint32_t length)
{
    static uint8_t payload[CAPACITY], frame[CAPACITY + PROTO_OVERHEAD_BYTES];
    for (uint32_t i = 0; i < length; i++) payload[i] = (uint8_t)(i * 7u + type);
    size_t n = proto_encode(frame, sizeof frame, type, payload, length);
    CHECK(n == PROTO_OVERHEAD_BYTES + length);
    int frames = 0;
    for (size_t i = 0; i < n; i++) {
        proto_event_t ev = proto_feed(p, frame[i]);
        CHECK(ev != PROTO_EV_ERROR);
        if (ev == PROTO_EV_FRAME) {
            CHECK(i == n - 1 && p->type == type && p->length == length);
            CHECK(memcmp(p->payload, payload, length) == 0);
            frames++;
        }
    }
    CHECK(frames == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    uint32_t infer_bytes = (uint32_t)(data[0] | data[1] << 8) % (2u * CAPACITY); /* some exceed capacity */
    unsigned every = data[2];
    data += 3;
    size -= 3;

    uint8_t *buf = malloc(CAPACITY);
    CHECK(buf != NULL);
    proto_parser_t p;
    proto_init(&p, buf, CAPACITY, infer_bytes);
    size_t since = 0; /* bytes before the last event or idle period cannot matter any more */
    for (size_t i = 0; i < size; i++) {
        proto_event_t ev = proto_feed(&p, data[i]);
        since = check_event(&p, ev, data, i + 1, since, 0);
        if (every && (i + 1) % every == 0) {
            since = check_event(&p, proto_timeout(&p), data, i + 1, since, 1);
            CHECK(!proto_busy(&p));
        }
    }
    check_event(&p, proto_timeout(&p), data, size, since, 1);
    CHECK(!proto_busy(&p));
    CHECK(proto_timeout(&p) == PROTO_EV_NONE); /* idle twice: nothing new to report */

    /* Whatever came before, the next valid frames are answered. */
    feed_valid(&p, PROTO_REQ_INFO, 0);
    if (infer_bytes <= CAPACITY) feed_valid(&p, PROTO_REQ_INFER, infer_bytes);

    /* The encoder never writes past `cap` (a malloc'd buffer of exactly cap bytes). */
    size_t cap = size < 64 ? size : 64;
    uint8_t *out = malloc(cap ? cap : 1);
    CHECK(out != NULL);
    uint32_t len = size > 11 ? (uint32_t)(size - 11) : 0;
    size_t n = proto_encode(out, cap, size ? data[0] ^ 0x80u : PROTO_REP_INFER, data, len);
    CHECK(n == 0 || n == PROTO_OVERHEAD_BYTES + len);
    if (n) CHECK(le32(out + n - 4) == proto_crc32(out + 2, n - 6));
    free(out);
    free(buf);
    return 0;
}
