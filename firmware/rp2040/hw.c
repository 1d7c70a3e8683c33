/* Clocks (XOSC 12 MHz -> PLL_SYS 125 MHz), UART0 on GPIO0/1 with an interrupt-fed RX ring, the watchdog
 * and the SysTick cycle counter. */
#include "hw.h"

#include "rp2040_regs.h"

#define XOSC_MHZ 12u
#define PLL_SYS_FBDIV 125u /* VCO = 12 MHz * 125 = 1500 MHz */
#define PLL_SYS_POSTDIV1 6u
#define PLL_SYS_POSTDIV2 2u /* 1500 / 6 / 2 = 125 MHz */

#define WATCHDOG_TIMEOUT_US 2000000u /* > 10x the slowest inference (03h boot2, XIP model) */
#define FAULT_MAGIC 0x48464C54u      /* "HFLT" in watchdog scratch 0: the next boot reports a hardfault */
#define FAULT_TX_SPINS 200000u       /* > one character time at 115200 baud: never wait forever */

/* RX ring: the UART0 interrupt empties the 32-byte hardware FIFO into it, so a frame that arrives while an
 * inference runs (about 800 bytes at 115200 baud in 70 ms) is kept. Free-running indices, one producer (the
 * interrupt) and one consumer (uart_getc): no lock needed on a single core. */
#define RX_RING_BYTES 4096u
_Static_assert((RX_RING_BYTES & (RX_RING_BYTES - 1u)) == 0, "RX_RING_BYTES must be a power of two");
static uint8_t rx_ring[RX_RING_BYTES];
static volatile uint32_t rx_head, rx_tail;

static volatile uint32_t systick_wraps;
static uint32_t reset_reason, fault_pc;

void SysTick_Handler(void)
{
    systick_wraps++;
}

static void unreset(uint32_t bits)
{
    REG_SET(RESETS_RESET) = bits;
    REG_CLR(RESETS_RESET) = bits;
    while ((REG(RESETS_DONE) & bits) != bits) {
    }
}

static void clocks_init(void)
{
    REG(CLK_SYS_RESUS_CTRL) = 0;

    REG(XOSC_CTRL) = XOSC_CTRL_FREQ_1_15MHZ;
    REG(XOSC_STARTUP) = (XOSC_MHZ * 1000u + 128u) / 256u; /* ~1 ms, in units of 256 XOSC cycles */
    REG_SET(XOSC_CTRL) = XOSC_CTRL_ENABLE;
    while (!(REG(XOSC_STATUS) & XOSC_STATUS_STABLE)) {
    }

    /* Park clk_sys on clk_ref and clk_ref on the ROSC (both glitchless) while the PLL restarts. */
    REG_CLR(CLK_SYS_CTRL) = 1u;
    while (REG(CLK_SYS_SELECTED) != 1u) {
    }
    REG_CLR(CLK_REF_CTRL) = 3u;
    while (REG(CLK_REF_SELECTED) != 1u) {
    }

    unreset(RESET_PLL_SYS);
    REG(PLL_CS) = 1u; /* REFDIV = 1 */
    REG(PLL_FBDIV_INT) = PLL_SYS_FBDIV;
    REG_CLR(PLL_PWR) = PLL_PWR_PD | PLL_PWR_VCOPD;
    while (!(REG(PLL_CS) & PLL_CS_LOCK)) {
    }
    REG(PLL_PRIM) = (PLL_SYS_POSTDIV1 << 16) | (PLL_SYS_POSTDIV2 << 12);
    REG_CLR(PLL_PWR) = PLL_PWR_POSTDIVPD;

    REG(CLK_REF_DIV) = 1u << 8;
    REG(CLK_REF_CTRL) = 2u; /* SRC = XOSC */
    while (REG(CLK_REF_SELECTED) != (1u << 2)) {
    }

    REG(CLK_SYS_DIV) = 1u << 8;
    REG(CLK_SYS_CTRL) = 0u << 5;      /* AUXSRC = PLL_SYS, still on clk_ref */
    REG(CLK_SYS_CTRL) = (0u << 5) | 1u; /* SRC = aux */
    while (REG(CLK_SYS_SELECTED) != (1u << 1)) {
    }

    REG(CLK_PERI_CTRL) = CLK_PERI_CTRL_ENABLE | (0u << 5); /* clk_peri = clk_sys */
}

static void uart_init(void)
{
    unreset(RESET_IO_BANK0 | RESET_PADS_BANK0 | RESET_UART0);
    /* Same divider rounding as the Pico SDK: 16x oversampling, 6 fractional bits. */
    uint32_t div = 8u * HW_SYS_CLOCK_HZ / HW_UART_BAUD;
    REG(UART_IBRD) = div >> 7;
    REG(UART_FBRD) = ((div & 0x7Fu) + 1u) / 2u;
    REG(UART_LCR_H) = (3u << 5) | (1u << 4); /* 8 data bits, no parity, 1 stop, FIFOs on; latches the divider */
    REG(UART_CR) = UART_CR_UARTEN | (1u << 8) | (1u << 9); /* UARTEN, TXE, RXE */
    for (uint32_t pin = 0; pin < 2u; pin++) {
        REG(PADS_GPIO(pin)) = (REG(PADS_GPIO(pin)) & ~PADS_OD) | PADS_IE;
        REG(GPIO_CTRL(pin)) = GPIO_FUNC_UART;
    }
    /* RX idles high: the pad's reset pull-down would turn an unwired RX into a stream of breaks. */
    REG(PADS_GPIO(1)) = (REG(PADS_GPIO(1)) & ~PADS_PDE) | PADS_PUE;
    REG(UART_IFLS) = UART_IFLS_RX_QUARTER;
    REG(UART_IMSC) = UART_IMSC_RXIM | UART_IMSC_RTIM;
    REG(NVIC_ISER) = 1u << UART0_IRQ;
}

void UART0_IRQHandler(void)
{
    while (!(REG(UART_FR) & UART_FR_RXFE)) {
        const uint8_t b = (uint8_t)REG(UART_DR); /* framing/parity errors surface as CRC errors */
        const uint32_t head = rx_head;
        if (head - rx_tail < RX_RING_BYTES) { /* full: the byte is lost, the frame's CRC reports it */
            rx_ring[head % RX_RING_BYTES] = b;
            rx_head = head + 1u;
        }
    }
}

/* Reads why the chip reset before the watchdog is armed again; a hardfault reboot left its PC in scratch 1. */
static void reset_reason_init(void)
{
    const uint32_t wd = REG(WATCHDOG_REASON), chip = REG(CHIP_RESET);
    if (wd & WATCHDOG_REASON_TIMER) {
        reset_reason = HW_RESET_WATCHDOG;
    } else if (wd & WATCHDOG_REASON_FORCE) {
        reset_reason = REG(WATCHDOG_SCRATCH(0)) == FAULT_MAGIC ? HW_RESET_HARDFAULT : HW_RESET_SOFTWARE;
        fault_pc = reset_reason == HW_RESET_HARDFAULT ? REG(WATCHDOG_SCRATCH(1)) : 0u;
    } else if (chip & CHIP_RESET_HAD_RUN) {
        reset_reason = HW_RESET_RUN_PIN;
    } else if (chip & CHIP_RESET_HAD_POR) {
        reset_reason = HW_RESET_POWER_ON;
    } else {
        reset_reason = HW_RESET_UNKNOWN;
    }
    REG(WATCHDOG_SCRATCH(0)) = 0;
}

static void watchdog_init(void)
{
    REG(WATCHDOG_TICK) = WATCHDOG_TICK_ENABLE | XOSC_MHZ; /* 1 us ticks from clk_ref = XOSC */
    REG(PSM_WDSEL) = PSM_WDSEL_ALL_BUT_OSCS;
    watchdog_feed();
    REG(WATCHDOG_CTRL) = WATCHDOG_CTRL_ENABLE | WATCHDOG_CTRL_PAUSE_ALL;
}

void watchdog_feed(void)
{
    REG(WATCHDOG_LOAD) = 2u * WATCHDOG_TIMEOUT_US; /* RP2040-E1: the counter drops by 2 per tick */
}

uint32_t hw_reset_reason(void)
{
    return reset_reason;
}

uint32_t hw_fault_pc(void)
{
    return fault_pc;
}

const char *hw_reset_reason_name(uint32_t reason)
{
    static const char *const names[] = {"unknown", "power-on", "run-pin", "watchdog", "software", "hardfault"};
    return reason < sizeof names / sizeof names[0] ? names[reason] : names[0];
}

/* The fault path runs from SRAM and reads no flash (its text is copied to SRAM with .data): it must work
 * when XIP itself is the problem. */
__attribute__((section(".time_critical.fault_text"))) static const char fault_text[] = "\r\nHARDFAULT pc=0x";

__attribute__((section(".time_critical.fault"))) static void fault_putc(uint32_t c)
{
    for (uint32_t n = 0; (REG(UART_FR) & UART_FR_TXFF) && n < FAULT_TX_SPINS; n++) {
    }
    REG(UART_DR) = c;
}

__attribute__((section(".time_critical.fault"), noreturn)) void hw_fault_reboot(uint32_t pc)
{
    REG(WATCHDOG_SCRATCH(0)) = FAULT_MAGIC;
    REG(WATCHDOG_SCRATCH(1)) = pc;
    /* The UART only if it is out of reset and enabled: the fault may come before uart_init. */
    if ((REG(RESETS_DONE) & RESET_UART0) && (REG(UART_CR) & UART_CR_UARTEN)) {
        for (const char *s = fault_text; *s; s++) fault_putc((uint8_t)*s);
        for (int shift = 28; shift >= 0; shift -= 4) {
            const uint32_t d = (pc >> shift) & 15u;
            fault_putc(d < 10u ? '0' + d : 'a' + d - 10u);
        }
        fault_putc('\r');
        fault_putc('\n');
        for (uint32_t n = 0; (REG(UART_FR) & UART_FR_BUSY) && n < FAULT_TX_SPINS; n++) {
        }
    }
    REG(PSM_WDSEL) = PSM_WDSEL_ALL_BUT_OSCS;
    REG(WATCHDOG_CTRL) = WATCHDOG_CTRL_TRIGGER;
    for (;;) {
    }
}

static void systick_init(void)
{
    REG(SYST_RVR) = 0xFFFFFFu;
    REG(SYST_CVR) = 0;
    REG(SYST_CSR) = (1u << 2) | (1u << 1) | (1u << 0); /* processor clock, interrupt on wrap, enable */
}

void hw_init(void)
{
    reset_reason_init();
    clocks_init();
    watchdog_init();
    uart_init();
    systick_init();
}

void uart_putc(uint8_t c)
{
    while (REG(UART_FR) & UART_FR_TXFF) {
    }
    REG(UART_DR) = c;
}

void uart_write(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) uart_putc(data[i]);
}

void uart_puts(const char *s)
{
    while (*s) uart_putc((uint8_t)*s++);
}

int uart_getc(void)
{
    const uint32_t tail = rx_tail;
    if (tail == rx_head) return -1;
    const int c = rx_ring[tail % RX_RING_BYTES];
    rx_tail = tail + 1u;
    return c;
}

uint64_t cycles_now(void)
{
    uint32_t wraps, count;
    do {
        wraps = systick_wraps;
        count = REG(SYST_CVR);
    } while (wraps != systick_wraps); /* a wrap interrupt ran in between: read again */
    return ((uint64_t)wraps << 24) + (0xFFFFFFu - count);
}
