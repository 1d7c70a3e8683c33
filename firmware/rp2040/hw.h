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
int uart_getc(void); /* -1 when no byte is waiting */

/* 64-bit count of clk_sys cycles since hw_init (SysTick plus a wrap counter). */
uint64_t cycles_now(void);

/* Bytes of the stack reserved by the linker script, and the most ever used (paint check). */
uint32_t stack_reserved(void);
uint32_t stack_used(void);

#endif
