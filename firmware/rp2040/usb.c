/* Bare-metal USB device stack: the RP2040's USB controller (datasheet section 4.1) as one CDC-ACM port.
 *
 * Interrupt-driven: bus reset, EP0 control transfers and the bulk endpoints are served by
 * USBCTRL_IRQHandler, so the host's requests (Linux' cdc_acm gives each 5 s) are answered even while an
 * inference runs. Bulk OUT bytes wait in a ring for usb_getc; when the ring has no room for a packet the
 * endpoint stays un-armed and the controller NAKs the host: flow control, never lost bytes. */
#include "usb.h"

#include "hw.h"
#include "rp2040_regs.h"
#include "usb_desc.h"

#define SYSINFO_CHIP_ID 0x40000000u
#define CHIP_REVISION_B0_B1 1u /* RP2040-E5 is fixed from B2 on */

#define RESET_PLL_USB (1u << 13)
#define RESET_USBCTRL (1u << 24)
#define PLL_USB_BASE 0x4002C000u
#define PLL_USB_CS (PLL_USB_BASE + 0x0u)
#define PLL_USB_PWR (PLL_USB_BASE + 0x4u)
#define PLL_USB_FBDIV_INT (PLL_USB_BASE + 0x8u)
#define PLL_USB_PRIM (PLL_USB_BASE + 0xCu)
#define PLL_USB_FBDIV 100u   /* VCO = 12 MHz * 100 = 1200 MHz */
#define PLL_USB_POSTDIV 5u   /* 1200 / 5 / 5 = 48 MHz, the clock full-speed USB needs */
#define CLK_USB_CTRL (CLOCKS_BASE + 0x54u)
#define CLK_USB_DIV (CLOCKS_BASE + 0x58u)
#define CLK_USB_CTRL_ENABLE (1u << 11)

#define DPRAM_BASE 0x50100000u
#define DPRAM_BYTES 4096u
#define USB_REGS 0x50110000u
#define USB_ADDR_ENDP (USB_REGS + 0x00u)
#define USB_MAIN_CTRL (USB_REGS + 0x40u)
#define USB_SIE_CTRL (USB_REGS + 0x4Cu)
#define USB_SIE_STATUS (USB_REGS + 0x50u)
#define USB_BUFF_STATUS (USB_REGS + 0x58u)
#define USB_EP_STALL_ARM (USB_REGS + 0x68u)
#define USB_MUXING (USB_REGS + 0x74u)
#define USB_PWR (USB_REGS + 0x78u)
#define USB_PHY_DIRECT (USB_REGS + 0x7Cu)
#define USB_PHY_DIRECT_OVERRIDE (USB_REGS + 0x80u)
#define USB_INTE (USB_REGS + 0x90u)
#define USB_INTS (USB_REGS + 0x98u)

#define MAIN_CTRL_CONTROLLER_EN (1u << 0)
#define SIE_CTRL_PULLUP_EN (1u << 16)
#define SIE_CTRL_EP0_INT_1BUF (1u << 29)
#define SIE_STATUS_LINE_STATE (3u << 2)
#define SIE_STATUS_CONNECTED (1u << 16)
#define SIE_STATUS_SETUP_REC (1u << 17)
#define SIE_STATUS_BUS_RESET (1u << 19)
#define STALL_ARM_EP0_IN (1u << 0)
#define STALL_ARM_EP0_OUT (1u << 1)
#define MUXING_TO_PHY (1u << 0)
#define MUXING_TO_DIGITAL_PAD (1u << 2)
#define MUXING_SOFTCON (1u << 3)
#define PWR_VBUS_DETECT (1u << 2)
#define PWR_VBUS_DETECT_OVERRIDE_EN (1u << 3)
#define PHY_DIRECT_DP_PULLUP_EN (1u << 1)
#define PHY_DIRECT_OVERRIDE_DP_PULLUP_EN (1u << 2)
#define INT_BUFF_STATUS (1u << 4)
#define INT_BUS_RESET (1u << 12)
#define INT_SETUP_REQ (1u << 16)

/* DPRAM (device mode): SETUP packet at 0, endpoint control registers from 8 (EP1 IN), buffer control
 * registers from 0x80 (EP0 IN), data buffers (64-byte aligned) from 0x100, EP0's fixed one first. */
#define EP_CTRL(n, out) REG(DPRAM_BASE + 8u * (n) + ((out) ? 4u : 0u)) /* n >= 1 */
#define BUF_CTRL_ADDR(n, out) (DPRAM_BASE + 0x80u + 8u * (n) + ((out) ? 4u : 0u))
#define EP_CTRL_ENABLE (1u << 31)
#define EP_CTRL_INT_PER_BUFF (1u << 29)
#define EP_CTRL_BULK (2u << 26)
#define EP_CTRL_INTERRUPT (3u << 26)
#define BUF_FULL (1u << 15)
#define BUF_DATA1 (1u << 13)
#define BUF_STALL (1u << 11)
#define BUF_AVAILABLE (1u << 10)
#define BUF_LEN 0x3FFu
#define EP0_BUF 0x100u
#define NOTIFY_BUF 0x180u
#define OUT_BUF 0x1C0u
#define IN_BUF 0x200u
#define IN 0
#define OUT 1
/* BUFF_STATUS bits: EPn IN is bit 2n, EPn OUT bit 2n + 1. */
#define DONE_EP0_IN (1u << 0)
#define DONE_EP0_OUT (1u << 1)
#define DONE_DATA_IN (1u << 4)
#define DONE_DATA_OUT (1u << 5)

#define GPIO_DP 15u            /* the pin RP2040-E5's workaround borrows */
#define GPIO_FUNC_USB_DEBUG 8u
#define GPIO_CTRL_FUNCSEL 0x1Fu
#define GPIO_CTRL_OEOVER_DISABLE (2u << 12)
#define GPIO_CTRL_INOVER_HIGH (3u << 16)
#define GPIO_CTRL_OVERRIDES ((3u << 12) | (3u << 16))

#define RESET_END_TIMEOUT_US 20000u /* a host holds a bus reset 10-20 ms */
#define FORCE_J_US 1000u
#define TX_TIMEOUT_MS 100u /* a packet the host does not collect in this time is dropped */
#define CDC_DTR 1u

#define RX_RING_BYTES 1024u
_Static_assert((RX_RING_BYTES & (RX_RING_BYTES - 1u)) == 0, "RX_RING_BYTES must be a power of two");

enum { EP0_IDLE, EP0_DATA_IN, EP0_STATUS_OUT, EP0_DATA_OUT, EP0_STATUS_IN };

static struct {
    const uint8_t *data; /* rest of the IN data stage */
    uint16_t left;
    uint8_t zlp;         /* the reply is shorter than wLength and a multiple of 64: end it with a ZLP */
    uint8_t stage;
    uint8_t data1;       /* PID of the next EP0 IN packet */
    uint8_t address;     /* SET_ADDRESS takes effect after its status stage */
} ep0;
static uint8_t ep0_buf[2u + 2u * USB_STRING_MAX_CHARS]; /* built replies: strings, status words */
static uint8_t line_coding[7] = {0x00, 0xC2, 0x01, 0x00, 0, 0, 8}; /* 115200 8N1, reported back as set */

static volatile uint8_t configured, line_state;
static volatile uint8_t out_armed, in_busy;
static uint8_t out_data1, in_data1;
static uint8_t rx_ring[RX_RING_BYTES];
static volatile uint32_t rx_head, rx_tail; /* free-running; the interrupt produces, usb_getc consumes */
static uint8_t tx[USB_BULK_SIZE];
static uint32_t tx_len;
static uint8_t tx_last_full;

static void unreset(uint32_t bits)
{
    REG_SET(RESETS_RESET) = bits;
    REG_CLR(RESETS_RESET) = bits;
    while ((REG(RESETS_DONE) & bits) != bits) {
    }
}

/* Busy-waits until a bit of `mask` is set in SIE_STATUS or `us` have passed. Counts SysTick itself, so it
 * works inside this interrupt, where the SysTick wrap handler cannot run. */
static void wait_sie(uint32_t mask, uint32_t us)
{
    uint32_t left = us * (HW_SYS_CLOCK_HZ / 1000000u), prev = REG(SYST_CVR);
    while (!(REG(USB_SIE_STATUS) & mask)) {
        const uint32_t now = REG(SYST_CVR), spent = (prev - now) & 0xFFFFFFu; /* 24-bit down-counter */
        prev = now;
        if (spent >= left) return;
        left -= spent;
    }
}

static void dpram_put(uint32_t off, const uint8_t *src, uint32_t n)
{
    for (uint32_t i = 0; i < n; i += 4u) {
        uint32_t w = 0;
        for (uint32_t k = 0; k < 4u && i + k < n; k++) w |= (uint32_t)src[i + k] << (8u * k);
        REG(DPRAM_BASE + off + i) = w;
    }
}

static void dpram_get(uint32_t off, uint8_t *dst, uint32_t n)
{
    for (uint32_t i = 0; i < n; i += 4u) {
        const uint32_t w = REG(DPRAM_BASE + off + i);
        for (uint32_t k = 0; k < 4u && i + k < n; k++) dst[i + k] = (uint8_t)(w >> (8u * k));
    }
}

/* Hands a buffer to the controller. AVAILABLE goes in a second write: the controller samples the register
 * in the slower clk_usb domain (datasheet 4.1.2.5.1). */
static void arm(uint32_t buf_ctrl, uint32_t value)
{
    REG(buf_ctrl) = value;
    __asm volatile("nop\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop");
    REG(buf_ctrl) = value | BUF_AVAILABLE;
}

/* ---- EP0: control transfers ---- */

static void ep0_in_packet(void)
{
    const uint32_t n = ep0.left < USB_EP0_SIZE ? ep0.left : USB_EP0_SIZE;
    dpram_put(EP0_BUF, ep0.data, n);
    ep0.data += n;
    ep0.left = (uint16_t)(ep0.left - n);
    if (n < USB_EP0_SIZE) ep0.zlp = 0; /* a short packet ends the data stage by itself */
    arm(BUF_CTRL_ADDR(0, IN), n | BUF_FULL | (ep0.data1 ? BUF_DATA1 : 0u));
    ep0.data1 ^= 1u;
}

static void ep0_reply(const uint8_t *data, uint32_t len, uint16_t wlength)
{
    if (len > wlength) len = wlength;
    ep0.data = data;
    ep0.left = (uint16_t)len;
    ep0.zlp = len < wlength && len % USB_EP0_SIZE == 0u;
    ep0.stage = EP0_DATA_IN;
    ep0_in_packet();
}

static void ep0_status_in(void)
{
    ep0.left = 0;
    ep0.zlp = 0;
    ep0.data1 = 1u;
    ep0.stage = EP0_STATUS_IN;
    ep0_in_packet();
}

/* Both directions: the host's next data or status token gets a STALL; the next SETUP clears it. */
static void ep0_stall(void)
{
    REG(USB_EP_STALL_ARM) = STALL_ARM_EP0_IN | STALL_ARM_EP0_OUT;
    REG(BUF_CTRL_ADDR(0, IN)) = BUF_STALL;
    REG(BUF_CTRL_ADDR(0, OUT)) = BUF_STALL;
    ep0.stage = EP0_IDLE;
}

static void out_arm(void)
{
    out_armed = 1u;
    arm(BUF_CTRL_ADDR(2, OUT), USB_BULK_SIZE | (out_data1 ? BUF_DATA1 : 0u));
}

static void set_configuration(uint32_t value)
{
    configured = 0;
    out_armed = 0;
    in_busy = 0;
    out_data1 = in_data1 = 0;
    if (!value) {
        EP_CTRL(1, IN) = 0;
        EP_CTRL(2, OUT) = 0;
        EP_CTRL(2, IN) = 0;
        return;
    }
    EP_CTRL(1, IN) = EP_CTRL_ENABLE | EP_CTRL_INT_PER_BUFF | EP_CTRL_INTERRUPT | NOTIFY_BUF;
    EP_CTRL(2, OUT) = EP_CTRL_ENABLE | EP_CTRL_INT_PER_BUFF | EP_CTRL_BULK | OUT_BUF;
    EP_CTRL(2, IN) = EP_CTRL_ENABLE | EP_CTRL_INT_PER_BUFF | EP_CTRL_BULK | IN_BUF;
    configured = 1u;
    if (RX_RING_BYTES - (rx_head - rx_tail) >= USB_BULK_SIZE) out_arm();
}

static void get_descriptor(uint16_t value, uint16_t wlength)
{
    const uint32_t index = value & 0xFFu;
    switch (value >> 8) {
    case 1:
        ep0_reply(usb_device_descriptor, sizeof usb_device_descriptor, wlength);
        return;
    case 2:
        if (index == 0) {
            ep0_reply(usb_config_descriptor, sizeof usb_config_descriptor, wlength);
            return;
        }
        break;
    case 3:
        if (index == 0) { /* the language list: US English only */
            const uint8_t langs[4] = {4, 0x03, 0x09, 0x04};
            for (uint32_t i = 0; i < sizeof langs; i++) ep0_buf[i] = langs[i];
            ep0_reply(ep0_buf, sizeof langs, wlength);
            return;
        }
        if (index < USB_STRING_COUNT) { /* ASCII to UTF-16LE */
            uint32_t n = 0;
            for (const char *s = usb_strings[index]; *s && n < USB_STRING_MAX_CHARS; s++, n++) {
                ep0_buf[2u + 2u * n] = (uint8_t)*s;
                ep0_buf[3u + 2u * n] = 0;
            }
            ep0_buf[0] = (uint8_t)(2u + 2u * n);
            ep0_buf[1] = 0x03;
            ep0_reply(ep0_buf, ep0_buf[0], wlength);
            return;
        }
        break;
    default: /* device qualifier, other-speed, BOS: a full-speed USB 2.0 device has none */
        break;
    }
    ep0_stall();
}

static void handle_setup(void)
{
    uint8_t s[8];
    REG(USB_SIE_STATUS) = SIE_STATUS_SETUP_REC;
    dpram_get(0, s, sizeof s);
    const uint16_t value = (uint16_t)(s[2] | s[3] << 8), index = (uint16_t)(s[4] | s[5] << 8);
    const uint16_t length = (uint16_t)(s[6] | s[7] << 8);
    /* A SETUP ends whatever transfer EP0 was in (the controller has cleared EP_STALL_ARM). */
    REG(BUF_CTRL_ADDR(0, IN)) = 0;
    REG(BUF_CTRL_ADDR(0, OUT)) = 0;
    ep0.data1 = 1u;
    ep0.stage = EP0_IDLE;

    switch ((uint32_t)s[0] << 8 | s[1]) { /* bmRequestType, bRequest */
    case 0x8006: /* GET_DESCRIPTOR */
        get_descriptor(value, length);
        return;
    case 0x0005: /* SET_ADDRESS */
        if (length || value > 127u) break;
        ep0.address = (uint8_t)value;
        ep0_status_in();
        return;
    case 0x0009: /* SET_CONFIGURATION */
        if (length || value > 1u) break;
        set_configuration(value);
        ep0_status_in();
        return;
    case 0x8008: /* GET_CONFIGURATION */
        ep0_buf[0] = configured;
        ep0_reply(ep0_buf, 1, length);
        return;
    case 0x8000: /* GET_STATUS: device, interface, endpoint: bus powered, nothing halted */
    case 0x8100:
    case 0x8200:
        ep0_buf[0] = ep0_buf[1] = 0;
        ep0_reply(ep0_buf, 2, length);
        return;
    case 0x0201: /* CLEAR_FEATURE(ENDPOINT_HALT): restart the endpoint's data toggle */
        if (length || value != 0u) break;
        if (index == USB_EP_DATA_OUT) out_data1 = 0;
        else if (index == USB_EP_DATA_IN) in_data1 = 0;
        else if (index != USB_EP_NOTIFY) break;
        ep0_status_in();
        return;
    case 0x010B: /* SET_INTERFACE: both interfaces have only alternate setting 0 */
        if (length || value != 0u || index > 1u) break;
        ep0_status_in();
        return;
    case 0x2120: /* CDC SET_LINE_CODING: 7 bytes follow in the data stage */
        if (length != sizeof line_coding || index != 0u) break;
        ep0.stage = EP0_DATA_OUT;
        arm(BUF_CTRL_ADDR(0, OUT), USB_EP0_SIZE | BUF_DATA1);
        return;
    case 0xA121: /* CDC GET_LINE_CODING */
        if (index != 0u) break;
        ep0_reply(line_coding, sizeof line_coding, length);
        return;
    case 0x2122: /* CDC SET_CONTROL_LINE_STATE: DTR (bit 0) means a program has the port open */
        if (length || index != 0u) break;
        line_state = (uint8_t)(value & 3u);
        ep0_status_in();
        return;
    default:
        break;
    }
    ep0_stall();
}

static void ep0_in_done(void)
{
    if (ep0.stage == EP0_DATA_IN) {
        if (ep0.left || ep0.zlp) {
            ep0_in_packet();
        } else {
            ep0.stage = EP0_STATUS_OUT;
            arm(BUF_CTRL_ADDR(0, OUT), BUF_DATA1); /* the host's zero-length status packet */
        }
    } else if (ep0.stage == EP0_STATUS_IN) {
        REG(USB_ADDR_ENDP) = ep0.address;
        ep0.stage = EP0_IDLE;
    }
}

static void ep0_out_done(void)
{
    if (ep0.stage != EP0_DATA_OUT) {
        ep0.stage = EP0_IDLE; /* status stage of an IN transfer */
        return;
    }
    if ((REG(BUF_CTRL_ADDR(0, OUT)) & BUF_LEN) != sizeof line_coding) {
        ep0_stall();
        return;
    }
    dpram_get(EP0_BUF, line_coding, sizeof line_coding);
    ep0_status_in();
}

/* ---- bulk endpoints ---- */

static void data_out_done(void)
{
    const uint32_t n = REG(BUF_CTRL_ADDR(2, OUT)) & BUF_LEN;
    uint8_t packet[USB_BULK_SIZE];
    out_armed = 0;
    out_data1 ^= 1u;
    dpram_get(OUT_BUF, packet, n);
    uint32_t head = rx_head;
    for (uint32_t i = 0; i < n; i++, head++) rx_ring[head % RX_RING_BYTES] = packet[i];
    rx_head = head;
    if (RX_RING_BYTES - (head - rx_tail) >= USB_BULK_SIZE) out_arm();
}

int usb_getc(void)
{
    const uint32_t tail = rx_tail;
    if (tail == rx_head) return -1;
    const int c = rx_ring[tail % RX_RING_BYTES];
    rx_tail = tail + 1u;
    if (!out_armed && configured && RX_RING_BYTES - (rx_head - rx_tail) >= USB_BULK_SIZE) {
        __asm volatile("cpsid i" ::: "memory"); /* the interrupt re-arms too */
        if (!out_armed && configured) out_arm();
        __asm volatile("cpsie i" ::: "memory");
    }
    return c;
}

static int host_listening(void)
{
    return configured && (line_state & CDC_DTR);
}

static void send_packet(void)
{
    const uint64_t deadline = cycles_now() + (uint64_t)TX_TIMEOUT_MS * (HW_SYS_CLOCK_HZ / 1000u);
    while (in_busy && host_listening() && cycles_now() < deadline) {
    }
    if (!in_busy && host_listening()) {
        dpram_put(IN_BUF, tx, tx_len);
        in_busy = 1u; /* before arming: the completion interrupt may come at once */
        arm(BUF_CTRL_ADDR(2, IN), tx_len | BUF_FULL | (in_data1 ? BUF_DATA1 : 0u));
        in_data1 ^= 1u;
    }
    tx_last_full = tx_len == USB_BULK_SIZE;
    tx_len = 0;
}

void usb_write(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tx[tx_len++] = data[i];
        if (tx_len == USB_BULK_SIZE) send_packet();
    }
}

void usb_flush(void)
{
    if (tx_len || tx_last_full) send_packet();
}

/* ---- bus reset and the RP2040-E5 workaround ---- */

/* RP2040-E5 (B0/B1 silicon): after a bus reset the controller wants 800 us of idle J state before it
 * counts as connected, which a busy hub may never leave it; enumeration then fails. The datasheet's
 * workaround: once the reset's SE0 has ended, feed the controller a forced J for 1 ms through GPIO15's USB
 * debug mux (keeping the D+ pull-up on through the PHY override), then give the line back to the PHY.
 * Busy-waits (up to the end of the host's reset plus 1 ms) inside the bus-reset interrupt. */
static void enumeration_fix(void)
{
    wait_sie(SIE_STATUS_LINE_STATE, RESET_END_TIMEOUT_US);
    const uint32_t gpio = REG(GPIO_CTRL(GPIO_DP)), pad = REG(PADS_GPIO(GPIO_DP));
    REG(PADS_GPIO(GPIO_DP)) = pad | PADS_PUE | PADS_PDE; /* bus keep */
    REG(GPIO_CTRL(GPIO_DP)) = (gpio & ~(GPIO_CTRL_FUNCSEL | GPIO_CTRL_OVERRIDES)) | GPIO_CTRL_OEOVER_DISABLE |
                              GPIO_CTRL_INOVER_HIGH | GPIO_FUNC_USB_DEBUG;
    REG_SET(USB_PHY_DIRECT) = PHY_DIRECT_DP_PULLUP_EN;
    REG_SET(USB_PHY_DIRECT_OVERRIDE) = PHY_DIRECT_OVERRIDE_DP_PULLUP_EN;
    REG(USB_MUXING) = MUXING_TO_DIGITAL_PAD | MUXING_SOFTCON;
    wait_sie(0, FORCE_J_US);
    wait_sie(SIE_STATUS_CONNECTED, FORCE_J_US);
    REG(USB_MUXING) = MUXING_TO_PHY | MUXING_SOFTCON;
    REG_CLR(USB_PHY_DIRECT_OVERRIDE) = PHY_DIRECT_OVERRIDE_DP_PULLUP_EN;
    REG(GPIO_CTRL(GPIO_DP)) = gpio;
    REG(PADS_GPIO(GPIO_DP)) = pad;
}

static void handle_bus_reset(void)
{
    REG(USB_SIE_STATUS) = SIE_STATUS_BUS_RESET;
    REG(USB_ADDR_ENDP) = 0;
    ep0.stage = EP0_IDLE;
    ep0.address = 0;
    line_state = 0;
    set_configuration(0);
    if (REG(SYSINFO_CHIP_ID) >> 28 == CHIP_REVISION_B0_B1) enumeration_fix();
}

void USBCTRL_IRQHandler(void)
{
    const uint32_t ints = REG(USB_INTS);
    if (ints & INT_BUS_RESET) handle_bus_reset();
    if (ints & INT_BUFF_STATUS) {
        const uint32_t done = REG(USB_BUFF_STATUS);
        REG(USB_BUFF_STATUS) = done; /* write-1-to-clear, before re-arming may set them again */
        if (done & DONE_EP0_IN) ep0_in_done();
        if (done & DONE_EP0_OUT) ep0_out_done();
        if (done & DONE_DATA_IN) in_busy = 0;
        if (done & DONE_DATA_OUT) data_out_done();
    }
    if (ints & INT_SETUP_REQ) handle_setup();
}

void usb_init(void)
{
    unreset(RESET_PLL_USB);
    REG(PLL_USB_CS) = 1u; /* REFDIV = 1 */
    REG(PLL_USB_FBDIV_INT) = PLL_USB_FBDIV;
    REG_CLR(PLL_USB_PWR) = PLL_PWR_PD | PLL_PWR_VCOPD;
    while (!(REG(PLL_USB_CS) & PLL_CS_LOCK)) {
    }
    REG(PLL_USB_PRIM) = (PLL_USB_POSTDIV << 16) | (PLL_USB_POSTDIV << 12);
    REG_CLR(PLL_USB_PWR) = PLL_PWR_POSTDIVPD;

    REG_CLR(CLK_USB_CTRL) = CLK_USB_CTRL_ENABLE;
    REG(CLK_USB_DIV) = 1u << 8;
    REG(CLK_USB_CTRL) = CLK_USB_CTRL_ENABLE | (0u << 5); /* AUXSRC = PLL_USB */

    unreset(RESET_USBCTRL);
    for (uint32_t off = 0; off < DPRAM_BYTES; off += 4u) REG(DPRAM_BASE + off) = 0;
    REG(USB_MUXING) = MUXING_TO_PHY | MUXING_SOFTCON;
    /* The Pico does not route VBUS to a pin the controller sees: being powered means being plugged in. */
    REG(USB_PWR) = PWR_VBUS_DETECT | PWR_VBUS_DETECT_OVERRIDE_EN;
    REG(USB_MAIN_CTRL) = MAIN_CTRL_CONTROLLER_EN;
    REG(USB_SIE_CTRL) = SIE_CTRL_EP0_INT_1BUF;
    REG(USB_INTE) = INT_BUFF_STATUS | INT_BUS_RESET | INT_SETUP_REQ;
    REG(NVIC_ISER) = 1u << USBCTRL_IRQ;
    REG_SET(USB_SIE_CTRL) = SIE_CTRL_PULLUP_EN; /* D+ pull-up: the host sees a full-speed device */
}
