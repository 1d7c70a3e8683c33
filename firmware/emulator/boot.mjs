// Boots an RP2040 .uf2 in rp2040js the way the bootrom's flash boot does (rp2040js ships no bootrom):
// unpack the UF2 into flash, check boot2's CRC-32/MPEG-2, copy it to SRAM at 0x20041f00, call it with lr = 0.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { RP2040, ConsoleLogger, LogLevel } from 'rp2040js';

const UF2_MAGIC0 = 0x0a324655, UF2_MAGIC1 = 0x9e5d5157, UF2_MAGIC_END = 0x0ab16f30;
const RP2040_FAMILY = 0xe48bff56, FLASH_BASE = 0x10000000, FLASH_BYTES = 2 * 1024 * 1024;
const BOOT2_SRAM = 0x20041f00, SRAM_BASE = 0x20000000;

export function fail(msg) {
  process.stderr.write(`emulator: error: ${msg}\n`);
  process.exit(2);
}

function loadUf2(data, flash) {
  if (data.length === 0 || data.length % 512) fail(`UF2 is truncated (${data.length} bytes)`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let off = 0; off < data.length; off += 512) {
    const u32 = (o) => view.getUint32(off + o, true);
    if (u32(0) !== UF2_MAGIC0 || u32(4) !== UF2_MAGIC1 || u32(508) !== UF2_MAGIC_END) fail(`bad UF2 magic in block ${off / 512}`);
    if (!(u32(8) & 0x2000) || u32(28) !== RP2040_FAMILY) fail(`UF2 block ${off / 512} is not for the RP2040`);
    const addr = u32(12), size = u32(16);
    if (addr < FLASH_BASE || addr + size > FLASH_BASE + FLASH_BYTES) fail(`UF2 address 0x${addr.toString(16)} outside flash`);
    flash.set(data.subarray(off + 32, off + 32 + size), addr - FLASH_BASE);
  }
}

function crc32Mpeg2(bytes) {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b << 24;
    for (let i = 0; i < 8; i++) crc = crc & 0x80000000 ? (crc << 1) ^ 0x04c11db7 : crc << 1;
  }
  return crc >>> 0;
}

// rp2040js leaves VREG_AND_CHIP_RESET unimplemented (reads 0xffffffff); CHIP_RESET (offset 8) reads HAD_POR,
// what silicon reports after power-up.
const chipReset = {
  readUint32: (offset) => (offset === 8 ? 1 << 8 : 0),
  writeUint32() {},
  writeUint32Atomic() {},
};

/** Where the bootrom leaves the core on a flash boot: boot2 copied to SRAM, called with lr = 0 and the stack
 * below the copy (a stack at the top of SRAM would overwrite boot2's literal pool). */
function enterBoot2(mcu) {
  mcu.sram.set(mcu.flash.subarray(0, 256), BOOT2_SRAM - SRAM_BASE);
  mcu.core.SP = BOOT2_SRAM;
  mcu.core.LR = 0;
  mcu.core.PC = BOOT2_SRAM;
}

/** A watchdog reset (timeout or forced): the core restarts from the bootrom's flash boot with its ARMv6-M
 * reset state. The watchdog's REASON and scratch registers survive, as on silicon; its counter stops until the
 * firmware arms it again (rp2040js' periodic alarm would otherwise fire again at once, forever). Peripherals the
 * firmware sets up again keep their emulated state. */
function watchdogReboot(mcu) {
  const { core } = mcu;
  const wd = mcu.peripherals[0x40058];
  wd.enable = false;
  wd.alarm.enable = false;
  wd.timer.enable = false;
  Object.assign(core, {
    IPSR: 0, currentMode: 0, SPSEL: 0, nPRIV: false, PM: false, VTOR: 0, waiting: false,
    pendingInterrupts: 0, enabledInterrupts: 0, pendingNMI: false, pendingPendSV: false, pendingSVCall: false,
    pendingSystick: false, interruptsUpdated: true,
  });
  enterBoot2(mcu);
}

/** A new RP2040 with `file` (a .uf2) in flash, about to run boot2. */
export function bootUf2(file) {
  const mcu = new RP2040();
  mcu.logger = new ConsoleLogger(LogLevel.Error);
  let image;
  try {
    image = readFileSync(file);
  } catch (e) {
    fail(`cannot read ${file}: ${e.message}`);
  }
  loadUf2(image, mcu.flash);
  const boot2 = mcu.flash.subarray(0, 256);
  const stored = new DataView(boot2.buffer, boot2.byteOffset + 252, 4).getUint32(0, true);
  if (crc32Mpeg2(boot2.subarray(0, 252)) !== stored) fail('boot2 CRC-32 mismatch: the bootrom would not boot this image');
  mcu.peripherals[0x40064] = chipReset;
  mcu.peripherals[0x40058].onWatchdogTrigger = () => watchdogReboot(mcu);
  enterBoot2(mcu);
  return mcu;
}

/** Sized symbols of `elf` whose nm type letter matches `types` (a RegExp), as sorted {lo, hi, name} with the
 * Thumb bit cleared, and a lookup from an address to its symbol (or null). */
export function symbolTable(elf, types) {
  const syms = execFileSync('arm-none-eabi-nm', ['-S', '--defined-only', elf], { encoding: 'utf8' })
    .split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length === 4 && types.test(f[2]))
    .map(([a, s, , n]) => ({ lo: parseInt(a, 16) & ~1, hi: (parseInt(a, 16) & ~1) + parseInt(s, 16), name: n }))
    .sort((a, b) => a.lo - b.lo);
  const lookup = (addr) => {
    let lo = 0, hi = syms.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (addr < syms[mid].lo) hi = mid - 1;
      else if (addr >= syms[mid].hi) lo = mid + 1;
      else return syms[mid];
    }
    return null;
  };
  return { syms, lookup };
}
