/* The few RP2040 registers this firmware touches (RP2040 datasheet, chapter 2 and 4). */
#ifndef RP2040_REGS_H
#define RP2040_REGS_H

#include <stdint.h>

#define REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))
/* Atomic set/clear aliases of APB/AHB peripheral registers (datasheet 2.1.2). */
#define REG_SET(addr) REG((addr) + 0x2000u)
#define REG_CLR(addr) REG((addr) + 0x3000u)

#define CLOCKS_BASE 0x40008000u
#define CLK_REF_CTRL (CLOCKS_BASE + 0x30u)
#define CLK_REF_DIV (CLOCKS_BASE + 0x34u)
#define CLK_REF_SELECTED (CLOCKS_BASE + 0x38u)
#define CLK_SYS_CTRL (CLOCKS_BASE + 0x3Cu)
#define CLK_SYS_DIV (CLOCKS_BASE + 0x40u)
#define CLK_SYS_SELECTED (CLOCKS_BASE + 0x44u)
#define CLK_PERI_CTRL (CLOCKS_BASE + 0x48u)
#define CLK_SYS_RESUS_CTRL (CLOCKS_BASE + 0x78u)
#define CLK_PERI_CTRL_ENABLE (1u << 11)

#define RESETS_BASE 0x4000C000u
#define RESETS_RESET (RESETS_BASE + 0x0u)
#define RESETS_DONE (RESETS_BASE + 0x8u)
#define RESET_IO_BANK0 (1u << 5)
#define RESET_PADS_BANK0 (1u << 8)
#define RESET_PLL_SYS (1u << 12)
#define RESET_UART0 (1u << 22)

#define IO_BANK0_BASE 0x40014000u
#define GPIO_CTRL(n) (IO_BANK0_BASE + 8u * (n) + 4u)
#define GPIO_FUNC_UART 2u

#define PADS_BANK0_BASE 0x4001C000u
#define PADS_GPIO(n) (PADS_BANK0_BASE + 4u + 4u * (n))
#define PADS_PDE (1u << 2)
#define PADS_PUE (1u << 3)
#define PADS_IE (1u << 6)
#define PADS_OD (1u << 7)

#define XOSC_BASE 0x40024000u
#define XOSC_CTRL (XOSC_BASE + 0x00u)
#define XOSC_STATUS (XOSC_BASE + 0x04u)
#define XOSC_STARTUP (XOSC_BASE + 0x0Cu)
#define XOSC_CTRL_FREQ_1_15MHZ 0xAA0u
#define XOSC_CTRL_ENABLE (0xFABu << 12)
#define XOSC_STATUS_STABLE (1u << 31)

#define PLL_SYS_BASE 0x40028000u
#define PLL_CS (PLL_SYS_BASE + 0x0u)
#define PLL_PWR (PLL_SYS_BASE + 0x4u)
#define PLL_FBDIV_INT (PLL_SYS_BASE + 0x8u)
#define PLL_PRIM (PLL_SYS_BASE + 0xCu)
#define PLL_CS_LOCK (1u << 31)
#define PLL_PWR_PD (1u << 0)
#define PLL_PWR_POSTDIVPD (1u << 3)
#define PLL_PWR_VCOPD (1u << 5)

#define UART0_BASE 0x40034000u
#define UART_DR (UART0_BASE + 0x00u)
#define UART_FR (UART0_BASE + 0x18u)
#define UART_IBRD (UART0_BASE + 0x24u)
#define UART_FBRD (UART0_BASE + 0x28u)
#define UART_LCR_H (UART0_BASE + 0x2Cu)
#define UART_CR (UART0_BASE + 0x30u)
#define UART_FR_RXFE (1u << 4)
#define UART_CR_UARTEN (1u << 0)
#define UART_FR_TXFF (1u << 5)
#define UART_FR_BUSY (1u << 3)
#define UART_IFLS (UART0_BASE + 0x34u)
#define UART_IMSC (UART0_BASE + 0x38u)
#define UART_IMSC_RXIM (1u << 4)
#define UART_IMSC_RTIM (1u << 6) /* receive timeout: a few bytes left below the FIFO level */
#define UART_IFLS_RX_QUARTER (1u << 3) /* RX interrupt at 8 of 32 bytes */
#define UART0_IRQ 20u

#define PSM_BASE 0x40010000u
#define PSM_WDSEL (PSM_BASE + 0x8u)
#define PSM_WDSEL_ALL_BUT_OSCS 0x1FFFCu /* everything but ROSC and XOSC, as the Pico SDK resets */

#define WATCHDOG_BASE 0x40058000u
#define WATCHDOG_CTRL (WATCHDOG_BASE + 0x00u)
#define WATCHDOG_LOAD (WATCHDOG_BASE + 0x04u)
#define WATCHDOG_REASON (WATCHDOG_BASE + 0x08u)
#define WATCHDOG_SCRATCH(n) (WATCHDOG_BASE + 0x0Cu + 4u * (n)) /* 0-3 free; the bootrom uses 4-7 */
#define WATCHDOG_TICK (WATCHDOG_BASE + 0x2Cu)
#define WATCHDOG_CTRL_PAUSE_ALL (7u << 24) /* JTAG, DBG0, DBG1: a debugger halt does not reset */
#define WATCHDOG_CTRL_ENABLE (1u << 30)
#define WATCHDOG_CTRL_TRIGGER (1u << 31)
#define WATCHDOG_REASON_TIMER (1u << 0)
#define WATCHDOG_REASON_FORCE (1u << 1)
#define WATCHDOG_TICK_ENABLE (1u << 9)

#define CHIP_RESET (0x40064000u + 0x08u)
#define CHIP_RESET_HAD_POR (1u << 8)
#define CHIP_RESET_HAD_RUN (1u << 16)

#define PPB_BASE 0xE0000000u
#define SYST_CSR (PPB_BASE + 0xE010u)
#define SYST_RVR (PPB_BASE + 0xE014u)
#define SYST_CVR (PPB_BASE + 0xE018u)
#define NVIC_ISER (PPB_BASE + 0xE100u)

#endif
