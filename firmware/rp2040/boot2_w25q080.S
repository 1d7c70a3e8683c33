/* Second-stage boot (boot2) for a Winbond W25Q080 / W25Q16JV (the Raspberry Pi Pico's flash): XIP through
 * Fast Read Quad I/O (EBh) in continuous-read mode at SCK = clk_sys / 2. The bootrom copies these 256 bytes to
 * SRAM at 0x20041f00, checks their CRC-32 and runs them. Position independent.
 *
 * From the RP2040 datasheet (4.10 SSI, 2.19 pads) and the W25Q080 datasheet:
 * 1. QSPI pads: SCLK at 8 mA with fast slew; SD0-3 without Schmitt triggers (less input delay at 62.5 MHz).
 * 2. SSI: clock divider 2, RX sample delay 1 SCK (the data launched on one SCK edge is sampled at the next).
 * 3. Status register 2 bit 1 (QE) turns /WP and /HOLD into IO2/IO3. Read SR2 (35h); if it is not 02h,
 *    write enable (06h), write status (01h) with SR1 = 00h, SR2 = 02h, and poll SR1 (05h) until BUSY clears.
 * 4. One dummy EBh read with mode bits A0h (M5:4 = 10b) leaves the flash in continuous-read mode: from then on
 *    it expects no command byte, only 24 address bits and the mode bits on four lines, 4 dummy clocks, data.
 * 5. XIP: no instruction, address + A0h mode bits in quad (8 nibbles), 4 wait cycles, 32-bit frames. */
    .syntax unified
    .cpu cortex-m0plus
    .thumb

    .equ PADS_QSPI_BASE, 0x40020000
    .equ PADS_SCLK, 0x04
    .equ PADS_SD0, 0x08
    .equ PADS_SD1, 0x0c
    .equ PADS_SD2, 0x10
    .equ PADS_SD3, 0x14
    .equ PAD_SLEWFAST, 1 << 0
    .equ PAD_SCHMITT, 1 << 1
    .equ PAD_DRIVE_8MA, 2 << 4

    .equ XIP_SSI_BASE, 0x18000000
    .equ SSI_CTRLR0, 0x00
    .equ SSI_CTRLR1, 0x04
    .equ SSI_SSIENR, 0x08
    .equ SSI_BAUDR, 0x14
    .equ SSI_SR, 0x28
    .equ SSI_DR0, 0x60
    .equ SSI_RX_SAMPLE_DLY, 0xf0
    .equ SSI_SPI_CTRLR0, 0xf4
    .equ SR_BUSY, 1 << 0
    .equ SR_TFE, 1 << 2

    .equ CLKDIV, 2                                    /* SCK = 125 MHz / 2, within the W25Q080's 104 MHz */
    .equ WAIT_CYCLES, 4                               /* EBh: 4 dummy clocks after the mode bits */
    .equ MODE_CONTINUOUS, 0xa0
    .equ ADDR_L, 8                                    /* 24 address bits + 8 mode bits, in nibbles */
    /* CTRLR0: standard SPI, 8-bit frames, transmit and receive (status register commands) */
    .equ CTRLR0_SPI, (0 << 21) | (7 << 16) | (0 << 8)
    /* CTRLR0: quad SPI frames, 32-bit data frames, EEPROM read mode (send command/address, receive) */
    .equ CTRLR0_XIP, (2 << 21) | (31 << 16) | (3 << 8)
    /* SPI_CTRLR0 for the dummy read: 8-bit EBh on one line, then address + mode in quad (TRANS_TYPE 1C2A) */
    .equ SPI_CTRLR0_ENTER, (ADDR_L << 2) | (WAIT_CYCLES << 11) | (2 << 8) | 1
    /* SPI_CTRLR0 for XIP: no instruction (INST_L 0); XIP_CMD goes out as the mode bits after the address (2C2A) */
    .equ SPI_CTRLR0_XIP, (MODE_CONTINUOUS << 24) | (ADDR_L << 2) | (WAIT_CYCLES << 11) | (0 << 8) | 2

    .equ CMD_WRITE_ENABLE, 0x06
    .equ CMD_WRITE_STATUS, 0x01
    .equ CMD_READ_STATUS1, 0x05
    .equ CMD_READ_STATUS2, 0x35
    .equ CMD_QUAD_READ, 0xeb
    .equ SR2_QE, 0x02

    .equ VTOR, 0xe000ed08
    .equ APP_VECTORS, 0x10000100

    .section .text.boot2, "ax"
    .global _boot2_entry
    .thumb_func
_boot2_entry:
    push {lr}
    ldr r3, =PADS_QSPI_BASE
    movs r0, #(PAD_DRIVE_8MA | PAD_SLEWFAST)
    str r0, [r3, #PADS_SCLK]
    ldr r0, [r3, #PADS_SD0]
    movs r1, #PAD_SCHMITT
    bics r0, r1
    str r0, [r3, #PADS_SD0]
    str r0, [r3, #PADS_SD1]
    str r0, [r3, #PADS_SD2]
    str r0, [r3, #PADS_SD3]

    ldr r3, =XIP_SSI_BASE
    movs r1, #0
    str r1, [r3, #SSI_SSIENR]            /* disable to reconfigure */
    movs r1, #CLKDIV
    str r1, [r3, #SSI_BAUDR]
    movs r1, #1
    movs r2, #SSI_RX_SAMPLE_DLY
    str r1, [r3, r2]

    ldr r1, =CTRLR0_SPI
    str r1, [r3, #SSI_CTRLR0]
    movs r1, #1
    str r1, [r3, #SSI_SSIENR]
    movs r0, #CMD_READ_STATUS2
    bl read_status
    cmp r0, #SR2_QE
    beq quad_enabled
    movs r1, #CMD_WRITE_ENABLE
    str r1, [r3, #SSI_DR0]
    bl wait_idle
    ldr r1, [r3, #SSI_DR0]               /* discard what came back during the command */
    movs r1, #CMD_WRITE_STATUS
    str r1, [r3, #SSI_DR0]
    movs r1, #0
    str r1, [r3, #SSI_DR0]               /* SR1 */
    movs r1, #SR2_QE
    str r1, [r3, #SSI_DR0]               /* SR2 */
    bl wait_idle
    ldr r1, [r3, #SSI_DR0]
    ldr r1, [r3, #SSI_DR0]
    ldr r1, [r3, #SSI_DR0]
1:  movs r0, #CMD_READ_STATUS1           /* the status write takes up to 15 ms */
    bl read_status
    movs r1, #1
    tst r0, r1
    bne 1b
quad_enabled:

    movs r1, #0
    str r1, [r3, #SSI_SSIENR]
    ldr r1, =CTRLR0_XIP
    str r1, [r3, #SSI_CTRLR0]
    movs r1, #0
    str r1, [r3, #SSI_CTRLR1]            /* NDF = 0: one 32-bit frame */
    ldr r1, =SPI_CTRLR0_ENTER
    ldr r0, =(XIP_SSI_BASE + SSI_SPI_CTRLR0)
    str r1, [r0]
    movs r1, #1
    str r1, [r3, #SSI_SSIENR]
    movs r1, #CMD_QUAD_READ
    str r1, [r3, #SSI_DR0]
    movs r1, #MODE_CONTINUOUS            /* address 0, mode bits A0h: starts the transfer */
    str r1, [r3, #SSI_DR0]
    bl wait_idle

    movs r1, #0
    str r1, [r3, #SSI_SSIENR]            /* disabling also empties the FIFOs */
    ldr r1, =SPI_CTRLR0_XIP
    ldr r0, =(XIP_SSI_BASE + SSI_SPI_CTRLR0)
    str r1, [r0]
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

/* Waits until the SSI has sent everything (TX FIFO empty) and released chip select (not busy). r3 = SSI. */
wait_idle:
    push {r0, r1, lr}
1:  ldr r1, [r3, #SSI_SR]
    movs r0, #SR_TFE
    tst r1, r0
    beq 1b
    movs r0, #SR_BUSY
    tst r1, r0
    bne 1b
    pop {r0, r1, pc}

/* r0 = a read-status command; returns the status byte in r0. The command and one dummy byte go out; the
 * byte received during the command is discarded, the one during the dummy byte is the status. */
read_status:
    push {r1, lr}
    str r0, [r3, #SSI_DR0]
    str r0, [r3, #SSI_DR0]
    bl wait_idle
    ldr r0, [r3, #SSI_DR0]
    ldr r0, [r3, #SSI_DR0]
    pop {r1, pc}
    .ltorg
