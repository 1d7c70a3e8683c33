// Runs an RP2040 firmware (.uf2) in rp2040js with UART0 bridged to stdin/stdout.
// Usage: node run.mjs firmware.uf2 [--max-cycles N]
// stdin bytes go to UART0 RX (never faster than its 32-byte FIFO drains); UART0 TX goes to stdout.
// On exit (stdin closed, or --max-cycles reached) prints "emulator: cycles=N" on stderr.
import { bootUf2, fail } from './boot.mjs';

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
const maxIdx = args.indexOf('--max-cycles');
const maxCycles = maxIdx >= 0 ? Number(args[maxIdx + 1]) : Infinity;
if (!file) fail('usage: node run.mjs firmware.uf2 [--max-cycles N]');

const mcu = bootUf2(file);

const rx = [];
let rxHead = 0;
let stdinClosed = false;
const uart = mcu.uart[0];
let txBuf = [];
uart.onByte = (b) => txBuf.push(b);
process.stdin.on('data', (chunk) => { for (const b of chunk) rx.push(b); });
process.stdin.on('end', () => { stdinClosed = true; });

function feedUart() {
  while (rxHead < rx.length && !uart.rxFIFO.full) uart.feedByte(rx[rxHead++]);
  if (rxHead > 65536 && rxHead === rx.length) { rx.length = 0; rxHead = 0; }
}

function finish() {
  if (txBuf.length) process.stdout.write(Buffer.from(txBuf));
  process.stderr.write(`emulator: cycles=${mcu.core.cycles}\n`);
  process.stdout.end(() => process.exit(0));
}

const { core, clock } = mcu;
function run() {
  const until = Date.now() + 20; // run 20 ms of host time, then let node read stdin / write stdout
  while (Date.now() < until) {
    for (let i = 0; i < 4096; i++) {
      if ((i & 31) === 0) feedUart();
      if (core.waiting) {
        const nanos = clock.nanosToNextAlarm;
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
