/* Second-stage boot (boot2), generic: the bootrom copies these 256 bytes from flash to SRAM at 0x20041f00,
 * checks their CRC-32 and runs them. Configure the SSI for plain serial 03h XIP reads at clk_sys / 4 (works
 * with every SPI flash, the slowest mode: boards whose flash is not a W25Q080-compatible part), then vector
 * into the application's table at 0x10000100. Position independent. */
    .syntax unified
    .cpu cortex-m0plus
    .thumb

    .equ XIP_SSI_BASE, 0x18000000
    .equ SSI_CTRLR0, 0x00
    .equ SSI_CTRLR1, 0x04
    .equ SSI_SSIENR, 0x08
    .equ SSI_BAUDR, 0x14
    .equ SSI_SPI_CTRLR0, 0xf4
    .equ CLKDIV, 4                                    /* SCK = clk_sys / 4 */
    /* CTRLR0: standard SPI frames, 32-bit data frames, EEPROM read mode (send cmd+addr, receive) */
    .equ CTRLR0_XIP, (0 << 21) | (31 << 16) | (3 << 8)
    /* SPI_CTRLR0: XIP command 03h, 24 address bits (6 nibbles), 8-bit instruction, all serial */
    .equ SPI_CTRLR0_XIP, (0x03 << 24) | (2 << 8) | (6 << 2) | 0
    .equ VTOR, 0xe000ed08
    .equ APP_VECTORS, 0x10000100

    .section .text.boot2, "ax"
    .global _boot2_entry
    .thumb_func
_boot2_entry:
    push {lr}
    ldr r3, =XIP_SSI_BASE
    movs r1, #0
    str r1, [r3, #SSI_SSIENR]            /* disable to reconfigure */
    movs r1, #CLKDIV
    str r1, [r3, #SSI_BAUDR]
    ldr r1, =CTRLR0_XIP
    str r1, [r3, #SSI_CTRLR0]
    ldr r1, =SPI_CTRLR0_XIP
    ldr r0, =(XIP_SSI_BASE + SSI_SPI_CTRLR0)
    str r1, [r0]
    movs r1, #0
    str r1, [r3, #SSI_CTRLR1]            /* NDF = 0: one 32-bit frame per XIP access */
    movs r1, #1
    str r1, [r3, #SSI_SSIENR]
    /* Called by the bootrom with lr = 0: vector into flash. Otherwise return to the caller. */
    pop {r0}
    cmp r0, #0
    beq vector_into_flash
    bx r0
vector_into_flash:
    ldr r0, =APP_VECTORS
    ldr r1, =VTOR
    str r0, [r1]
    ldmia r0, {r0, r1}
    msr msp, r0
    bx r1
    .ltorg
