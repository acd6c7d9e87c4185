/** How many of the most recent durations the percentiles are taken over. */
const SAMPLES = 256

/**
 * Durations with a ring of the most recent samples for percentiles.
 *
 * @internal
 */
export class Timings {
  count = 0
  total = 0
  max = 0
  readonly #ring = new Float64Array(SAMPLES)

  add(ms: number): void {
    this.#ring[this.count % SAMPLES] = ms
    this.count += 1
    this.total += ms
    if (ms > this.max) this.max = ms
  }

  p95(): number {
    const n = Math.min(this.count, SAMPLES)
    if (n === 0) return 0
    const sorted = this.#ring.slice(0, n).sort()
    return sorted[Math.min(n - 1, Math.ceil(n * 0.95) - 1)]!
  }

  mean(): number {
    return this.count === 0 ? 0 : this.total / this.count
  }
}

/**
 * Milliseconds rounded to the microsecond, as the reports show them.
 *
 * @internal
 */
export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}
