/* USB CDC-ACM serial port on the RP2040's own USB controller (no pico-sdk, no TinyUSB). */
#ifndef USB_H
#define USB_H

#include <stddef.h>
#include <stdint.h>

#define USBCTRL_IRQ 5u

/* PLL_USB (48 MHz), clk_usb, the controller, then the D+ pull-up: the host starts enumerating.
 * Needs hw_init first (XOSC, SysTick). Everything after runs in USBCTRL_IRQHandler. */
void usb_init(void);
void USBCTRL_IRQHandler(void);

/* Next byte the host sent on the bulk OUT endpoint, -1 when none is waiting. */
int usb_getc(void);
/* Queues bytes into 64-byte bulk IN packets; dropped while no host has the port open (DTR low). */
void usb_write(const uint8_t *data, size_t n);
/* Sends the partial packet (or a zero-length one after a full packet) so the host's read completes. */
void usb_flush(void);

#endif
