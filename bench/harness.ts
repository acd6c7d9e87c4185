/**
 * A tiny benchmark harness: each benchmark is the library's way of doing something next to the raw `pg` way of
 * doing the same work, timed alternately in the same process so both sides see the same machine, JIT state, pool
 * and server caches.
 */

/**
 * One benchmark: the library side and its raw-pg baseline.
 *
 * @example
 * ```ts
 * const bench = defineBenchmark({
 *   name: 'find one user by id',
 *   target: 1.3,
 *   library: () => Users.query().findById(id).execute(),
 *   raw: async () => (await pool.query('select * from users where id = $1', [id])).rows[0],
 * })
 * ```
 */
export interface Benchmark {
  /** Shown in the results table. */
  readonly name: string
  /** The highest acceptable ratio of medians (library / raw). Informational: a miss never fails the run. */
  readonly target?: number | undefined
  /** Runs once before the warm-up, e.g. to check that both sides return the same data. May throw. */
  readonly setup?: (() => Promise<void>) | undefined
  /** The library's way. */
  readonly library: () => Promise<unknown>
  /** The raw `pg` way of doing the same work. */
  readonly raw: () => Promise<unknown>
  /** Rounds for this benchmark when it is too slow for the run's default (e.g. updates of 100,000 rows). */
  readonly iterations?: number | undefined
  readonly warmup?: number | undefined
  /** A line printed under the table from this benchmark's results, e.g. a figure from outside the process. */
  readonly summary?: ((result: BenchmarkResult) => string) | undefined
}

/**
 * Checks a benchmark definition and freezes it.
 *
 * @example
 * ```ts
 * export const benchmarks = [defineBenchmark({ name: 'noop', library: async () => 1, raw: async () => 1 })]
 * ```
 */
export function defineBenchmark(benchmark: Benchmark): Benchmark {
  if (typeof benchmark.name !== 'string' || benchmark.name.length === 0) {
    throw new TypeError('A benchmark needs a name.')
  }
  if (benchmark.target !== undefined && !(Number.isFinite(benchmark.target) && benchmark.target > 0)) {
    throw new TypeError(`Benchmark "${benchmark.name}": target must be a positive number.`)
  }
  return Object.freeze({ ...benchmark })
}

/** How many times each side runs. */
export interface RunOptions {
  /** Timed calls per side. */
  readonly iterations: number
  /** Untimed calls per side before timing starts. */
  readonly warmup: number
  /** Where progress lines go; `console.log` by default. */
  readonly log?: ((line: string) => void) | undefined
}

/** Per-call durations of one side, in microseconds. */
export interface SideStats {
  readonly median: number
  readonly p95: number
  readonly min: number
  readonly mean: number
}

/** The outcome of one benchmark. */
export interface BenchmarkResult {
  readonly name: string
  readonly iterations: number
  readonly library: SideStats
  readonly raw: SideStats
  /** `library.median / raw.median`. */
  readonly ratio: number
  /** The median of the per-round ratios (each library call over the raw call of the same round). */
  readonly pairedRatio: number
  readonly target: number | undefined
  readonly verdict: 'PASS' | 'ABOVE TARGET' | '-'
}

const DEFAULT_ITERATIONS = 1_000

function integerFromEnv(value: string | undefined, name: string, min: number, fallback: number): number {
  if (value === undefined || value === '') return fallback
  const parsed = Number(value)
  if (!Number.isInteger(parsed) || parsed < min) {
    throw new TypeError(`${name} must be an integer of at least ${min}, got "${value}".`)
  }
  return parsed
}

/**
 * Iteration counts from `BENCH_ITERATIONS` (default 1,000) and `BENCH_WARMUP` (default a fifth of the iterations,
 * at least 20).
 *
 * @example
 * ```ts
 * const results = await runBenchmarks(list, runOptionsFromEnv())
 * ```
 */
export function runOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): RunOptions {
  const iterations = integerFromEnv(env.BENCH_ITERATIONS, 'BENCH_ITERATIONS', 1, DEFAULT_ITERATIONS)
  const warmup = integerFromEnv(env.BENCH_WARMUP, 'BENCH_WARMUP', 0, Math.max(20, Math.round(iterations / 5)))
  return { iterations, warmup }
}

/** Keeps results reachable, so no engine can decide a call's result is unused. */
let sink: unknown

async function timeCall(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint()
  sink = await fn()
  return Number(process.hrtime.bigint() - start) / 1_000
}

/** The value at rank `q` (0..1) of sorted values, by the nearest-rank method. */
function quantile(sorted: readonly number[], q: number): number {
  const rank = Math.max(1, Math.ceil(q * sorted.length))
  return sorted[rank - 1]!
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

function stats(durations: readonly number[]): SideStats {
  const sorted = [...durations].sort((a, b) => a - b)
  return {
    median: median(sorted),
    p95: quantile(sorted, 0.95),
    min: sorted[0]!,
    mean: sorted.reduce((sum, d) => sum + d, 0) / sorted.length,
  }
}

/**
 * Runs one round: both sides once, library first on even rounds and raw first on odd ones, so neither side always
 * pays for (or profits from) going first.
 */
async function round(benchmark: Benchmark, index: number): Promise<[library: number, raw: number]> {
  if (index % 2 === 0) {
    const library = await timeCall(benchmark.library)
    return [library, await timeCall(benchmark.raw)]
  }
  const raw = await timeCall(benchmark.raw)
  return [await timeCall(benchmark.library), raw]
}

/**
 * Runs each benchmark: its setup, then `warmup` untimed rounds, then `iterations` timed rounds, alternating the
 * library and raw sides (ABAB, with the order flipped every round). Never throws because of timings; a benchmark
 * whose setup or calls throw stops the run.
 *
 * @example
 * ```ts
 * const results = await runBenchmarks(benchmarks, { iterations: 500, warmup: 100 })
 * console.log(formatResults(results))
 * ```
 */
export async function runBenchmarks(benchmarks: readonly Benchmark[], options: RunOptions): Promise<BenchmarkResult[]> {
  const log = options.log ?? ((line: string) => console.log(line))
  const results: BenchmarkResult[] = []
  for (const benchmark of benchmarks) {
    const iterations = Math.min(benchmark.iterations ?? options.iterations, options.iterations)
    const warmup = Math.min(benchmark.warmup ?? options.warmup, options.warmup)
    log(`> ${benchmark.name}: ${warmup} warm-up + ${iterations} timed rounds`)
    await benchmark.setup?.()
    for (let i = 0; i < warmup; i++) await round(benchmark, i)

    const library: number[] = []
    const raw: number[] = []
    const ratios: number[] = []
    for (let i = 0; i < iterations; i++) {
      const [l, r] = await round(benchmark, i)
      library.push(l)
      raw.push(r)
      ratios.push(l / r)
    }

    const libraryStats = stats(library)
    const rawStats = stats(raw)
    const ratio = libraryStats.median / rawStats.median
    const target = benchmark.target
    results.push({
      name: benchmark.name,
      iterations,
      library: libraryStats,
      raw: rawStats,
      ratio,
      pairedRatio: median(ratios),
      target,
      verdict: target === undefined ? '-' : ratio <= target ? 'PASS' : 'ABOVE TARGET',
    })
  }
  void sink
  return results
}

/** A plain-text table; the first and last columns are left-aligned, the numbers in between right-aligned. */
function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const last = header.length - 1
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === 0 || i === last ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

const us = (value: number) => value.toFixed(0)
const times = (value: number) => `${value.toFixed(3)}x`

/**
 * The results as a text table: medians and p95s in microseconds, the ratio of medians, the paired ratio, and the
 * target with its verdict.
 *
 * @example
 * ```ts
 * console.log(formatResults(await runBenchmarks(benchmarks, runOptionsFromEnv())))
 * ```
 */
export function formatResults(results: readonly BenchmarkResult[]): string {
  const header = [
    'benchmark',
    'library median µs',
    'raw median µs',
    'library p95 µs',
    'raw p95 µs',
    'ratio',
    'paired',
    'target',
  ]
  const rows = results.map((r) => [
    r.name,
    us(r.library.median),
    us(r.raw.median),
    us(r.library.p95),
    us(r.raw.p95),
    times(r.ratio),
    times(r.pairedRatio),
    r.target === undefined ? '-' : `${r.verdict} (≤ ${r.target}x)`,
  ])
  return table(header, rows)
}
