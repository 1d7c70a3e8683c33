/* Clocks (XOSC 12 MHz -> PLL_SYS 125 MHz), UART0 on GPIO0/1 and the SysTick cycle counter. */
#include "hw.h"

#include "rp2040_regs.h"

#define XOSC_MHZ 12u
#define PLL_SYS_FBDIV 125u /* VCO = 12 MHz * 125 = 1500 MHz */
#define PLL_SYS_POSTDIV1 6u
#define PLL_SYS_POSTDIV2 2u /* 1500 / 6 / 2 = 125 MHz */

static volatile uint32_t systick_wraps;

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
    REG(UART_CR) = (1u << 0) | (1u << 8) | (1u << 9); /* UARTEN, TXE, RXE */
    for (uint32_t pin = 0; pin < 2u; pin++) {
        REG(PADS_GPIO(pin)) = (REG(PADS_GPIO(pin)) & ~PADS_OD) | PADS_IE;
        REG(GPIO_CTRL(pin)) = GPIO_FUNC_UART;
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
    clocks_init();
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
    if (REG(UART_FR) & UART_FR_RXFE) return -1;
    return (int)(REG(UART_DR) & 0xFFu); /* framing/parity errors surface as CRC errors */
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
