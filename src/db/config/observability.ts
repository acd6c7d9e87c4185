import { integer, optionalBoolean, section } from './fields.js'

/**
 * Query timing and connection-leak detection. Defaults: `queryTiming: true`, `connectionLeakMs: 60_000`.
 *
 * @example
 * ```ts
 * const observability: ObservabilityConfig = { queryTiming: true, connectionLeakMs: 30_000 }
 * ```
 */
export interface ObservabilityConfig {
  /** Time every query from knex's events, grouped by normalized SQL, for `db.stats()` and `db.metrics()`. */
  queryTiming?: boolean
  /**
   * A connection checked out of the pool for longer than this (milliseconds) is reported once, at `warn`, with the
   * stack that acquired it. 0 turns it off.
   */
  connectionLeakMs?: number
}

/**
 * `slowQueryMs` (default 500) and `observability`, with their defaults filled in.
 *
 * @internal
 */
export function parseObservability(
  slowQueryMs: unknown,
  value: unknown,
): { readonly slowQueryMs: number; readonly observability: Required<ObservabilityConfig> } {
  const slow = integer(slowQueryMs, 'slowQueryMs', 0, 3_600_000, 500)
  const observability = section(value, 'observability', ['queryTiming', 'connectionLeakMs'])
  const queryTiming = optionalBoolean(observability.queryTiming, 'observability.queryTiming')
  return {
    slowQueryMs: slow,
    observability: Object.freeze({
      queryTiming: queryTiming !== false,
      connectionLeakMs: integer(
        observability.connectionLeakMs,
        'observability.connectionLeakMs',
        0,
        86_400_000,
        60_000,
      ),
    }),
  }
}
