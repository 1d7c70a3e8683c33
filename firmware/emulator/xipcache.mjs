// A model of the RP2040's XIP cache: 16 KB, two-way set associative, 8-byte lines, so 1024 sets (RP2040
// datasheet 2.6.3.2: "16 kB total size / 8 bytes per line / 2 ways per set"). Least-recently-used replacement
// within a set is an assumption: the datasheet does not say. Aliases as in datasheet 2.6.3.1: 0x10 look up and
// allocate, 0x11 look up only, 0x12 allocate only, 0x13 neither.
export const LINE_BYTES = 8, WAYS = 2, CACHE_BYTES = 16384;
const SETS = CACHE_BYTES / LINE_BYTES / WAYS;

export class XipCache {
  constructor() {
    this.tags = new Int32Array(SETS * WAYS).fill(-1);  // [set][way] -> line number, -1 = invalid
    this.lru = new Uint8Array(SETS);                   // per set, the way to replace next
  }

  /** One read at a system address in 0x10000000-0x13ffffff; returns true on a miss (a flash transfer). */
  access(addr) {
    const alias = (addr >>> 24) & 3, line = (addr & 0xffffff) / LINE_BYTES | 0, set = line % SETS;
    const lookup = alias === 0 || alias === 1, allocate = alias === 0 || alias === 2;
    const in0 = this.tags[2 * set] === line, in1 = this.tags[2 * set + 1] === line;
    if (lookup && (in0 || in1)) {
      this.lru[set] = in0 ? 1 : 0;
      return false;
    }
    if (allocate) {
      const way = in0 ? 0 : in1 ? 1 : this.lru[set];
      this.tags[2 * set + way] = line;
      this.lru[set] = way ^ 1;
    }
    return true;
  }
}
