import type { Logger } from '../db/config.js'

/**
 * A query that ran `slowQueryMs` or longer: its normalized SQL and how many values it was given, never the values.
 *
 * @example
 * ```ts
 * db.stats.onSlowQuery((q: SlowQuery) => metrics.increment('slow_queries', { id: q.id }))
 * ```
 */
export interface SlowQuery {
  readonly id: string
  readonly sql: string
  readonly durationMs: number
  /** How many bindings the query had: their values are redacted. */
  readonly bindings: number
  readonly failed: boolean
  readonly at: Date
}

/** How many slow queries a report lists. */
const RECENT_SLOW = 50

/**
 * The slow queries of one database: the most recent ones, how many there were, and the listeners told of each. A slow
 * query is logged and reported with its normalized SQL and the number of its bindings: their values never leave the
 * query.
 *
 * @internal
 */
export class SlowQueryLog {
  readonly #logger: Logger | undefined
  readonly #listeners = new Set<(query: SlowQuery) => void>()
  #recent: SlowQuery[] = []
  #count = 0

  constructor(logger: Logger | undefined) {
    this.#logger = logger
  }

  /** Slow queries since the start or the last {@link SlowQueryLog.clear}. */
  get count(): number {
    return this.#count
  }

  /** The last 50 slow queries, newest last (a copy). */
  recent(): SlowQuery[] {
    return [...this.#recent]
  }

  /** Records a slow query of a group, logs it (bindings redacted) and tells every listener. */
  record(group: { readonly id: string; readonly sql: string }, ms: number, bindings: number, failed: boolean): void {
    const query: SlowQuery = Object.freeze({
      id: group.id,
      sql: group.sql,
      durationMs: Math.round(ms * 1000) / 1000,
      bindings,
      failed,
      at: new Date(),
    })
    this.#count += 1
    this.#recent.push(query)
    if (this.#recent.length > RECENT_SLOW) this.#recent.shift()
    this.#logger?.warn(
      {
        source: 'wincloud-data',
        queryId: query.id,
        sql: query.sql,
        durationMs: query.durationMs,
        bindings: `[${bindings} redacted]`,
      },
      'slow query',
    )
    for (const listener of this.#listeners) {
      try {
        listener(query)
      } catch (error) {
        this.#logger?.error({ source: 'wincloud-data', error: String(error) }, 'a slow-query listener threw')
      }
    }
  }

  /** Subscribes to slow queries; returns the unsubscribe function. */
  onSlowQuery(listener: (query: SlowQuery) => void): () => void {
    if (typeof listener !== 'function') throw new TypeError('onSlowQuery needs a function.')
    this.#listeners.add(listener)
    return () => {
      this.#listeners.delete(listener)
    }
  }

  /** Forgets the recent slow queries and their count; the listeners stay. */
  clear(): void {
    this.#recent = []
    this.#count = 0
  }
}
