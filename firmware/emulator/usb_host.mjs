// Runs an RP2040 firmware (.uf2) in rp2040js behind our own USB host, which enumerates it the way Linux'
// hub driver and cdc_acm do, then bridges the CDC-ACM data interface to stdin/stdout.
// Usage: node usb_host.mjs firmware.uf2 [--uart-fds R,W] [--malformed] [--max-cycles N]
//
// rp2040js emulates the device-side controller and offers host-side hooks (sendSetupPacket,
// onEndpointWrite/onEndpointRead, endpointReadDone, resetDevice); its own USBCDC helper skips the device and
// string descriptors and line coding. This host is stricter:
//   pull-up seen -> 100 ms debounce -> bus reset -> GET_DESCRIPTOR(device, 64) at address 0 -> bus reset ->
//   SET_ADDRESS -> GET_DESCRIPTOR(device, 18) -> configuration (9 bytes, then wTotalLength) -> string 0 and
//   every string the device descriptor names -> SET_CONFIGURATION -> cdc_acm probe: SET_LINE_CODING 9600 8N1,
//   GET_LINE_CODING -> open: SET_LINE_CODING 115200 8N1, SET_CONTROL_LINE_STATE DTR|RTS.
// Every descriptor is checked (lengths, the CDC union, an interrupt IN notification endpoint, a class 0x0A
// data interface with bulk IN and OUT); each control transfer must finish within cdc_acm's 5 s (emulated).
// rp2040js puts no STALL on the wire, so the host sees one where a real host would: the device arms
// EP_STALL_ARM and sets STALL in the EP0 buffer control for the stage the host would run next.
// --malformed sends unknown and wrong-length control requests after SET_CONFIGURATION; each must STALL and
// leave EP0 working (GET_DESCRIPTOR(device) still answers, the line coding is unchanged).
// Bulk OUT is paced like a full-speed bus: at most 19 64-byte bulk packets per 1 ms frame (USB 2.0 table 5-10).
// stdin -> bulk OUT, bulk IN -> stdout; --uart-fds R,W bridges UART0 too (R feeds RX one byte per 10 us of
// emulated time, TX goes to W).
// stderr: one "usb: {json}" line per event (step, enumerated, malformed, exchange); an exchange is one
// request frame out and its reply frame in, timed in emulated ns. At exit: "emulator: cycles=N".
import { createReadStream, createWriteStream } from 'node:fs';
import { bootUf2, fail } from './boot.mjs';

const args = process.argv.slice(2);
const valued = ['--uart-fds', '--max-cycles'];
const file = args.find((a, i) => !a.startsWith('--') && !valued.includes(args[i - 1]));
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const maxCycles = Number(opt('--max-cycles') ?? Infinity);
const malformed = args.includes('--malformed');
if (!file) fail('usage: node usb_host.mjs firmware.uf2 [--uart-fds R,W] [--malformed] [--max-cycles N]');

const mcu = bootUf2(file);
const { core, clock } = mcu;
const usb = mcu.usbCtrl;

const SIE_CTRL = 0x4c, EP_STALL_ARM = 0x68, USB_MUXING = 0x74;
const PULLUP_EN = 1 << 16, BUF_STALL = 1 << 11;
const EP0_IN_BUF_CTRL = 0x80, EP0_OUT_BUF_CTRL = 0x84;
const CONTROL_TIMEOUT_NS = 5e9;       // cdc_acm / usb_control_msg timeout
const DEBOUNCE_NS = 100e6;            // hub: attach debounce
const RESET_RECOVERY_NS = 10e6;       // USB 2.0 TRSTRCY
const GAP_NS = 100e3;                 // between two requests of the host stack
const BULK_PACKET_US = 1000 / 19;     // full-speed bulk: 19 x 64 B per frame
const ADDRESS = 5;

const log = (obj) => process.stderr.write(`usb: ${JSON.stringify(obj)}\n`);
function die(msg) {
  log({ error: msg, at_ns: clock.nanos });
  process.stderr.write(`emulator: cycles=${core.cycles}\n`);
  process.exit(3);
}
const after = (ns, fn) => clock.createAlarm(fn).schedule(ns);
// Host steps continue after an await, i.e. in a microtask: the run loop stops at once when one is due, so
// the next request goes out at the emulated time the previous one finished (deterministic).
let hostWake = false;
const wake = (fn) => (...a) => { hostWake = true; fn(...a); };
const hex = (bytes) => Buffer.from(bytes).toString('hex');

// ---- observing the device side: pull-up, STALL arming, the RP2040-E5 mux dance ----
let pullup = false, stallArm = 0;
const muxWrites = [];
const writeReg = usb.writeUint32.bind(usb);
usb.writeUint32 = (offset, value) => {
  writeReg(offset, value);
  if (offset === SIE_CTRL && value & PULLUP_EN && !pullup) {
    pullup = true;
    log({ step: 'device connected (D+ pull-up)', at_ns: clock.nanos });
    after(DEBOUNCE_NS, () => busReset(enumerate));
  }
  if (offset === EP_STALL_ARM) stallArm = value;
  if (offset === USB_MUXING) muxWrites.push(value);
};
const dpramUpdated = usb.DPRAMUpdated.bind(usb);
usb.DPRAMUpdated = (offset, value) => {
  dpramUpdated(offset, value);
  if (ctl && value & BUF_STALL) {
    const inStall = offset === EP0_IN_BUF_CTRL && stallArm & 1;
    const outStall = offset === EP0_OUT_BUF_CTRL && stallArm & 2;
    if ((ctl.nextIn && inStall) || (!ctl.nextIn && outStall)) finishControl('stall');
  }
};

// ---- bus reset ----
let onReset = null;
function busReset(then) {
  onReset = then;
  usb.resetDevice(); // SE0 for 10 ms, then the device sees BUS_RESET
}
usb.onUSBEnabled = () => {}; // a host waits for the pull-up, not for the controller
usb.onResetReceived = () => {
  const then = onReset;
  onReset = null;
  if (then) after(RESET_RECOVERY_NS, wake(then));
};

// ---- control transfers on EP0 ----
let ctl = null;
function control(name, setup, { data = null, expect = 'ok' } = {}) {
  return new Promise((resolve) => {
    const [type, request, value, index, length] = setup;
    const packet = new Uint8Array([type, request, value & 0xff, value >> 8, index & 0xff, index >> 8,
      length & 0xff, length >> 8]);
    const timer = clock.createAlarm(() => finishControl('timeout'));
    ctl = { name, length, dataIn: type & 0x80, data, expect, resolve, timer, got: [], statusAsked: false,
      dataDone: false, nextIn: !!(type & 0x80) || !data, start: clock.nanos };
    timer.schedule(CONTROL_TIMEOUT_NS);
    usb.sendSetupPacket(packet);
  });
}
function finishControl(result) {
  const c = ctl;
  if (!c) return;
  ctl = null;
  c.timer.cancel();
  const data = Uint8Array.from(c.got);
  log({ step: c.name, result, bytes: c.dataIn ? hex(data) : undefined, us: (clock.nanos - c.start) / 1e3 });
  if (result !== c.expect) die(`${c.name}: expected ${c.expect}, got ${result}`);
  after(GAP_NS, wake(() => c.resolve(data)));
}
function ep0In(buf) {
  const c = ctl;
  if (!c) return;
  if (!c.dataIn || c.dataDone) { // zero-length status packet of an OUT or no-data request
    if (buf.length) die(`${c.name}: ${buf.length}-byte status packet`);
    finishControl('ok');
    return;
  }
  c.got.push(...buf);
  if (c.got.length > c.length) die(`${c.name}: device sent ${c.got.length} bytes for wLength ${c.length}`);
  if (buf.length < 64 || c.got.length === c.length) {
    c.dataDone = true;
    c.nextIn = false;
    if (c.statusAsked) ackStatus();
  }
}
function ackStatus() {
  usb.endpointReadDone(0, new Uint8Array(0));
  finishControl('ok');
}
function ep0Out() {
  const c = ctl;
  if (!c) return;
  if (c.dataIn) { // the device is ready for the status stage, maybe before the last data reached us
    c.statusAsked = true;
    if (c.dataDone) ackStatus();
  } else if (c.data) {
    usb.endpointReadDone(0, c.data);
    c.nextIn = true;
  }
}

// ---- descriptors ----
function parseConfig(d) {
  const out = { interfaces: [], endpoints: [], cdc: {}, iad: null };
  if (d.length < 9 || d[1] !== 2 || d[0] !== 9) die('configuration descriptor header');
  const total = d[2] | (d[3] << 8);
  if (total !== d.length) die(`wTotalLength ${total} != ${d.length} bytes received`);
  let iface = null;
  for (let i = 0; i < d.length;) {
    const len = d[i], type = d[i + 1];
    if (len < 2 || i + len > d.length) die(`descriptor at offset ${i} overruns the configuration`);
    if (type === 4) {
      if (len !== 9) die('interface descriptor length');
      iface = { number: d[i + 2], alt: d[i + 3], endpoints: d[i + 4], class: d[i + 5], subclass: d[i + 6],
        protocol: d[i + 7], found: [] };
      out.interfaces.push(iface);
    } else if (type === 5) {
      if (len !== 7 || !iface) die('endpoint descriptor');
      const ep = { address: d[i + 2], type: d[i + 3] & 3, size: d[i + 4] | (d[i + 5] << 8), interval: d[i + 6],
        interface: iface.number };
      iface.found.push(ep);
      out.endpoints.push(ep);
    } else if (type === 0x0b) {
      out.iad = { first: d[i + 2], count: d[i + 3], class: d[i + 4], subclass: d[i + 5] };
    } else if (type === 0x24) {
      const sub = d[i + 2];
      if (sub === 0x00) out.cdc.header = d[i + 3] | (d[i + 4] << 8);
      if (sub === 0x01) out.cdc.callManagement = { caps: d[i + 3], dataInterface: d[i + 4] };
      if (sub === 0x02) out.cdc.acm = d[i + 3];
      if (sub === 0x06) out.cdc.union = { control: d[i + 3], subordinate: Array.from(d.subarray(i + 4, i + len)) };
    }
    i += len;
  }
  for (const f of out.interfaces) {
    if (f.found.length !== f.endpoints) die(`interface ${f.number} declares ${f.endpoints} endpoints, has ${f.found.length}`);
  }
  // What cdc_acm's probe needs: the union names a control interface (class 2, subclass 2) with an interrupt IN
  // endpoint, and a data interface (class 0x0A) with one bulk IN and one bulk OUT endpoint.
  const u = out.cdc.union;
  if (!u) die('no CDC union descriptor');
  const control = out.interfaces.find((f) => f.number === u.control);
  const data = out.interfaces.find((f) => f.number === u.subordinate[0]);
  if (!control || control.class !== 2 || control.subclass !== 2) die('union: control interface is not CDC ACM');
  if (!data || data.class !== 0x0a) die('union: data interface is not class 0x0A');
  const notify = control.found.find((e) => e.type === 3 && e.address & 0x80);
  const bulkIn = data.found.find((e) => e.type === 2 && e.address & 0x80);
  const bulkOut = data.found.find((e) => e.type === 2 && !(e.address & 0x80));
  if (!notify || !bulkIn || !bulkOut) die('CDC endpoints: need interrupt IN, bulk IN and bulk OUT');
  if (bulkIn.size !== 64 || bulkOut.size !== 64) die('full-speed bulk endpoints must be 64 bytes');
  if (out.iad && (out.iad.first !== u.control || out.iad.count !== 2)) die('interface association does not cover the CDC function');
  Object.assign(out, { notify: notify.address, bulkIn: bulkIn.address, bulkOut: bulkOut.address });
  return out;
}
function parseString(d, name) {
  if (d.length < 2 || d[0] !== d.length || d[1] !== 3 || d.length % 2) die(`string ${name}: malformed descriptor`);
  return Buffer.from(d.subarray(2)).toString('utf16le');
}
const lineCoding = (baud) => new Uint8Array([baud & 0xff, (baud >> 8) & 0xff, (baud >> 16) & 0xff, baud >>> 24, 0, 0, 8]);

// ---- enumeration, cdc_acm probe and open ----
let opened = false, dataOut = 0, dataIn = 0;
const GET = 0x80, DESC = 6;
async function enumerate() {
  const first = await control('GET_DESCRIPTOR device (64) at address 0', [GET, DESC, 0x0100, 0, 64]);
  if (first.length !== 18 || first[0] !== 18 || first[1] !== 1) die('device descriptor');
  if (first[7] !== 64) die(`bMaxPacketSize0 ${first[7]}`);
  await new Promise((r) => busReset(r));
  await control(`SET_ADDRESS ${ADDRESS}`, [0x00, 5, ADDRESS, 0, 0]);
  const dev = await control('GET_DESCRIPTOR device (18)', [GET, DESC, 0x0100, 0, 18]);
  if (hex(dev) !== hex(first)) die('device descriptor changed between reads');
  const head = await control('GET_DESCRIPTOR configuration (9)', [GET, DESC, 0x0200, 0, 9]);
  const total = head[2] | (head[3] << 8);
  const config = parseConfig(await control(`GET_DESCRIPTOR configuration (${total})`, [GET, DESC, 0x0200, 0, total]));
  const langs = await control('GET_DESCRIPTOR string 0 (languages)', [GET, DESC, 0x0300, 0, 255]);
  if (langs.length < 4 || langs[1] !== 3) die('language list');
  const lang = langs[2] | (langs[3] << 8);
  const strings = {};
  for (const [name, idx] of [['manufacturer', dev[14]], ['product', dev[15]], ['serial', dev[16]]]) {
    if (idx) strings[name] = parseString(await control(`GET_DESCRIPTOR string ${idx} (${name})`, [GET, DESC, 0x0300 | idx, lang, 255]), name);
  }
  await control('SET_CONFIGURATION 1', [0x00, 9, 1, 0, 0]);
  await control('SET_LINE_CODING 9600 8N1 (cdc_acm probe)', [0x21, 0x20, 0, 0, 7], { data: lineCoding(9600) });
  const coding = await control('GET_LINE_CODING', [0xa1, 0x21, 0, 0, 7]);
  if (hex(coding) !== hex(lineCoding(9600))) die(`GET_LINE_CODING returned ${hex(coding)}`);
  const e5 = muxWrites.slice();
  log({
    enumerated: true, at_ns: clock.nanos, vid: dev[8] | (dev[9] << 8), pid: dev[10] | (dev[11] << 8),
    class: [dev[4], dev[5], dev[6]], address: usb.readUint32(0) & 0x7f, strings, language: lang,
    config: { total, interfaces: config.interfaces.map(({ found, ...f }) => f), cdc: config.cdc, iad: config.iad,
      notify: config.notify, bulk_in: config.bulkIn, bulk_out: config.bulkOut },
    e5_muxing: e5,
  });
  dataOut = config.bulkOut & 0xf;
  dataIn = config.bulkIn & 0xf;
  if (malformed) await malformedRequests(dev);
  await control('SET_LINE_CODING 115200 8N1 (open)', [0x21, 0x20, 0, 0, 7], { data: lineCoding(115200) });
  await control('SET_CONTROL_LINE_STATE DTR|RTS (open)', [0x21, 0x22, 3, 0, 0]);
  opened = true;
  log({ step: 'port open', at_ns: clock.nanos });
  pumpOut();
}

async function malformedRequests(dev) {
  const cases = [
    ['unknown standard request 0x55', [0x80, 0x55, 0, 0, 8]],
    ['unknown class request 0x7F', [0xa1, 0x7f, 0, 0, 4]],
    ['vendor request', [0x40, 0x01, 0, 0, 0]],
    ['SET_LINE_CODING with wLength 3', [0x21, 0x20, 0, 0, 3], new Uint8Array([1, 2, 3])],
    ['SET_LINE_CODING with a 3-byte data stage', [0x21, 0x20, 0, 0, 7], new Uint8Array([1, 2, 3])],
    ['SET_ADDRESS with a data stage', [0x00, 5, 9, 0, 2], new Uint8Array([0, 0])],
    ['SET_CONFIGURATION 2 (no such configuration)', [0x00, 9, 2, 0, 0]],
    ['GET_DESCRIPTOR string 7 (no such string)', [GET, DESC, 0x0307, 0x0409, 255]],
    ['GET_DESCRIPTOR device qualifier', [GET, DESC, 0x0600, 0, 10]],
    ['GET_LINE_CODING on interface 1', [0xa1, 0x21, 0, 1, 7]],
  ];
  const results = [];
  for (const [name, setup, data] of cases) {
    await control(name, setup, { data, expect: 'stall' });
    const again = await control(`GET_DESCRIPTOR device after "${name}"`, [GET, DESC, 0x0100, 0, 18]);
    if (hex(again) !== hex(dev)) die(`EP0 broken after ${name}`);
    results.push({ name, result: 'stall', ep0_ok: true });
  }
  const coding = await control('GET_LINE_CODING after the malformed requests', [0xa1, 0x21, 0, 0, 7]);
  log({ malformed: results, line_coding_unchanged: hex(coding) === hex(lineCoding(9600)) });
}

// ---- bulk data: stdin -> OUT (paced like a full-speed bus), IN -> stdout ----
const outQueue = [];
let outHead = 0, stdinClosed = false, txBuf = [];
const outArmed = new Array(16).fill(0); // bytes the device will take, per OUT endpoint
let exchange = null, reply = [];
function pumpOut() {
  if (!opened || !outArmed[dataOut] || outHead >= outQueue.length) return;
  const n = Math.min(outArmed[dataOut], 64, outQueue.length - outHead);
  const chunk = Uint8Array.from(outQueue.slice(outHead, outHead + n));
  outHead += n;
  outArmed[dataOut] = 0;
  if (!exchange) exchange = { start_ns: clock.nanos, out: 0 };
  exchange.out += n;
  usb.endpointReadDone(dataOut, chunk, BULK_PACKET_US);
  if (outHead > 65536 && outHead === outQueue.length) { outQueue.length = 0; outHead = 0; }
}
// Reply frames ('P' 'Z' type u32-length payload crc) close an exchange; bytes before a magic are skipped.
function replyBytes(buf) {
  reply.push(...buf);
  for (;;) {
    const start = reply.findIndex((b, i) => b === 0x50 && reply[i + 1] === 0x5a);
    if (start < 0) { reply = reply.slice(-1); return; }
    if (start) reply = reply.slice(start);
    if (reply.length < 7) return;
    const len = reply[3] | (reply[4] << 8) | (reply[5] << 16) | (reply[6] << 24);
    if (reply.length < 11 + len) return;
    log({ exchange: true, type: reply[2], out_bytes: exchange ? exchange.out : 0, in_bytes: 11 + len,
      start_ns: exchange ? exchange.start_ns : clock.nanos, end_ns: clock.nanos });
    exchange = null;
    reply = reply.slice(11 + len);
  }
}
usb.onEndpointWrite = (ep, buf) => {
  if (ep === 0) ep0In(buf);
  else if (ep === dataIn && opened) {
    txBuf.push(...buf);
    replyBytes(buf);
  }
};
usb.onEndpointRead = (ep, size) => {
  if (ep === 0) ep0Out(size);
  else {
    outArmed[ep] = size;
    pumpOut();
  }
};
process.stdin.on('data', (chunk) => { for (const b of chunk) outQueue.push(b); pumpOut(); });
process.stdin.on('end', () => { stdinClosed = true; });

// ---- UART0, optional ----
const uart = mcu.uart[0];
const uartRx = [];
let uartRxHead = 0, uartClosed = true, uartOut = null;
const fds = opt('--uart-fds');
if (fds) {
  const [r, w] = fds.split(',').map(Number);
  uartClosed = false;
  uartOut = createWriteStream(null, { fd: w });
  const input = createReadStream(null, { fd: r });
  input.on('data', (chunk) => { for (const b of chunk) uartRx.push(b); });
  input.on('end', () => { uartClosed = true; });
}
let uartTx = [];
uart.onByte = (b) => { if (uartOut) uartTx.push(b); };
// The firmware drains the RX FIFO into a 4 KB ring from its interrupt, so a host that fed bytes as fast as the
// FIFO empties would overrun the ring; one byte per 10 us (faster than a 115200 baud wire) never does.
const UART_BYTE_NS = 10e3;
let uartNextNs = 0;
function feedUart() {
  while (uartRxHead < uartRx.length && clock.nanos >= uartNextNs && !uart.rxFIFO.full) {
    uart.feedByte(uartRx[uartRxHead++]);
    uartNextNs = Math.max(uartNextNs, clock.nanos - UART_BYTE_NS) + UART_BYTE_NS;
  }
}

function flush() {
  if (txBuf.length) { process.stdout.write(Buffer.from(txBuf)); txBuf = []; }
  if (uartTx.length) { uartOut.write(Buffer.from(uartTx)); uartTx = []; }
}
function finish() {
  flush();
  process.stderr.write(`emulator: cycles=${core.cycles}\n`);
  const done = () => process.stdout.end(() => process.exit(0));
  if (uartOut) uartOut.end(done);
  else done();
}
function run() {
  const until = Date.now() + 20;
  while (Date.now() < until) {
    for (let i = 0; i < 4096 && !hostWake; i++) {
      if ((i & 31) === 0) feedUart();
      if (core.waiting) {
        const nanos = clock.nanosToNextAlarm;
        if (nanos <= 0) break;
        clock.tick(nanos);
      } else {
        clock.tick((core.executeInstruction() * 1e9) / mcu.clkSys);
      }
    }
    if (core.cycles >= maxCycles || hostWake) break;
  }
  hostWake = false;
  flush();
  const drained = outHead >= outQueue.length && uartRxHead >= uartRx.length;
  if (core.cycles >= maxCycles || (stdinClosed && uartClosed && drained)) return finish();
  setImmediate(run);
}
run();
