import { createHash } from 'node:crypto'
import { BoundedMap } from '../internal/bounded-map.js'
import { QUERY_STATS_LIMITS } from './query-stats-limits.js'
import { normalizeSql, operationOf } from './sql-normalizer.js'
import { round, Timings } from './timings.js'

/**
 * One group of queries with the same normalized SQL, in `db.stats()`.
 *
 * @example
 * ```ts
 * const slowest: QueryGroupStats | undefined = db.stats().queries.sort((a, b) => b.p95Ms - a.p95Ms)[0]
 * ```
 */
export interface QueryGroupStats {
  /** A short stable id of the normalized SQL (the `query_id` label of `db.metrics()`). */
  readonly id: string
  /** The SQL with literals, placeholders and IN-lists collapsed to `?`, whitespace collapsed. No values. */
  readonly sql: string
  /**
   * `select`, `insert`, `update`, `delete`, … (the first keyword, lower case; `with` counts as the write it wraps).
   * The BEGIN and COMMIT knex sends around a transaction are not timed; ones sent as raw SQL are.
   */
  readonly operation: string
  readonly calls: number
  readonly errors: number
  /** Rows returned or changed, summed. */
  readonly rows: number
  readonly totalMs: number
  readonly meanMs: number
  /** Over the most recent 256 calls. */
  readonly p95Ms: number
  readonly maxMs: number
}

/**
 * Upper bounds (seconds) of the duration histogram `db.metrics()` exposes per operation.
 *
 * @internal
 */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const

/** The estimated bytes a group's key and SQL take (the same string; two bytes a character at most). */
const groupBytes = (key: string): number => 64 + 2 * key.length

/** The key and SQL of the group past the limits. */
const OTHER = '(other)'

/**
 * The queries of one normalized SQL: their timings, errors and rows.
 *
 * @internal
 */
export class Group {
  readonly timings = new Timings()
  errors = 0
  rows = 0
  constructor(
    readonly id: string,
    readonly sql: string,
    readonly operation: string,
  ) {}
}

function rowsOf(response: unknown): number {
  if (Array.isArray(response)) return response.length
  if (typeof response === 'number') return response
  if (typeof response === 'object' && response !== null) {
    const result = response as { rowCount?: unknown; rows?: unknown }
    if (typeof result.rowCount === 'number') return result.rowCount
    if (Array.isArray(result.rows)) return result.rows.length
  }
  return 0
}

/**
 * The statistics store of query timing: groups by normalized SQL (bounded by {@link QUERY_STATS_LIMITS}), the cache
 * from a statement's text to its group, and the duration histogram per operation.
 *
 * @internal
 */
export class QueryGroups {
  readonly #groups = new Map<string, Group>()
  #groupBytes = 0
  readonly #bySql = new BoundedMap<string, Group>({
    maxEntries: QUERY_STATS_LIMITS.sqlCacheEntries,
    maxBytes: QUERY_STATS_LIMITS.sqlCacheBytes,
    maxEntryBytes: QUERY_STATS_LIMITS.sqlCacheEntryBytes,
    // The group is shared with #groups: only the statement's text counts here.
    sizeOf: (sql) => 16 + 2 * sql.length,
  })
  readonly #buckets = new Map<string, number[]>()

  /** Counts one answered or failed query in its group and in its operation's histogram; returns the group. */
  record(sql: string, ms: number, failed: boolean, response: unknown): Group {
    const group = this.#group(sql)
    group.timings.add(ms)
    if (failed) group.errors += 1
    else group.rows += rowsOf(response)
    let buckets = this.#buckets.get(group.operation)
    if (buckets === undefined) {
      buckets = new Array<number>(DURATION_BUCKETS.length).fill(0)
      this.#buckets.set(group.operation, buckets)
    }
    const seconds = ms / 1000
    for (let i = 0; i < DURATION_BUCKETS.length; i++) if (seconds <= DURATION_BUCKETS[i]!) buckets[i]! += 1
    return group
  }

  #group(sql: string): Group {
    let group = this.#bySql.get(sql)
    if (group !== undefined) return group
    const normalized = normalizeSql(sql)
    // A long statement's group is keyed and shown by its first characters and the hash of the whole: the groups hold
    // at most sqlLength characters each, however long the statements.
    const hash = createHash('sha256').update(normalized).digest('hex')
    const key =
      normalized.length <= QUERY_STATS_LIMITS.sqlLength
        ? normalized
        : `${normalized.slice(0, QUERY_STATS_LIMITS.sqlLength)}… (sha256 ${hash})`
    group = this.#groups.get(key)
    if (group === undefined) {
      const bytes = groupBytes(key)
      if (this.#groups.size >= QUERY_STATS_LIMITS.groups || this.#groupBytes + bytes > QUERY_STATS_LIMITS.groupBytes) {
        // Past the limits, new shapes share one group rather than grow memory without bound.
        group = this.#groups.get(OTHER)
        if (group === undefined) {
          group = new Group('other', OTHER, 'other')
          this.#groups.set(OTHER, group)
          this.#groupBytes += groupBytes(OTHER)
        }
      } else {
        group = new Group(hash.slice(0, 12), key, operationOf(normalized))
        this.#groups.set(key, group)
        this.#groupBytes += bytes
      }
    }
    this.#bySql.set(sql, group)
    return group
  }

  /** The duration histogram per operation: counts of queries at or under each of {@link DURATION_BUCKETS}. */
  histograms(): ReadonlyMap<string, readonly number[]> {
    return this.#buckets
  }

  /** Every group's figures, by total time, largest first. */
  stats(): QueryGroupStats[] {
    return [...this.#groups.values()]
      .map((g): QueryGroupStats => ({
        id: g.id,
        sql: g.sql,
        operation: g.operation,
        calls: g.timings.count,
        errors: g.errors,
        rows: g.rows,
        totalMs: round(g.timings.total),
        meanMs: round(g.timings.mean()),
        p95Ms: round(g.timings.p95()),
        maxMs: round(g.timings.max),
      }))
      .sort((a, b) => b.totalMs - a.totalMs)
  }

  /** What the store holds now, against {@link QUERY_STATS_LIMITS}. */
  footprint(): { groups: number; groupBytes: number; sqlCache: number; sqlCacheBytes: number } {
    return {
      groups: this.#groups.size,
      groupBytes: this.#groupBytes,
      sqlCache: this.#bySql.size,
      sqlCacheBytes: this.#bySql.bytes,
    }
  }

  /** Forgets every group, the statement cache and the histograms. */
  clear(): void {
    this.#groups.clear()
    this.#groupBytes = 0
    this.#bySql.clear()
    this.#buckets.clear()
  }
}
