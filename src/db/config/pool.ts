import { ConfigError } from '../../errors/index.js'
import { integer, section } from './fields.js'

/**
 * Connection pool settings. Defaults: `min: 0`, `max: 10`, `acquireTimeoutMs: 10_000`, `idleTimeoutMs: 30_000`,
 * `idleCheckMs: 10_000`, `queryTimeoutMs: 0` (none).
 *
 * @example
 * ```ts
 * const pool: PoolConfig = { min: 0, max: 30, acquireTimeoutMs: 5_000 } // pool_size 10 + max_overflow 20
 * ```
 */
export interface PoolConfig {
  /** Connections kept open while idle. */
  min?: number
  /** Most connections open at once. */
  max?: number
  /** How long a query waits for a free connection before it fails with `UnavailableError`. */
  acquireTimeoutMs?: number
  /** How long an idle connection above `min` stays open. */
  idleTimeoutMs?: number
  /**
   * A connection that sat unused this long answers a ping (`select 1`, within `min(acquireTimeoutMs, 2000)` ms)
   * before it is handed out again; one that does not is discarded and another is used. Catches connections a server
   * restart, a failover or a middlebox ended while they were idle. Busy connections never pay for it. Default
   * 10_000; 0 turns it off.
   */
  idleCheckMs?: number
  /**
   * How long a query may wait for its reply before it fails with `UnavailableError` and its connection is
   * discarded (pg's client-side `query_timeout`): the only way to notice a network that silently stopped forwarding
   * in the middle of a query. Default 0 (no limit); set it above your slowest legitimate query.
   */
  queryTimeoutMs?: number
}

/**
 * `pool`, with its defaults filled in; `min` may not exceed `max`.
 *
 * @internal
 */
export function parsePool(value: unknown): Required<PoolConfig> {
  const pool = section(value, 'pool', [
    'min',
    'max',
    'acquireTimeoutMs',
    'idleTimeoutMs',
    'idleCheckMs',
    'queryTimeoutMs',
  ])
  const max = integer(pool.max, 'pool.max', 1, 1_000, 10)
  const min = integer(pool.min, 'pool.min', 0, 1_000, 0)
  if (min > max) throw new ConfigError('pool.min', `must not exceed pool.max (${max}).`)
  return Object.freeze({
    min,
    max,
    acquireTimeoutMs: integer(pool.acquireTimeoutMs, 'pool.acquireTimeoutMs', 1, 600_000, 10_000),
    idleTimeoutMs: integer(pool.idleTimeoutMs, 'pool.idleTimeoutMs', 1, 86_400_000, 30_000),
    idleCheckMs: integer(pool.idleCheckMs, 'pool.idleCheckMs', 0, 86_400_000, 10_000),
    queryTimeoutMs: integer(pool.queryTimeoutMs, 'pool.queryTimeoutMs', 0, 86_400_000, 0),
  })
}
