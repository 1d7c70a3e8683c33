/* Arbitration between the two links that feed the one protocol parser (see link.h). */
#include "link.h"

#include "hw.h"
#include "usb.h"

enum { LINK_UART, LINK_USB };
static uint8_t owner = LINK_UART;

int link_getc(int parser_busy)
{
    if (parser_busy) return owner == LINK_USB ? usb_getc() : uart_getc();
    int c = usb_getc();
    if (c >= 0) {
        owner = LINK_USB;
        return c;
    }
    c = uart_getc();
    if (c >= 0) owner = LINK_UART;
    return c;
}

void link_write(const uint8_t *data, size_t n)
{
    if (owner == LINK_USB) usb_write(data, n);
    else uart_write(data, n);
}

void link_putc(uint8_t c)
{
    link_write(&c, 1);
}

void link_flush(void)
{
    if (owner == LINK_USB) usb_flush();
}
