/* Descriptors: one CDC-ACM function (communication interface 0 + data interface 1) behind an
 * interface association, the layout Windows' usbser.sys, macOS and Linux' cdc_acm all bind to. */
#include "usb_desc.h"

#define LO(x) (uint8_t)((x) & 0xFFu)
#define HI(x) (uint8_t)((x) >> 8)

const uint8_t usb_device_descriptor[18] = {
    18, 0x01,                   /* bLength, DEVICE */
    0x00, 0x02,                 /* bcdUSB 2.00 (full speed only) */
    0xEF, 0x02, 0x01,           /* class Miscellaneous / Common / Interface Association */
    USB_EP0_SIZE,               /* bMaxPacketSize0 */
    LO(USB_VID), HI(USB_VID),
    LO(USB_PID), HI(USB_PID),
    LO(USB_BCD_DEVICE), HI(USB_BCD_DEVICE),
    USB_STRING_MANUFACTURER, USB_STRING_PRODUCT,
    0,                          /* iSerialNumber: the RP2040 has no unique ID of its own */
    1,                          /* bNumConfigurations */
};

const uint8_t usb_config_descriptor[75] = {
    9, 0x02, 75, 0,             /* CONFIGURATION, wTotalLength */
    2, 1, 0,                    /* 2 interfaces, bConfigurationValue 1, no string */
    0x80, 50,                   /* bus powered, 100 mA */

    8, 0x0B, 0, 2, 0x02, 0x02, 0x00, 0, /* INTERFACE ASSOCIATION: interfaces 0-1, CDC ACM */

    9, 0x04, 0, 0, 1,           /* INTERFACE 0, alt 0, 1 endpoint */
    0x02, 0x02, 0x00, 0,        /* CDC, Abstract Control Model, no AT commands, no string */
    5, 0x24, 0x00, 0x20, 0x01,  /* CDC Header, bcdCDC 1.20 */
    5, 0x24, 0x01, 0x00, 1,     /* Call Management: none, data interface 1 */
    4, 0x24, 0x02, 0x02,        /* ACM: line coding + control line state requests */
    5, 0x24, 0x06, 0, 1,        /* Union: control interface 0, subordinate interface 1 */
    7, 0x05, USB_EP_NOTIFY, 0x03, USB_NOTIFY_SIZE, 0, 16, /* interrupt IN, every 16 ms */

    9, 0x04, 1, 0, 2,           /* INTERFACE 1, alt 0, 2 endpoints */
    0x0A, 0x00, 0x00, 0,        /* CDC Data */
    7, 0x05, USB_EP_DATA_OUT, 0x02, USB_BULK_SIZE, 0, 0, /* bulk OUT */
    7, 0x05, USB_EP_DATA_IN, 0x02, USB_BULK_SIZE, 0, 0,  /* bulk IN */
};

const char *const usb_strings[USB_STRING_COUNT] = {
    0,
    [USB_STRING_MANUFACTURER] = "pizza-edge",
    [USB_STRING_PRODUCT] = "pizza-edge RP2040 classifier",
};
