/* One protocol parser, two byte sources: UART0 and the USB serial port, both live. */
#ifndef LINK_H
#define LINK_H

#include <stddef.h>
#include <stdint.h>

/* The next byte for the parser. While `parser_busy` (mid-frame, or skipped bytes not yet reported) only
 * the link that fed the parser is read, so frames from the two links never interleave; when the parser
 * is idle either link may start the next frame. -1 when no byte is waiting. */
int link_getc(int parser_busy);
/* Replies go to the link that fed the parser last. */
void link_write(const uint8_t *data, size_t n);
void link_putc(uint8_t c);
void link_flush(void); /* end of a reply */

#endif
