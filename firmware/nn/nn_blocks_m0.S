/* Cortex-M0+ (ARMv6-M) core of CONV_2D and 1x1/FULLY_CONNECTED: all output channels of one pixel, 4 at a
 * time, accumulation and requantization with every accumulator in a register. Hand-written because GCC
 * spills the accumulators and the requantization state on this 8-low-register core (measured 2x slower).
 * The host builds the C reference in nn_conv.c / nn_pointwise.c instead; both implement nn_out exactly.
 *
 * void nn_blocks(const nn_blocks_t *b, const int8_t *x, int8_t *y)   (struct in nn_dot.h)
 * b->pixels output pixels in one call (a run of interior windows, or a pointwise layer's whole tensor): the
 * call's set-up and the caller's per-pixel C loop are paid once per run, not per pixel.
 * Weights and records come in one stream, block after block (nn.h): packed tap pairs (MAC2x4), or in depthwise
 * mode (b->dw) 4 words a tap, channel c reading input channel c (the 4 inputs of a block in one word).
 * Placed in .time_critical (SRAM): no XIP flash wait states on the hot loop. */
    .syntax unified
    .cpu cortex-m0plus
    .thumb

    .equ B_W, 0          /* nn_blocks_t */
    .equ B_OFF, 4
    .equ B_N, 8
    .equ B_OC, 12
    .equ B_MIN, 16
    .equ B_MAX, 20
    .equ B_DW, 24
    .equ B_PIX, 28
    .equ B_XSTEP, 32
    .equ B_ROW, 36

    .equ F_X, 0          /* stack frame */
    .equ F_W0, 4         /* the weight stream's start */
    .equ F_WEND, 8       /* where a block's end goes to .Lpixel: the end of the full blocks, or of the tail block */
    .equ F_TAIL, 12      /* the start of the tail block (oc % 4 channels), 0 if none */
    .equ F_TEND, 16      /* the end of the tail block */
    .equ F_MIN, 20       /* act_min's byte, 4 times */
    .equ F_MAX, 24
    .equ F_Y, 28
    .equ F_XADJ, 32      /* x of the next pixel = x after the last block + this */
    .equ F_PIX, 36       /* pixels left, this one included */
    .equ F_OFF, 40
    .equ F_N, 44
    .equ F_ENTRY, 48     /* the tap loop for this call's layout, chosen once (Thumb address) */
    .equ F_C, 52         /* oc */
    .equ F_LR, 56        /* lr and r12 across .Lrqslow */
    .equ F_R12, 60
    .equ F_TAILY, 64     /* y of the tail block's channels while it writes into F_SCR */
    .equ F_SCR, 68       /* the tail block's 4 outputs */
    .equ F_XB, 72        /* .Lwx: the start of the pixel's inputs in nn_xbuf, 4 n bytes before its end */
    .equ F_SIZE, 76
    .equ XBUF_MAX, 128   /* .Lwx: at most this many inputs (nn_xbuf's 512 bytes) */
    .equ XMIN_N, 16      /* and at least this many, with at least XMIN_OC output channels: the pixel's conversion */
    .equ XMIN_OC, 16     /* and FIXK cost less than the cycles they save below that (measured) */

/* One step of the 4-channel dot product: \x = input, r2 -> 4 int32 weights, accumulators r8..r11. */
.macro MAC4 x
    ldm r2!, {r4, r5, r6, r7}
    muls r4, \x, r4
    muls r5, \x, r5
    muls r6, \x, r6
    muls r7, \x, r7
    add r8, r4
    add r9, r5
    add r10, r6
    add r11, r7
.endm

/* Two taps of the 4-channel dot product from packed weights (nn.h): \x0, \x1 = the inputs, r2 -> 4 words
 * w0 + 2^16 w1 at each tap, then w2 + 2^16 w3. One MULS gives two channels' products, the two taps' sum
 * s = lo + 2^16 hi has |lo|, |hi| < 2^15 (lower._pairs_fit), so lo = SXTH(s) and hi = (s - lo) >> 16 exactly.
 * 21 cycles for 8 MACs (MAC4 twice: 26). \op mov instead of add: a block's first taps set the accumulators. */
.macro MAC2x4 x0, x1, op=add
    ldm r2!, {r4, r5, r6, r7}
    muls r4, \x0, r4
    muls r5, \x1, r5
    muls r6, \x0, r6
    muls r7, \x1, r7
    adds r4, r4, r5
    adds r6, r6, r7
    sxth r5, r4
    subs r4, r4, r5
    asrs r4, r4, #16
    \op r8, r5
    \op r9, r4
    sxth r7, r6
    subs r6, r6, r7
    asrs r6, r6, #16
    \op r10, r7
    \op r11, r6
.endm

/* MAC2x4 for the loops that keep r12 = 2^15 (.Lrow9s, .Lwx): s + 2^15 = (lo + 2^15) + 2^16 hi with lo + 2^15 in
 * [0, 2^16), so hi = (s + 2^15) >> 16 exactly; r8 and r10 take s whole, and FIXK takes 2^16 hi back out at the
 * block end. 19 cycles for 8 MACs. */
.macro MAC2x4R x0, x1, op=add
    ldm r2!, {r4, r5, r6, r7}
    muls r4, \x0, r4
    muls r5, \x1, r5
    muls r6, \x0, r6
    muls r7, \x1, r7
    adds r4, r4, r5
    adds r6, r6, r7
    \op r8, r4
    add r4, r12
    asrs r5, r4, #16
    \op r9, r5
    \op r10, r6
    add r6, r12
    asrs r7, r6, #16
    \op r11, r7
.endm

/* After MAC2x4R: r8 and r10 less 2^16 times r9 and r11, the channels' sums (mod 2^32, exact: they fit). */
.macro FIXK
    mov r4, r9
    lsls r4, r4, #16
    negs r4, r4
    add r8, r4
    mov r4, r11
    lsls r4, r4, #16
    negs r4, r4
    add r10, r4
.endm

/* Taps j and j + 1 of a window row at r0, j even (r0 even): one LDRH, its bytes sign-extended into r1 and r3. */
.macro PAIRH j, op=add, mac=MAC2x4
    ldrh r3, [r0, #\j]
    sxtb r1, r3
    lsls r3, r3, #16
    asrs r3, r3, #24
    \mac r1, r3, \op
.endm

/* The next 4 contiguous taps, two pairs: one word of inputs at r0 (advanced), kept in r12 across the first. */
.macro WORD4 op=add
    ldm r0!, {r3}
    mov r12, r3
    sxtb r1, r3
    lsls r3, r3, #16
    asrs r3, r3, #24
    MAC2x4 r1, r3, \op
    mov r3, r12
    lsls r1, r3, #8
    asrs r1, r1, #24
    asrs r3, r3, #24
    MAC2x4 r1, r3
.endm

/* WORD4 without r12 (.Lws keeps y there): the word is loaded twice, the same cycles as keeping it in r12. */
.macro WORD4R op=add
    ldr r3, [r0, #0]
    sxtb r1, r3
    lsls r3, r3, #16
    asrs r3, r3, #24
    MAC2x4 r1, r3, \op
    ldm r0!, {r3}
    lsls r1, r3, #8
    asrs r1, r1, #24
    asrs r3, r3, #24
    MAC2x4 r1, r3
.endm

/* The next 2 taps from the pixel's sign-extended inputs (.Lwx): r0 -> 2 words, advanced. 22 cycles for 8 MACs. */
.macro XPAIR op=add
    ldm r0!, {r1, r3}
    MAC2x4R r1, r3, \op
.endm

/* One depthwise tap through the offset table: r1 -> next byte offset, r12 = window base. */
.macro DWTAP
    ldm r1!, {r3}
    add r3, r12
    ldr r3, [r3, #0]
    DWMAC
.endm

/* One depthwise tap of an interior 3x3 window: r1 = the tap's address, then moved on by \step (r12 = C along a
 * row, lr = to the next row's first tap). */
.macro DWSTEP step, op=add
    ldr r3, [r1, #0]
    add r1, \step
    DWMAC \op
.endm

/* r3 = the 4 channels' inputs of one tap, r2 -> 4 int32 weights; byte j of r3 feeds accumulator r8 + j (\op mov:
 * sets it). */
.macro DWMAC op=add, t=r0
    ldm r2!, {r4, r5, r6, r7}
    sxtb \t, r3
    muls r4, \t, r4
    \op r8, r4
    lsls \t, r3, #16
    asrs \t, \t, #24
    muls r5, \t, r5
    \op r9, r5
    lsls \t, r3, #8
    asrs \t, \t, #24
    muls r6, \t, r6
    \op r10, r6
    asrs \t, r3, #24
    muls r7, \t, r7
    \op r11, r7
.endm

/* The accumulators from zero, for the loops whose first step adds. */
.macro ZERO4
    movs r4, #0
    mov r8, r4
    mov r9, r4
    mov r10, r4
    mov r11, r4
.endm

/* Requantizes accumulator \acc into y[j] with the record at r2 (nn_rqc_t, 32 bytes), advancing r2; r5 = act_min.
 * acc < lo (most outputs of a ReLU layer) falls through, 8 cycles (6 with \pre: y[j] already holds act_min); the
 * rest branch to RQOUT \id's code, 24 in the fast part (22 where RQTAIL follows it; the sums of their
 * instructions' costs in rp2040js). */
.macro RQ acc, j, id, pre=0, label=1
    ldm r2!, {r1, r6}         /* lo, hi */
    cmp \acc, r1
    bge .Lrqin\id             /* signed acc >= lo */
.if \pre == 0
    strb r5, [r7, #\j]
.endif
    adds r2, #24
.if \label
.Lrqret\id:
.endif
.endm

/* The branches out of RQ \id, placed after the code that follows it (conditional branches reach 256 bytes): a short
 * record's fast part, lo <= acc < hi: a = acc*mh + k, y[j] = a >> 24 unless (a << 8) + cmax8 carries (the low
 * product's part might carry into the byte: then it is added, d*ml + klo >> 16); beyond it act_max (23 cycles in
 * all), else the three-multiply or long formula in .Lrqslow. */
.macro RQOUT acc, j, id, tail
.Lrqin\id:
    cmp \acc, r6
    bge .Lrqhi\id             /* acc >= hi (r1 = lo kept) */
    mov r3, \acc
    ldm r2!, {r0, r1, r4}     /* mh, k, cmax8 */
    muls r0, r3, r0
    adds r0, r0, r1           /* a */
    lsls r1, r0, #8
    adds r1, r1, r4
    bcs .Lrqc\id
.Lrqs\id:
    lsrs r0, r0, #24
    strb r0, [r7, #\j]
    adds r2, #12
.ifb \tail
    b .Lrqret\id
.else
    \tail                     /* a copy of what follows .Lrqret\id: no branch back */
.endif
.endm

/* RQOUT \id's rare paths, placed after the fast parts. */
.macro RQRARE acc, j, id
.Lrqc\id:                     /* r2 -> ml + 2^16 klo, r3 = acc */
    subs r2, #20
    ldr r4, [r2, #0]          /* lo */
    subs r3, r3, r4           /* d */
    ldr r1, [r2, #20]
    adds r2, #20
    uxth r4, r1               /* ml */
    muls r4, r3, r4
    lsrs r1, r1, #16          /* klo */
    adds r4, r4, r1           /* < 2^32 in the fast part */
    lsrs r4, r4, #16
    adds r0, r0, r4
    b .Lrqs\id
.Lrqhi\id:                    /* r1 = lo, r6 = hi, r2 -> w0 */
    mov r3, \acc
    subs r3, r3, r1           /* d */
    ldr r4, [r2, #16]         /* range */
    cmp r3, r4
    bhs 1f
    mov r4, lr                /* the loops keep their steps in lr and r12 */
    str r4, [sp, #F_LR]
    bl .Lrqslow
    ldr r4, [sp, #F_LR]
    mov lr, r4
    ldr r5, [sp, #F_MIN]
    b 2f
1:  ldr r0, [sp, #F_MAX]
2:  strb r0, [r7, #\j]
    adds r2, #24
    b .Lrqret\id
.endm

/* The block end of the specialised loops (.Lrow9s, .Lws, .Lwx, .Ldw3: no tail block, y word-aligned): act_min into
 * the 4 outputs with one store, then requantizes r8..r11 into y = r7 (RQ ids \p0..\p3; the outputs below lo keep
 * act_min); BLOCKOUT \p their out-of-line parts, each channel's fast part followed by a copy of the rest of the
 * block end down to \end (RQTAIL: no branch back); EPILOGUE a copy of the return. */
.macro BLOCKRQ p
    ldr r5, [sp, #F_MIN]
    str r5, [r7, #0]
    RQ r8, 0, \p\()0, 1
    RQ r9, 1, \p\()1, 1
    RQ r10, 2, \p\()2, 1
    RQ r11, 3, \p\()3, 1
.endm

/* What follows channel \from - 1's requantization in a block end of the specialised loops, copied after that
 * channel's fast part (RQOUT's tail) so that it does not branch back: the channels from \from on, then \end. Their
 * out-of-line parts are the shared RQOUTs. */
.macro RQTAIL p, from, end
.if \from <= 1
    RQ r9, 1, \p\()1, 1, 0
.endif
.if \from <= 2
    RQ r10, 2, \p\()2, 1, 0
.endif
    RQ r11, 3, \p\()3, 1, 0
    \end
.endm

.macro BLOCKOUT p, end
    RQOUT r8, 0, \p\()0, "RQTAIL \p, 1, \end"
    RQOUT r9, 1, \p\()1, "RQTAIL \p, 2, \end"
    RQOUT r10, 2, \p\()2, "RQTAIL \p, 3, \end"
    RQOUT r11, 3, \p\()3, \end
    RQRARE r8, 0, \p\()0
    RQRARE r9, 1, \p\()1
    RQRARE r10, 2, \p\()2
    RQRARE r11, 3, \p\()3
.endm

.macro EPILOGUE
    add sp, #F_SIZE
    pop {r4, r5, r6, r7}
    mov r8, r4
    mov r9, r5
    mov r10, r6
    mov r11, r7
    pop {r4, r5, r6, r7, pc}
.endm

/* The next pixel of a run for the specialised loops: r0 = pixels left less one (Z set: the call is done, go to
 * \done), else x moved on by x_step into r0 and F_X, r3 = x_step, r2 = the weight stream's start. */
.macro NEXTPIX done
    ldr r0, [sp, #F_PIX]
    subs r0, #1
    beq \done
    str r0, [sp, #F_PIX]
    ldr r0, [sp, #F_X]
    ldr r3, [sp, #F_XADJ]
    adds r0, r0, r3
    str r0, [sp, #F_X]
    ldr r2, [sp, #F_W0]
.endm

/* 3x3 window over 3 channels, unrolled: r0 = window base (even), lr = row stride (even). The 27 taps in pairs in the
 * weights' order (lower.WIN9_ORDER): row 0's bytes 0-7 by LDRH, its byte 8 with row 1's byte 8, row 1's bytes 0-7
 * and row 2's by LDRH, then row 2's byte 8 alone. \mac MAC2x4R: r12 = 2^15, FIXK at the block end. */
.macro ROW9 mac=MAC2x4
    PAIRH 0, mov, \mac
    PAIRH 2, add, \mac
    PAIRH 4, add, \mac
    PAIRH 6, add, \mac
    ldrb r1, [r0, #8]
    add r0, lr
    ldrb r3, [r0, #8]
    sxtb r1, r1
    sxtb r3, r3
    \mac r1, r3
    PAIRH 0, add, \mac
    PAIRH 2, add, \mac
    PAIRH 4, add, \mac
    PAIRH 6, add, \mac
    add r0, lr
    PAIRH 0, add, \mac
    PAIRH 2, add, \mac
    PAIRH 4, add, \mac
    PAIRH 6, add, \mac
    ldrb r3, [r0, #8]
    sxtb r3, r3
.ifc \mac,MAC2x4R
    FIXK                      /* before the last tap: MAC4 adds exact products to r9 and r11 */
.endif
    MAC4 r3
.endm

.macro DW3
    adds r3, r0, #4
    str r3, [sp, #F_X]        /* the next block: 4 channels on */
    mov r1, r0
    DWSTEP r12, mov
    DWSTEP r12
    DWSTEP lr
    DWSTEP r12
    DWSTEP r12
    DWSTEP lr
    DWSTEP r12
    DWSTEP r12
    ldr r3, [r1, #0]
    DWMAC
.endm

/* The block ends of the specialised loops: y moved on and kept in \y (r12 for .Lws; the frame for .Lrow9s, .Ldw3 and
 * .Ldw3c8/16/32; .Lwx keeps it in lr, ENDX), then the next block or the next pixel. */
.macro ENDR pix, loop, y=frame
    adds r7, #4
.ifc \y,frame
    str r7, [sp, #F_Y]
.else
    mov \y, r7
.endif
    ldr r0, [sp, #F_WEND]
    cmp r2, r0
    beq \pix
    ldr r0, [sp, #F_X]
    b \loop
.endm

.macro ENDS
    ENDR .Lpixs, .Lrow9s
.endm

.macro ENDW
    ENDR .Lpixw, .Lws, r12
.endm

.macro ENDX
    adds r7, #4
    mov lr, r7
    ldr r0, [sp, #F_WEND]
    cmp r2, r0
    beq .Lpixx
    b .Lwx
.endm

.macro ENDD
    ENDR .Lpixd, .Ldw3
.endm

/* 3x3 depthwise with C = \c channels, 8 to 32 (.Ldw3c\c): a row's taps at immediate offsets 0, C, 2C from r0, lr =
 * the row stride; r1 is DWMAC's scratch. 194 cycles a block with its set-up (.Ldw3 201). */
.macro DW3C c
    adds r3, r0, #4
    str r3, [sp, #F_X]        /* the next block: 4 channels on */
    DWROWC \c, mov
    add r0, lr
    DWROWC \c
    add r0, lr
    DWROWC \c
.endm

/* One row of DW3C: taps at r0, r0 + C, r0 + 2C (\op mov: the block's first tap sets the accumulators). */
.macro DWROWC c, op=add
    ldr r3, [r0, #0]
    DWMAC \op, r1
    ldr r3, [r0, #\c]
    DWMAC add, r1
    ldr r3, [r0, #2 * \c]
    DWMAC add, r1
.endm

/* BLOCKOUT's \end takes no arguments: one name per channel count. */
.macro ENDD8
    ENDR .Lpixd8, .Ldw3c8
.endm

.macro ENDD16
    ENDR .Lpixd16, .Ldw3c16
.endm

.macro ENDD32
    ENDR .Lpixd32, .Ldw3c32
.endm

/* .Ldw3c\c: the loop, its block end and its requantization's out-of-line parts */
.macro LOOPDW3C c
.Ldw3c\c:
    DW3C \c
    ldr r7, [sp, #F_Y]
    BLOCKRQ d\c
    ENDD\c
.Lpixd\c:
    NEXTPIX 1f
    b .Ldw3c\c
1:  EPILOGUE
    BLOCKOUT d\c, ENDD\c
.endm

    .section .time_critical.nn_blocks, "ax", %progbits
    .global nn_blocks
    .type nn_blocks, %function
    .thumb_func
nn_blocks:
    push {r4, r5, r6, r7, lr}
    mov r4, r8
    mov r5, r9
    mov r6, r10
    mov r7, r11
    push {r4, r5, r6, r7}
    sub sp, #F_SIZE
    str r1, [sp, #F_X]
    ldr r3, [r0, #B_W]
    str r3, [sp, #F_W0]
    ldr r4, [r0, #B_N]
    ldr r3, [r0, #B_DW]
    cmp r3, #0
    bne 37f
    adds r4, #1
    lsrs r4, r4, #1           /* packed weights: 16 bytes per pair of taps (and an odd last one) */
37: lsls r4, r4, #4
    adds r4, #128             /* a block's bytes: weights, 4 records */
    ldr r5, [r0, #B_OC]
    lsrs r6, r5, #2
    muls r6, r4, r6
    ldr r3, [r0, #B_W]
    adds r6, r3, r6           /* past the full blocks */
    str r6, [sp, #F_WEND]
    str r2, [sp, #F_Y]
    lsls r5, r5, #30
    beq 35f
    str r6, [sp, #F_TAIL]
    adds r7, r6, r4           /* past the tail block */
    str r7, [sp, #F_TEND]
    cmp r6, r3
    bne 36f
    str r7, [sp, #F_WEND]     /* no full blocks: every pixel's first block is the tail, into F_SCR */
    str r2, [sp, #F_TAILY]
    add r7, sp, #F_SCR
    str r7, [sp, #F_Y]
    b 36f
35: str r5, [sp, #F_TAIL]     /* no tail: 0 */
36:
    ldr r3, [r0, #B_MIN]
    uxtb r3, r3
    lsls r4, r3, #8
    orrs r3, r4
    lsls r4, r3, #16
    orrs r3, r4
    str r3, [sp, #F_MIN]      /* act_min in every byte: one store fills a block's 4 outputs */
    ldr r3, [r0, #B_MAX]
    str r3, [sp, #F_MAX]
    ldr r3, [r0, #B_PIX]
    str r3, [sp, #F_PIX]
    ldr r6, [r0, #B_OC]
    str r6, [sp, #F_C]
    mov r12, r6               /* 3x3 depthwise: the step between a row's taps */
    ldr r7, [r0, #B_DW]
    ldr r3, [r0, #B_XSTEP]
    cmp r7, #0
    beq 32f
    subs r3, r3, r6           /* depthwise blocks move x on by 4 bytes each, oc in all */
32: str r3, [sp, #F_XADJ]
    ldr r3, [r0, #B_OFF]
    str r3, [sp, #F_OFF]
    ldr r4, [r0, #B_N]
    str r4, [sp, #F_N]
    ldr r5, [r0, #B_ROW]
    mov lr, r5                /* RGB stem rows, 3x3 depthwise: the step to the next row (kept for the call) */
    cmp r5, #0
    beq 31f
    cmp r7, #0
    beq 39f
    ldr r6, =(.Ldw3g + 1)     /* 3x3 depthwise (oc % 4 == 0, nn_dwconv) */
    lsls r5, r2, #30
    bne 30f                   /* y not word-aligned: the generic block end */
    ldr r6, =(.Ldw3 + 1)
    ldr r5, [r0, #B_OC]       /* 8, 16 or 32 channels: .Ldw3c8/16/32, taps at immediate offsets, lr = the row stride */
    ldr r3, =(.Ldw3c8 + 1)
    cmp r5, #8
    beq 29f
    ldr r3, =(.Ldw3c16 + 1)
    cmp r5, #16
    beq 29f
    ldr r3, =(.Ldw3c32 + 1)
    cmp r5, #32
    bne 30f
29: mov r6, r3
    lsls r3, r5, #1
    add lr, r3
    b 30f
39: ldr r6, =(.Lrow9 + 1)
    ldr r5, [r0, #B_OC]
    orrs r5, r2
    lsls r5, r5, #30
    bne 30f                   /* a tail block or y not word-aligned: the generic loop */
    ldr r6, =(.Lrow9s + 1)
    b 38f
31: lsls r5, r4, #2
    adds r5, r5, r3           /* the offset table's end */
    cmp r7, #0
    beq 33f
    mov lr, r5                /* depthwise through the table: its end in lr for the call */
    ldr r6, =(.Ldw + 1)
    lsls r5, r4, #31          /* odd n: enter at the second tap */
    beq 30f
    ldr r6, =(.Ldwo + 1)
    b 30f
33: cmp r3, #0
    beq 34f
    subs r5, #4
    mov r12, r5               /* convolution through the table: its last entry in r12 for the call */
    ldr r6, =(.Ltab + 1)
    b 30f
34: ldr r6, =(.Lbytes + 1)
    mov r5, r4
    orrs r5, r1               /* n | x: word loads need both multiples of 4 (x_step = n keeps x aligned) */
    lsls r5, r5, #30
    bne 30f
    ldr r6, =(.Lwordso + 1)
    lsls r5, r4, #29          /* an odd word count: enter at the second word */
    bne 30f
    ldr r6, =(.Lwords + 1)
    ldr r5, [r0, #B_OC]
    orrs r5, r2
    lsls r5, r5, #30
    bne 30f                   /* a tail block or y not word-aligned: the generic loop */
    ldr r6, =(.Lws + 1)
    adds r5, r1, r4
    mov lr, r5                /* .Lws: x + n in lr for the pixel, y in r12 for the call */
    mov r12, r2
    cmp r4, #XBUF_MAX
    bhi 30f
    cmp r4, #XMIN_N
    blo 30f
    ldr r5, [r0, #B_OC]
    cmp r5, #XMIN_OC
    blo 30f
    ldr r6, =(.Lxconv + 1)    /* .Lwx: y in lr for the call, the inputs' words end at nn_xbuf's end */
    mov lr, r2
    ldr r5, =nn_xbuf + 4 * XBUF_MAX
    lsls r3, r4, #2
    subs r5, r5, r3
    str r5, [sp, #F_XB]
38: movs r5, #1               /* .Lrow9s, .Lwx: r12 = 2^15 for MAC2x4R */
    lsls r5, r5, #15
    mov r12, r5
30: str r6, [sp, #F_ENTRY]
    ldr r2, [r0, #B_W]
    b .Lblock
    .ltorg

    /* each block of 4 channels: the tap loop with r0 = x, r2 -> the block's first tap's weights (the loops that
     * count taps load n themselves); the accumulators start from the first taps' products or from zero (the
     * records hold the biases) */
.Lblock:
    ldr r0, [sp, #F_X]
    ldr r3, [sp, #F_ENTRY]
    bx r3

    /* contiguous taps, any alignment: r0 -> x, pairs of taps up to r12 = x + n - n % 2, then an odd last one.
     * 31 cycles per two taps (the sum of its instructions' costs). */
.Lbytes:
    ZERO4
    ldr r1, [sp, #F_N]
    lsrs r3, r1, #1
    lsls r3, r3, #1
    adds r3, r0, r3
    mov r12, r3
    cmp r0, r3
    beq 2f
1:  ldrb r1, [r0, #0]
    ldrb r3, [r0, #1]
    adds r0, #2
    sxtb r1, r1
    sxtb r3, r3
    MAC2x4 r1, r3
    cmp r0, r12
    bne 1b
2:  ldr r1, [sp, #F_N]
    lsrs r1, r1, #1           /* C: an odd last tap */
    bcs 3f
    b .Lrq
3:  ldrb r3, [r0, #0]
    sxtb r3, r3
    MAC4 r3
    b .Lrq

    /* window taps through the byte-offset table, in pairs while two are left, then an odd last one: r0 = window
     * base, r1 -> offsets, r12 = the table's last entry; lr holds r1 across the pair. 33 cycles per two taps
     * (measured, rp2040js). */
.Ltab:
    ZERO4
    ldr r1, [sp, #F_OFF]
    cmp r1, r12
    bhs 2f
1:  ldm r1!, {r4, r5}
    ldrsb r3, [r0, r4]
    mov lr, r1
    ldrsb r1, [r0, r5]
    MAC2x4 r3, r1
    mov r1, lr
    cmp r1, r12
    blo 1b
2:  beq 3f                    /* r1 at the last entry: an odd count */
    b .Lrq
3:  ldr r3, [r1, #0]
    ldrsb r3, [r0, r3]
    MAC4 r3
    b .Lrq

    /* depthwise: channel j of the block reads byte j of the word at each tap, x advances 4 channels a block:
     * r12 = window base, r1 -> offsets, lr = table end, r3 = the 4 inputs, r0 = one of them; two taps per
     * branch (.Ldwo: an odd count enters at the second). 51 cycles per two taps (measured, rp2040js). */
.Ldwo:
    ZERO4
    ldr r1, [sp, #F_OFF]
    mov r12, r0
    adds r0, #4
    str r0, [sp, #F_X]
    b 24f
.Ldw:
    ZERO4
    ldr r1, [sp, #F_OFF]
    mov r12, r0
    adds r0, #4
    str r0, [sp, #F_X]
23: DWTAP
24: DWTAP
    cmp r1, lr
    bne 23b
    b .Lrq

    /* 3x3 depthwise (.Ldw3) with y not word-aligned: the generic block end */
.Ldw3g:
    DW3
    b .Lrq

    /* contiguous taps, word-aligned x and n % 4 == 0 (pointwise layers; placed to fall into .Lrq): one LDM
     * brings 4 inputs, two pairs of taps; two words per branch, an odd word count enters at the second
     * (.Lwordso). r0 -> x, lr = x + n. 107 cycles per two words, 32 MACs (measured, rp2040js). */
.Lwordso:
    ldr r3, [sp, #F_N]
    adds r3, r0, r3
    mov lr, r3
    WORD4 mov
    cmp r0, lr
    bne 25f
    b .Lrq
.Lwords:
    ldr r3, [sp, #F_N]
    adds r3, r0, r3
    mov lr, r3
    WORD4 mov
    b 26f
25: WORD4
26: WORD4
    cmp r0, lr
    bne 25b

.Lrq:                         /* r2 -> the block's records */
    ldr r7, [sp, #F_Y]
    ldr r5, [sp, #F_MIN]
    RQ r8, 0, 0
    RQ r9, 1, 1
    RQ r10, 2, 2
    RQ r11, 3, 3
    adds r7, #4
    str r7, [sp, #F_Y]
    ldr r0, [sp, #F_WEND]
    cmp r2, r0
    beq .Lpixel
    ldr r0, [sp, #F_X]        /* .Lblock */
    ldr r3, [sp, #F_ENTRY]
    bx r3
    /* the end of a pixel's full blocks or of its tail block (.Ltailpix); then the next pixel of the run: x moves
     * on to x_step bytes past this pixel's, y is already oc bytes on; the weight stream restarts */
.Lpixel:
    ldr r0, [sp, #F_TAIL]
    cmp r0, #0
    bne .Ltailpix
.Lnextpix:
    ldr r0, [sp, #F_PIX]
    subs r0, #1
    beq .Ldone
    str r0, [sp, #F_PIX]
    ldr r0, [sp, #F_X]
    ldr r3, [sp, #F_XADJ]
    adds r0, r0, r3
    str r0, [sp, #F_X]
    ldr r2, [sp, #F_W0]
    ldr r3, [sp, #F_ENTRY]    /* .Lblock, x already in r0 */
    bx r3

    /* oc % 4 channels left: the tail block writes its 4 outputs into F_SCR, then oc % 4 of them go to y */
.Ltailpix:                    /* r0 = the tail block's start */
    cmp r2, r0
    bne 1f
    ldr r1, [sp, #F_TEND]     /* the full blocks are done: the tail block next */
    str r1, [sp, #F_WEND]
    str r7, [sp, #F_TAILY]
    add r1, sp, #F_SCR
    str r1, [sp, #F_Y]
    ldr r0, [sp, #F_X]
    ldr r3, [sp, #F_ENTRY]
    bx r3
1:  ldr r3, [sp, #F_TAILY]    /* the tail block is done: its channels to y */
    ldr r1, [sp, #F_C]
    lsls r1, r1, #30
    lsrs r1, r1, #30          /* oc % 4 */
    add r4, sp, #F_SCR
2:  ldrb r5, [r4, #0]
    strb r5, [r3, #0]
    adds r4, #1
    adds r3, #1
    subs r1, #1
    bne 2b
    ldr r1, [sp, #F_W0]
    cmp r0, r1
    beq 3f
    str r3, [sp, #F_Y]        /* y after the tail's channels */
    str r0, [sp, #F_WEND]
    b .Lnextpix
3:  str r3, [sp, #F_TAILY]    /* no full blocks: the next pixel's tail block writes into F_SCR again */
    add r1, sp, #F_SCR
    str r1, [sp, #F_Y]
    b .Lnextpix

.Ldone:
    add sp, #F_SIZE
    pop {r4, r5, r6, r7}
    mov r8, r4
    mov r9, r5
    mov r10, r6
    mov r11, r7
    pop {r4, r5, r6, r7, pc}

    RQOUT r8, 0, 0
    RQOUT r9, 1, 1
    RQOUT r10, 2, 2
    RQOUT r11, 3, 3
    RQRARE r8, 0, 0
    RQRARE r9, 1, 1
    RQRARE r10, 2, 2
    RQRARE r11, 3, 3

    /* A channel beyond its record's fast part, inside its range (nn_rqc_t): r3 = d, r1 = lo, r6 = hi, r2 -> w0.
     * Returns y in r0; r2, r7, r12 kept, r1 and r3-r6 not. Short records: the three-multiply formula. */
.Lrqslow:
    cmp r6, r1
    beq .Lrqlong
    ldr r1, [r2, #12]         /* ml + 2^16 klo */
    ldr r6, [r2, #0]          /* mh */
    ldr r5, [r2, #20]         /* khi */
    muls r6, r3, r6           /* d*mh */
    adds r5, r5, r6
    lsrs r4, r1, #16          /* klo */
    uxth r1, r1               /* ml */
    lsrs r6, r3, #16          /* dh */
    muls r6, r1, r6           /* dh*ml */
    adds r5, r5, r6
    uxth r3, r3               /* dl */
    muls r1, r3, r1           /* dl*ml */
    adds r1, r1, r4           /* < 2^32 */
    lsrs r1, r1, #16
    adds r1, r1, r5
    lsrs r0, r1, #24
    bx lr
    /* Long records: ((d*m + k) >> 32) >> sh from 16x16-bit partial products, k = k_hi:k_lo less 2^31 when
     * d < w4 (acc < 0). */
.Lrqlong:
    mov r1, r12
    str r1, [sp, #F_R12]
    ldr r1, [r2, #0]          /* m */
    ldr r4, [r2, #4]          /* k_lo */
    ldr r5, [r2, #8]          /* k_hi */
    ldr r0, [r2, #20]
    cmp r3, r0
    bhs 2f
    movs r0, #1
    lsls r0, r0, #31
    subs r4, r4, r0
    movs r0, #0               /* keeps the borrow (MOVS imm leaves C alone) */
    sbcs r5, r0
2:  uxth r0, r3               /* dl */
    lsrs r3, r3, #16          /* dh */
    uxth r6, r1               /* ml */
    lsrs r1, r1, #16          /* mh */
    mov r12, r6
    muls r6, r0, r6           /* dl*ml */
    muls r0, r1, r0           /* dl*mh */
    muls r1, r3, r1           /* dh*mh */
    adds r6, r6, r4
    adcs r1, r5               /* r1:r6 = dh*mh:dl*ml + k */
    mov r4, r12
    muls r4, r3, r4           /* dh*ml */
    adds r0, r0, r4           /* mid < 2^32: d < 2^31, m < 2^31 */
    lsls r4, r0, #16
    lsrs r0, r0, #16
    adds r6, r6, r4
    adcs r1, r0
    ldr r0, [r2, #12]         /* sh */
    lsrs r1, r0
    mov r0, r1
    ldr r1, [sp, #F_R12]
    mov r12, r1
    bx lr

    /* RGB stem rows with a tail block (oc % 4 != 0): the generic block end */
.Lrow9:
    ROW9
    b .Lrq

    /* RGB stem rows, oc % 4 == 0: MAC2x4R with r12 = 2^15 for the call (y in the frame), the block end and the next
     * pixel branch straight back */
.Lrow9s:
    ROW9 MAC2x4R
    ldr r7, [sp, #F_Y]
    BLOCKRQ s
    ENDS
.Lpixs:
    NEXTPIX 42f
    b .Lrow9s
42: EPILOGUE
    BLOCKOUT s, ENDS

    /* pointwise words, an even word count and oc % 4 == 0: lr = x + n set once a pixel (x_step = n), y in r12 for
     * the call, two words per branch, the block end and the next pixel branch straight back */
.Lws:
    WORD4R mov
    b 52f
51: WORD4R
52: WORD4R
    cmp r0, lr
    bne 51b
    mov r7, r12
    BLOCKRQ w
    ENDW
.Lpixw:
    NEXTPIX 44f
    adds r3, r0, r3
    mov lr, r3
    b .Lws
44: EPILOGUE
    BLOCKOUT w, ENDW

    /* pointwise words as .Lws, with XMIN_N <= n <= XBUF_MAX and oc >= XMIN_OC: each pixel's inputs sign-extended
     * once into nn_xbuf (.Lxconv, 31 cycles per 8 inputs), so every block reads two taps with one LDM instead of
     * extracting bytes again, and MAC2x4R: 91 cycles per 8 taps (32 MACs), .Lws 107, and FIXK's 8 a block.
     * y in lr, r12 = 2^15 for the call; the words end at a 512-byte boundary, which ends the loops. */
.Lxconv:                      /* r0 = the pixel's x */
    ldr r1, [sp, #F_XB]
1:
    .rept 2                   /* two words a pass: the word count is even */
    ldm r0!, {r3}
    sxtb r4, r3
    lsls r5, r3, #16
    asrs r5, r5, #24
    lsls r6, r3, #8
    asrs r6, r6, #24
    asrs r7, r3, #24
    stm r1!, {r4, r5, r6, r7}
    .endr
    lsls r3, r1, #23
    bne 1b
.Lwx:
    ldr r0, [sp, #F_XB]
    XPAIR mov
    XPAIR
    XPAIR
    XPAIR
1:  XPAIR
    XPAIR
    XPAIR
    XPAIR
    lsls r3, r0, #23
    bne 1b
    FIXK
    mov r7, lr
    BLOCKRQ x
    ENDX
.Lpixx:
    NEXTPIX 47f
    b .Lxconv
47: EPILOGUE
    BLOCKOUT x, ENDX

    /* interior 3x3 depthwise window, unrolled: r0 = this block's window base; the taps step r12 = C bytes
     * along a row and lr bytes to the next row. 22 cycles per tap, no offsets. nn_dwconv only takes oc % 4 == 0:
     * no tail block. */
.Ldw3:
    DW3
    ldr r7, [sp, #F_Y]
    BLOCKRQ d
    ENDD
.Lpixd:
    NEXTPIX 46f
    b .Ldw3
46: EPILOGUE
    BLOCKOUT d, ENDD
    LOOPDW3C 8
    LOOPDW3C 16
    LOOPDW3C 32
    .size nn_blocks, . - nn_blocks

    /* .Lwx's inputs as words: they end at a 512-byte boundary, so the loops test the pointer's low bits for the end */
    .section .bss.nn_xbuf, "aw", %nobits
    .balign 512
nn_xbuf:
    .space 4 * XBUF_MAX
    .size nn_xbuf, . - nn_xbuf
