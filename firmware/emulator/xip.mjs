// Flash (XIP) traffic of one inference, replayed through a model of the RP2040's XIP cache.
// Usage: node xip.mjs firmware.elf firmware.uf2
// Boots the firmware in rp2040js and sends every read it makes in the XIP window (0x10000000-0x13ffffff:
// instruction fetches and data loads) through the cache model from reset on. Counts, per symbol, the reads and
// the misses during the last model_run call of the boot self-test (the second one with the default two images,
// so the cache is warm), and prints them as JSON with that call's emulated cycles.
//
// The cache model (xipcache.mjs) follows the RP2040 datasheet, with LRU replacement assumed. rp2040js itself
// charges no flash wait states, so the misses are what it leaves out; export/rp2040/xip.py turns them into time
// per boot2 mode.
import { bootUf2, fail, symbolTable } from './boot.mjs';
import { CACHE_BYTES, LINE_BYTES, WAYS, XipCache } from './xipcache.mjs';

const [elf, uf2] = process.argv.slice(2);
if (!elf || !uf2) fail('usage: node xip.mjs firmware.elf firmware.uf2');

const cache = new XipCache();

const { syms, lookup } = symbolTable(elf, /./);
const modelRun = syms.find((f) => f.name === 'model_run');
if (!modelRun) fail(`${elf} has no model_run`);

const mcu = bootUf2(uf2);
const { core, clock } = mcu;
let text = '';
mcu.uart[0].onByte = (b) => { text += String.fromCharCode(b); };

let counting = false;
const reads = new Map(), misses = new Map();     // symbol name -> count, during the measured call
const inXip = (a) => a >= 0x10000000 && a < 0x14000000;
function touch(addr) {
  const miss = cache.access(addr);
  if (counting) {
    const name = lookup(0x10000000 | (addr & 0xffffff))?.name ?? 'other';
    reads.set(name, (reads.get(name) ?? 0) + 1);
    if (miss) misses.set(name, (misses.get(name) ?? 0) + 1);
  }
}
for (const [method, bytes] of [['readUint32', 4], ['readUint16', 2], ['readUint8', 1]]) {
  const read = mcu[method].bind(mcu);
  mcu[method] = (addr) => {
    addr >>>= 0;
    if (inXip(addr)) {
      touch(addr);
      if ((addr % LINE_BYTES) + bytes > LINE_BYTES) touch(addr + bytes - 1);  // an unaligned read spanning two lines
    }
    return read(addr);
  };
}

let calls = 0, ret = -1, start = 0, last = null;
while (!text.includes('READY')) {
  if (core.waiting) {
    const nanos = clock.nanosToNextAlarm;
    if (nanos <= 0) fail('the core sleeps with nothing to wake it');
    clock.tick(nanos);
    continue;
  }
  const pc = core.PC & ~1;
  if (ret < 0 && pc === modelRun.lo) {
    calls++;
    ret = core.LR & ~1;
    start = core.cycles;
    reads.clear();
    misses.clear();
    counting = true;
  } else if (ret >= 0 && pc === ret) {
    counting = false;
    ret = -1;
    const sum = (m) => [...m.values()].reduce((a, b) => a + b, 0);
    last = {
      call: calls, cycles: core.cycles - start, reads: sum(reads), misses: sum(misses),
      by_symbol: [...reads.keys()].map((n) => [n, reads.get(n), misses.get(n) ?? 0]).sort((a, b) => b[2] - a[2] || b[1] - a[1]),
    };
  }
  clock.tick((core.executeInstruction() * 1e9) / mcu.clkSys);
}
if (!last) fail('the firmware printed READY without calling model_run');
process.stdout.write(JSON.stringify({
  ...last, cache_bytes: CACHE_BYTES, ways: WAYS, line_bytes: LINE_BYTES, replacement: 'LRU (assumed)',
}) + '\n');
