/* Vector table and reset handler: copy .data, zero .bss, paint the stack, bring up the board. */
#include <stdint.h>

#include "hw.h"
#include "usb.h"
#include "rp2040_regs.h"

#define STACK_PAINT 0xC0FFEE11u

extern uint32_t __StackTop[], __StackLimit[];
extern uint32_t __data_start__[], __data_end__[], __data_load__[];
extern uint32_t __bss_start__[], __bss_end__[];

int main(void);
void Reset_Handler(void);
void SysTick_Handler(void);

static void Default_Handler(void)
{
    for (;;) {
        __asm volatile("wfi");
    }
}

/* The fault may come from a stack overflow or a wild SP, so the handler moves to a fresh stack at the top of
 * SRAM before anything else, and reads the stacked PC only from a frame that lies inside SRAM. Both run from
 * SRAM. */
__attribute__((section(".time_critical.fault"), used, noreturn)) void hardfault_report(const uint32_t *frame)
{
    const uintptr_t at = (uintptr_t)frame;
    const int in_sram = at % 4u == 0 && at >= 0x20000000u && at + 32u <= (uintptr_t)__StackTop;
    hw_fault_reboot(in_sram ? frame[6] : 0u); /* frame: r0-r3, r12, lr, pc, xpsr */
}

__attribute__((section(".time_critical.fault"), naked)) static void HardFault_Handler(void)
{
    __asm volatile(
        "mov r0, sp\n\t"
        "ldr r1, =__StackTop\n\t"
        "mov sp, r1\n\t"
        "ldr r1, =hardfault_report\n\t"
        "bx r1\n\t"
        ".ltorg");
}

/* Cortex-M0+ vector table, placed at 0x10000100 (boot2 sets VTOR and jumps here). */
__attribute__((section(".vectors"), used)) static void *const vector_table[16 + 32] = {
    [0] = __StackTop,
    [1] = (void *)Reset_Handler,
    [2] = (void *)Default_Handler, /* NMI */
    [3] = (void *)HardFault_Handler,
    [11] = (void *)Default_Handler, /* SVCall */
    [14] = (void *)Default_Handler, /* PendSV */
    [15] = (void *)SysTick_Handler,
    [16 + USBCTRL_IRQ] = (void *)USBCTRL_IRQHandler,
    [16 + UART0_IRQ] = (void *)UART0_IRQHandler,
};

void Reset_Handler(void)
{
    for (uint32_t *src = __data_load__, *dst = __data_start__; dst < __data_end__;) *dst++ = *src++;
    for (uint32_t *dst = __bss_start__; dst < __bss_end__;) *dst++ = 0;
    /* Paint the unused stack so stack_used() can find the high-water mark. */
    uint32_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *p = __StackLimit; p < sp - 16; p++) *p = STACK_PAINT;

    hw_init();
    main();
    Default_Handler();
}

uint32_t stack_reserved(void)
{
    return (uint32_t)((uintptr_t)__StackTop - (uintptr_t)__StackLimit);
}

uint32_t stack_used(void)
{
    const uint32_t *p = __StackLimit;
    while (p < __StackTop && *p == STACK_PAINT) p++;
    return (uint32_t)((uintptr_t)__StackTop - (uintptr_t)p);
}
