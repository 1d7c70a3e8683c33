// Cycle profile of the firmware's boot self-test in rp2040js: which model step and function the cycles go to.
// Usage: node profile.mjs firmware.elf firmware.uf2 [--plan model_plan.json] [--top N]
// Runs until the firmware prints READY, then reports, for the first model_run call, each call model_run
// makes (one per kernel step, in the plan's order) with its cycles, and the whole run's cycles per function.
// --top N also lists the N hottest instruction addresses (look them up with arm-none-eabi-objdump -d).
// Cycles are rp2040js's: 1 per instruction plus memory costs, no flash wait states.
import { readFileSync } from 'node:fs';
import { bootUf2, fail, symbolTable } from './boot.mjs';

const args = process.argv.slice(2);
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const [elf, uf2] = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--')));
if (!elf || !uf2) fail('usage: node profile.mjs firmware.elf firmware.uf2 [--plan model_plan.json] [--top N]');
const plan = opt('--plan') ? JSON.parse(readFileSync(opt('--plan'), 'utf8')) : null;
const top = Number(opt('--top') ?? 0);

const { syms: funcs, lookup } = symbolTable(elf, /[tT]/);
const modelRun = funcs.find((f) => f.name === 'model_run');
if (!modelRun) fail(`${elf} has no model_run`);

const mcu = bootUf2(uf2);
const { core, clock } = mcu;
let text = '';
mcu.uart[0].onByte = (b) => { text += String.fromCharCode(b); };

const perFunc = new Map(), perPc = new Map();
const steps = [];                    // [callee name, cycles] for each call model_run makes
let state = 'before', ret = 0, step = null, runStart = 0, runCycles = 0;
while (state !== 'done' && !text.includes('READY')) {
  if (core.waiting) {
    const nanos = clock.nanosToNextAlarm;
    if (nanos <= 0) fail('the core sleeps with nothing to wake it');
    clock.tick(nanos);
    continue;
  }
  const pc = core.PC & ~1;
  if (state === 'before' && pc === modelRun.lo) { state = 'run'; ret = core.LR & ~1; runStart = core.cycles; }
  if (state === 'run') {
    if (pc === ret) {                // model_run (or a step it tail-called) returned
      if (step) steps.push([step.name, core.cycles - step.t0]);
      runCycles = core.cycles - runStart;
      state = 'done';
      break;
    }
    const f = lookup(pc);
    if (step === null && f !== modelRun && f && pc === f.lo) step = { name: f.name, t0: core.cycles };
    else if (step !== null && f === modelRun) { steps.push([step.name, core.cycles - step.t0]); step = null; }
  }
  const before = core.cycles;
  clock.tick((core.executeInstruction() * 1e9) / mcu.clkSys);
  if (state === 'run') {
    const dc = core.cycles - before, name = lookup(pc)?.name ?? `0x${pc.toString(16)}`;
    perFunc.set(name, (perFunc.get(name) ?? 0) + dc);
    if (top) perPc.set(pc, (perPc.get(pc) ?? 0) + dc);
  }
}
if (state !== 'done') fail('the firmware printed READY without calling model_run');

const pad = (v, n) => String(v).padStart(n);
const mhz = (c, f) => (c / f / 1e3).toFixed(2);
console.log(`model_run: ${runCycles} cycles = ${mhz(runCycles, 125)} ms at 125 MHz, ${mhz(runCycles, 133)} ms at 133 MHz` +
  (plan ? `, ${(runCycles / plan.macs).toFixed(2)} cycles/MAC over ${plan.macs} MACs` : ''));
console.log('step  function            cycles      MACs  cycles/MAC');
steps.forEach(([name, c], i) => {
  const macs = plan?.steps?.[i]?.macs ?? 0;
  console.log(`${pad(i, 4)}  ${name.padEnd(16)} ${pad(c, 9)} ${pad(macs || '', 9)}  ${macs ? pad((c / macs).toFixed(2), 10) : ''}`);
});
console.log('\nfunction           cycles');
[...perFunc].sort((a, b) => b[1] - a[1]).forEach(([n, c]) => console.log(`${n.padEnd(16)} ${pad(c, 9)}`));
if (top) {
  console.log('\naddress      cycles  function');
  [...perPc].sort((a, b) => b[1] - a[1]).slice(0, top)
    .forEach(([pc, c]) => console.log(`0x${pc.toString(16)} ${pad(c, 9)}  ${lookup(pc)?.name ?? '?'}`));
}
