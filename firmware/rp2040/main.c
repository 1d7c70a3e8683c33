/* The app: a boot self-test on images baked in at build time, then the serial inference protocol. */
#include <stdint.h>

#include "hw.h"
#include "link.h"
#include "model.h"
#include "protocol.h"
#include "selftest_images.h"
#include "usb.h"

/* A frame that stops arriving for this long is reported as truncated and the parser resyncs. */
#ifndef PROTO_IDLE_MS
#define PROTO_IDLE_MS 200u
#endif
#define IDLE_CYCLES ((uint64_t)PROTO_IDLE_MS * (HW_SYS_CLOCK_HZ / 1000u))
#define INFO_VERSION 2u /* 2: byte 3 holds the reset reason */

static int8_t input[MODEL_INPUT_BYTES] __attribute__((aligned(4)));
static int8_t scores[MODEL_NUM_CLASSES] __attribute__((aligned(4))); /* word-aligned y: nn_blocks' specialised loops */
static proto_parser_t parser;

static void put_u32(uint8_t *out, uint32_t v)
{
    for (unsigned i = 0; i < 4u; i++) out[i] = (uint8_t)(v >> (8u * i));
}

static void print_u32(uint32_t v)
{
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    uart_puts(&buf[i]);
}

static void print_i32(int32_t v)
{
    if (v < 0) {
        uart_putc('-');
        print_u32((uint32_t)(-(int64_t)v));
    } else {
        print_u32((uint32_t)v);
    }
}

static void print_hex(uint32_t v)
{
    uart_puts("0x");
    for (int shift = 28; shift >= 0; shift -= 4) uart_putc((uint8_t)"0123456789abcdef"[(v >> shift) & 15u]);
}

static int argmax(const int8_t *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i; /* first maximum wins, like numpy.argmax */
    return best;
}

/* Runs the model and returns the clk_sys cycles it took. The barriers keep GCC from moving the
 * SysTick reads across the call (it did once: see DESIGN.md section 4). */
static uint32_t timed_model_run(const int8_t *in, int8_t *out, int *rc)
{
    __asm volatile("" ::: "memory");
    uint64_t t0 = cycles_now();
    __asm volatile("" ::: "memory");
    *rc = model_run(in, out);
    __asm volatile("" ::: "memory");
    uint64_t t1 = cycles_now();
    __asm volatile("" ::: "memory");
    return (uint32_t)(t1 - t0);
}

static void self_test(void)
{
    uart_puts("\r\npizza-edge rp2040 firmware\r\nreset=");
    uart_puts(hw_reset_reason_name(hw_reset_reason()));
    if (hw_reset_reason() == HW_RESET_HARDFAULT) {
        uart_puts(" pc=");
        print_hex(hw_fault_pc());
    }
    uart_puts("\r\n");
    for (uint32_t i = 0; i < SELFTEST_COUNT; i++) {
        watchdog_feed();
        int rc;
        uint32_t cycles = timed_model_run(selftest_images[i], scores, &rc);
        int cls = argmax(scores, MODEL_NUM_CLASSES);
        uart_puts("selftest ");
        print_u32(i);
        uart_puts(" label=");
        uart_puts(model_class_names[selftest_labels[i]]);
        uart_puts(" class=");
        uart_puts(model_class_names[cls]);
        uart_puts(" rc=");
        print_i32(rc);
        uart_puts(" cycles=");
        print_u32(cycles);
        uart_puts(" scores=");
        for (int k = 0; k < MODEL_NUM_CLASSES; k++) {
            if (k) uart_putc(',');
            print_i32(scores[k]);
        }
        uart_puts("\r\n");
    }
    uart_puts("arena=");
    print_u32(MODEL_ARENA_BYTES);
    uart_puts(" stack_used=");
    print_u32(stack_used());
    uart_puts(" stack_reserved=");
    print_u32(stack_reserved());
    uart_puts("\r\nREADY\r\n");
}

static void send_reply(uint8_t type, const uint8_t *a, uint32_t na, const uint8_t *b, uint32_t nb)
{
    uint8_t head[PROTO_HEADER_BYTES], tail[4];
    uint32_t crc = proto_put_header(head, type, na + nb);
    crc = proto_crc32_update(crc, a, na);
    crc = proto_crc32_update(crc, b, nb);
    proto_put_crc(tail, crc);
    link_write(head, sizeof head);
    link_write(a, na);
    link_write(b, nb);
    link_write(tail, sizeof tail);
}

static void send_error(uint8_t status, uint32_t detail)
{
    uint8_t body[8] = {status, 0, 0, 0};
    put_u32(body + 4, detail);
    send_reply(PROTO_REP_ERROR, body, sizeof body, 0, 0);
}

static void send_infer(void)
{
    int rc;
    uint32_t cycles = timed_model_run(input, scores, &rc);
    if (rc != 0) {
        send_error(PROTO_ERR_MODEL, (uint32_t)rc);
        return;
    }
    uint8_t body[8] = {PROTO_OK, (uint8_t)argmax(scores, MODEL_NUM_CLASSES), MODEL_NUM_CLASSES, 0};
    put_u32(body + 4, cycles);
    send_reply(PROTO_REP_INFER, body, sizeof body, (const uint8_t *)scores, MODEL_NUM_CLASSES);
}

/* INFO payload: status, version, num_classes, reset reason (enum hw_reset_reason), H u16, W u16, C u16, 0 u16,
 * input_bytes, arena_bytes, clock_hz, stack_used, stack_reserved (u32 each), then class names joined by '\n'. */
static void send_info(void)
{
    uint8_t body[32] = {PROTO_OK, INFO_VERSION, MODEL_NUM_CLASSES, (uint8_t)hw_reset_reason(),
                        (uint8_t)MODEL_INPUT_H, (uint8_t)(MODEL_INPUT_H >> 8),
                        (uint8_t)MODEL_INPUT_W, (uint8_t)(MODEL_INPUT_W >> 8),
                        (uint8_t)MODEL_INPUT_C, (uint8_t)(MODEL_INPUT_C >> 8), 0, 0};
    put_u32(body + 12, MODEL_INPUT_BYTES);
    put_u32(body + 16, MODEL_ARENA_BYTES);
    put_u32(body + 20, HW_SYS_CLOCK_HZ);
    put_u32(body + 24, stack_used());
    put_u32(body + 28, stack_reserved());
    /* Class names are sent straight from flash: count them, then stream header, names, CRC. */
    uint32_t names = 0;
    for (int k = 0; k < MODEL_NUM_CLASSES; k++) {
        const char *s = model_class_names[k];
        while (*s++) names++;
        names += (k + 1 < MODEL_NUM_CLASSES);
    }
    uint8_t head[PROTO_HEADER_BYTES], tail[4];
    uint32_t crc = proto_put_header(head, PROTO_REP_INFO, sizeof body + names);
    link_write(head, sizeof head);
    link_write(body, sizeof body);
    crc = proto_crc32_update(crc, body, sizeof body);
    for (int k = 0; k < MODEL_NUM_CLASSES; k++) {
        const char *s = model_class_names[k];
        for (; *s; s++) {
            link_putc((uint8_t)*s);
            crc = proto_crc32_update(crc, (const uint8_t *)s, 1);
        }
        if (k + 1 < MODEL_NUM_CLASSES) {
            const uint8_t nl = '\n';
            link_putc(nl);
            crc = proto_crc32_update(crc, &nl, 1);
        }
    }
    proto_put_crc(tail, crc);
    link_write(tail, sizeof tail);
}

static void handle(proto_event_t ev)
{
    if (ev == PROTO_EV_ERROR) {
        send_error(parser.error, parser.error_detail);
    } else if (ev == PROTO_EV_FRAME) {
        if (parser.type == PROTO_REQ_INFER) send_infer();
        else send_info();
    }
    if (ev != PROTO_EV_NONE) link_flush(); /* end of the reply: send USB's last partial packet */
}

int main(void)
{
    usb_init(); /* enumerates in the background (interrupts) while the self-test runs */
    self_test();
    proto_init(&parser, (uint8_t *)input, sizeof input, MODEL_INPUT_BYTES);
    uint64_t last_byte = cycles_now();
    for (;;) {
        watchdog_feed();
        int c = link_getc(proto_busy(&parser));
        uint64_t now = cycles_now();
        if (c >= 0) {
            last_byte = now;
            handle(proto_feed(&parser, (uint8_t)c));
        } else if (proto_busy(&parser) && now - last_byte > IDLE_CYCLES) {
            handle(proto_timeout(&parser));
        }
    }
}
