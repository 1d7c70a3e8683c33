/* Serial inference protocol: see protocol.h. Hand-written: no maintained C framing library fits
 * a 264 KB bare-metal target with a host-fuzzable, allocation-free parser. */
#include "protocol.h"

enum { ST_HUNT0, ST_HUNT1, ST_TYPE, ST_LENGTH, ST_PAYLOAD, ST_CRC };

/* CRC-32/ISO-HDLC, reflected polynomial 0xEDB88320, one nibble per lookup (64-byte table). */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

static uint32_t crc_byte(uint32_t crc, uint8_t b)
{
    crc ^= b;
    crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    return (crc >> 4) ^ crc_nibble[crc & 15u];
}

uint32_t proto_crc32_update(uint32_t crc, const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) crc = crc_byte(crc, data[i]);
    return crc;
}

uint32_t proto_crc32(const uint8_t *data, size_t n)
{
    return ~proto_crc32_update(0xFFFFFFFFu, data, n);
}

void proto_init(proto_parser_t *p, uint8_t *payload, uint32_t capacity, uint32_t infer_bytes)
{
    *p = (proto_parser_t){0};
    p->payload = payload;
    p->capacity = capacity;
    p->infer_bytes = infer_bytes;
    p->state = ST_HUNT0;
}

static proto_event_t fail(proto_parser_t *p, uint8_t code, uint32_t detail)
{
    p->error = code;
    p->error_detail = detail;
    p->quiet = 1;
    p->state = ST_HUNT0;
    p->skipped = 0;
    return PROTO_EV_ERROR;
}

static int expected_length(const proto_parser_t *p, uint32_t *len)
{
    switch (p->type) {
    case PROTO_REQ_INFER: *len = p->infer_bytes; return 1;
    case PROTO_REQ_INFO: *len = 0; return 1;
    default: return 0;
    }
}

static proto_event_t magic_found(proto_parser_t *p)
{
    proto_event_t ev = PROTO_EV_NONE;
    if (p->skipped && !p->quiet) {
        p->error = PROTO_ERR_MAGIC;
        p->error_detail = p->skipped;
        ev = PROTO_EV_ERROR;
    }
    p->skipped = 0;
    p->quiet = 0;
    p->state = ST_TYPE;
    p->crc = 0xFFFFFFFFu;
    return ev;
}

proto_event_t proto_feed(proto_parser_t *p, uint8_t b)
{
    uint32_t want = 0;
    switch (p->state) {
    case ST_HUNT0:
        if (b == PROTO_MAGIC0) p->state = ST_HUNT1;
        else p->skipped++;
        return PROTO_EV_NONE;
    case ST_HUNT1:
        if (b == PROTO_MAGIC1) return magic_found(p);
        if (b == PROTO_MAGIC0) {
            p->skipped++; /* the earlier 'P' was noise; this one may start the frame */
        } else {
            p->skipped += 2;
            p->state = ST_HUNT0;
        }
        return PROTO_EV_NONE;
    case ST_TYPE:
        p->type = b;
        p->crc = crc_byte(p->crc, b);
        if (!expected_length(p, &want)) return fail(p, PROTO_ERR_TYPE, b);
        p->state = ST_LENGTH;
        p->length = 0;
        p->got = 0;
        return PROTO_EV_NONE;
    case ST_LENGTH:
        p->crc = crc_byte(p->crc, b);
        p->length |= (uint32_t)b << (8u * p->got);
        if (++p->got < 4u) return PROTO_EV_NONE;
        expected_length(p, &want);
        if (p->length != want || p->length > p->capacity) return fail(p, PROTO_ERR_LENGTH, p->length);
        p->got = 0;
        p->crc_received = 0;
        p->state = p->length ? ST_PAYLOAD : ST_CRC;
        return PROTO_EV_NONE;
    case ST_PAYLOAD:
        p->payload[p->got++] = b;
        p->crc = crc_byte(p->crc, b);
        if (p->got == p->length) {
            p->got = 0;
            p->state = ST_CRC;
        }
        return PROTO_EV_NONE;
    case ST_CRC:
        p->crc_received |= (uint32_t)b << (8u * p->got);
        if (++p->got < 4u) return PROTO_EV_NONE;
        if (p->crc_received != ~p->crc) return fail(p, PROTO_ERR_CRC, p->crc_received);
        p->state = ST_HUNT0;
        return PROTO_EV_FRAME;
    default:
        p->state = ST_HUNT0;
        return PROTO_EV_NONE;
    }
}

proto_event_t proto_timeout(proto_parser_t *p)
{
    proto_event_t ev = PROTO_EV_NONE;
    uint32_t skipped = p->skipped + (p->state == ST_HUNT1 ? 1u : 0u);
    if (p->state > ST_HUNT1) {
        uint32_t got = p->state == ST_TYPE ? 2u : 3u; /* magic, then the type once it came */
        if (p->state == ST_LENGTH) got += p->got;
        else if (p->state == ST_PAYLOAD) got += 4u + p->got;
        else if (p->state == ST_CRC) got += 4u + p->length + p->got;
        ev = fail(p, PROTO_ERR_TIMEOUT, got);
    } else if (skipped && !p->quiet) {
        ev = fail(p, PROTO_ERR_MAGIC, skipped);
    }
    p->state = ST_HUNT0;
    p->skipped = 0;
    p->quiet = 0;
    return ev;
}

int proto_busy(const proto_parser_t *p)
{
    return p->state != ST_HUNT0 || p->skipped != 0;
}

uint32_t proto_put_header(uint8_t out[PROTO_HEADER_BYTES], uint8_t type, uint32_t length)
{
    out[0] = PROTO_MAGIC0;
    out[1] = PROTO_MAGIC1;
    out[2] = type;
    for (unsigned i = 0; i < 4u; i++) out[3 + i] = (uint8_t)(length >> (8u * i));
    return proto_crc32_update(0xFFFFFFFFu, out + 2, 5);
}

void proto_put_crc(uint8_t out[4], uint32_t crc_state)
{
    uint32_t crc = ~crc_state;
    for (unsigned i = 0; i < 4u; i++) out[i] = (uint8_t)(crc >> (8u * i));
}

size_t proto_encode(uint8_t *out, size_t cap, uint8_t type, const uint8_t *payload, uint32_t length)
{
    if (cap < PROTO_OVERHEAD_BYTES || length > cap - PROTO_OVERHEAD_BYTES) return 0;
    uint32_t crc = proto_put_header(out, type, length);
    for (uint32_t i = 0; i < length; i++) out[PROTO_HEADER_BYTES + i] = payload[i];
    crc = proto_crc32_update(crc, payload, length);
    proto_put_crc(out + PROTO_HEADER_BYTES + length, crc);
    return PROTO_OVERHEAD_BYTES + length;
}
