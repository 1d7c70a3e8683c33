/* Board bring-up and the few drivers the app needs: clocks, UART0, SysTick cycle counter. */
#ifndef HW_H
#define HW_H

#include <stddef.h>
#include <stdint.h>

#define HW_SYS_CLOCK_HZ 125000000u
#define HW_UART_BAUD 115200u

void hw_init(void);

void uart_putc(uint8_t c);
void uart_write(const uint8_t *data, size_t n);
void uart_puts(const char *s);
int uart_getc(void); /* next byte of the interrupt-fed RX ring; -1 when none is waiting */
void UART0_IRQHandler(void);

/* Why the chip last reset, read at hw_init (INFO and the boot banner report it). */
enum hw_reset_reason {
    HW_RESET_UNKNOWN = 0,
    HW_RESET_POWER_ON = 1,
    HW_RESET_RUN_PIN = 2,
    HW_RESET_WATCHDOG = 3,  /* the watchdog expired: the firmware hung */
    HW_RESET_SOFTWARE = 4,  /* a forced watchdog reset */
    HW_RESET_HARDFAULT = 5  /* hw_fault_reboot after a HardFault; hw_fault_pc() says where */
};
uint32_t hw_reset_reason(void);
const char *hw_reset_reason_name(uint32_t reason);
uint32_t hw_fault_pc(void);

/* The watchdog (armed by hw_init, 2 s) resets the chip unless fed. */
void watchdog_feed(void);
/* Records pc for the next boot, says HARDFAULT on the UART if it is up, and resets through the watchdog.
 * Runs from SRAM without touching flash or the faulting stack. */
__attribute__((noreturn)) void hw_fault_reboot(uint32_t pc);

/* 64-bit count of clk_sys cycles since hw_init (SysTick plus a wrap counter). */
uint64_t cycles_now(void);

/* Bytes of the stack reserved by the linker script, and the most ever used (paint check). */
uint32_t stack_reserved(void);
uint32_t stack_used(void);

#endif
