/* USB descriptors of the CDC-ACM serial port (USB 2.0 chapter 9, CDC 1.2 / PSTN 1.2).
 * Pure data, so the host tests can parse exactly what the device sends. */
#ifndef USB_DESC_H
#define USB_DESC_H

#include <stdint.h>

/* Raspberry Pi's VID with the PID it assigns to a Pico exposing a CDC-ACM serial port (pico-sdk
 * stdio_usb): we own no VID, and this pair is what OSes and udev rules already treat as "a Pico's
 * serial port". The product string tells our firmware apart (serial_client --port auto checks both). */
#define USB_VID 0x2E8Au
#define USB_PID 0x000Au
#define USB_BCD_DEVICE 0x0100u

#define USB_EP0_SIZE 64u
#define USB_EP_NOTIFY 0x81u   /* interrupt IN: CDC notifications (declared, never sent) */
#define USB_EP_DATA_OUT 0x02u /* bulk OUT: host -> protocol parser */
#define USB_EP_DATA_IN 0x82u  /* bulk IN: protocol replies -> host */
#define USB_BULK_SIZE 64u
#define USB_NOTIFY_SIZE 8u

#define USB_STRING_MANUFACTURER 1u
#define USB_STRING_PRODUCT 2u
#define USB_STRING_COUNT 3u /* 0 is the language list */
#define USB_STRING_MAX_CHARS 31u

extern const uint8_t usb_device_descriptor[18];
extern const uint8_t usb_config_descriptor[75];
/* ASCII strings, sent as UTF-16LE; index 0 is unused (the language list is built in usb.c). */
extern const char *const usb_strings[USB_STRING_COUNT];

#endif
