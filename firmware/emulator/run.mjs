// Runs an RP2040 firmware (.uf2) in rp2040js with UART0 bridged to stdin/stdout.
// Usage: node run.mjs firmware.uf2 [--max-cycles N] [--baud B] [--on-ready hardfault|hang]
// stdin bytes go to UART0 RX; UART0 TX goes to stdout. RX is paced like a wire, 8N1 in emulated time, at the
// baud rate the firmware set in UART0's divisors (--baud B overrides it); a byte that finds the 32-byte RX FIFO
// full is lost, as on silicon. (Feeding whenever the FIFO has room would outrun any real line: the firmware's
// interrupt empties the FIFO into a RAM ring faster than its parser reads the ring.)
// --on-ready hardfault raises a HardFault once the firmware has printed READY (rp2040js raises none itself);
// --on-ready hang then leaves the core spinning with interrupts masked, as a firmware bug would: they exercise
// the fault handler and the watchdog.
// On exit (stdin closed, or --max-cycles reached) prints "emulator: cycles=N" and "emulator: rx_lost=N" on stderr.
import { bootUf2, fail } from './boot.mjs';

const args = process.argv.slice(2);
const file = args.find((a, i) => !a.startsWith('--') && !['--max-cycles', '--baud', '--on-ready'].includes(args[i - 1]));
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : undefined; };
const maxCycles = opt('--max-cycles') ?? Infinity;
const baud = opt('--baud');
let onReady = args.includes('--on-ready') ? args[args.indexOf('--on-ready') + 1] : null;
if (!file || (baud !== undefined && !(baud > 0)) || ![null, 'hardfault', 'hang'].includes(onReady)) {
  fail('usage: node run.mjs firmware.uf2 [--max-cycles N] [--baud B] [--on-ready hardfault|hang]');
}

const mcu = bootUf2(file);
const { core, clock } = mcu;
const EXC_HARDFAULT = 3;
const SPIN = 0x20041ffc;  // a `b .` for --on-ready hang, in the stack's top word (a hung core pushes nothing)

const rx = [];
let rxHead = 0;
let rxLost = 0;
let stdinClosed = false;
let nextRxNanos = 0;
const uart = mcu.uart[0];
let txBuf = [];
let txTail = '';
let readyNow = false;
uart.onByte = (b) => {
  txBuf.push(b);
  if (onReady) {
    txTail = (txTail + String.fromCharCode(b)).slice(-7);
    if (txTail === 'READY\r\n') readyNow = true;
  }
};
process.stdin.on('data', (chunk) => {
  if (rxHead === rx.length) nextRxNanos = Math.max(nextRxNanos, clock.nanos);  // the line was idle
  for (const b of chunk) rx.push(b);
});
process.stdin.on('end', () => { stdinClosed = true; });

function feedUart() {
  const rate = baud ?? (uart.intDivisor ? uart.baudRate : 0);
  if (!rate) return;  // the firmware has not set UART0 up yet: the line waits
  const byteNanos = (10 * 1e9) / rate;  // start + 8 data + stop bits
  for (; rxHead < rx.length && clock.nanos >= nextRxNanos; rxHead++, nextRxNanos += byteNanos) {
    if (uart.rxFIFO.full) rxLost++;
    else uart.feedByte(rx[rxHead]);
  }
  if (rxHead > 65536 && rxHead === rx.length) { rx.length = 0; rxHead = 0; }
}

function finish() {
  if (txBuf.length) process.stdout.write(Buffer.from(txBuf));
  process.stderr.write(`emulator: cycles=${core.cycles}\nemulator: rx_lost=${rxLost}\n`);
  process.stdout.end(() => process.exit(0));
}

function run() {
  const until = Date.now() + 20; // run 20 ms of host time, then let node read stdin / write stdout
  while (Date.now() < until) {
    for (let i = 0; i < 4096; i++) {
      if ((i & 31) === 0) feedUart();
      if (readyNow) {
        readyNow = false;
        if (onReady === 'hardfault') {
          core.exceptionEntry(EXC_HARDFAULT);
        } else {
          mcu.writeUint16(SPIN, 0xe7fe);
          core.PM = true;
          core.PC = SPIN;
        }
        onReady = null;
      }
      if (core.waiting) {
        let nanos = clock.nanosToNextAlarm;
        if (rxHead < rx.length) nanos = Math.min(nanos, nextRxNanos - clock.nanos);
        if (nanos <= 0) break;
        clock.tick(nanos);
      } else {
        clock.tick((core.executeInstruction() * 1e9) / mcu.clkSys);
      }
    }
    if (core.cycles >= maxCycles) break;
  }
  if (txBuf.length) {
    process.stdout.write(Buffer.from(txBuf));
    txBuf = [];
  }
  if (core.cycles >= maxCycles || (stdinClosed && rxHead >= rx.length)) return finish();
  setImmediate(run);
}
run();
