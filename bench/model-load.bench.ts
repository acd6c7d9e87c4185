import { deepStrictEqual } from 'node:assert/strict'
import type pg from 'pg'
import { Droplet, type Database } from '../src/index.js'
import { defineBenchmark, type Benchmark } from './harness.js'
import type { BenchData } from './load.js'

/** What every benchmark file gets from bench/run.ts. */
export interface BenchContext {
  /** The library side: a pool of one connection. */
  readonly db: Database
  /** The raw side: a `pg.Pool` of one connection to the same database. */
  readonly pool: pg.Pool
  readonly data: BenchData
  /** The connection URL, for benchmarks that need a database handle of their own (e.g. with RLS on). */
  readonly url: string
  /** Registers work to do when the run ends (closing a benchmark's own database handle). */
  readonly onClose: (close: () => Promise<void>) => void
}

const PAGE_SIZE = 1_000

/**
 * Loading the newest 1,000 droplets of the user who owns 200,000, as `Droplet` model instances (objection builds
 * the SQL, runs it through knex and maps every row through `$parseDatabaseJson` and the snake_case mappers), against
 * the same SQL text and parameters on a raw `pg.Pool`, rows returned as plain objects.
 */
export function modelLoadBenchmarks({ db, pool, data }: BenchContext): Benchmark[] {
  const Droplets = db.model(Droplet)
  const query = () =>
    Droplets.query()
      .where('user_id', data.heavyUserId)
      .orderBy([
        { column: 'created_at', order: 'desc' },
        { column: 'id', order: 'desc' },
      ])
      .limit(PAGE_SIZE)
  const { sql, bindings } = query().toKnexQuery().toSQL().toNative()
  const values = [...bindings]
  const raw = async () => (await pool.query(sql, values)).rows as Record<string, unknown>[]

  return [
    defineBenchmark({
      name: 'load 1,000 droplets as model instances',
      target: 1.3,
      setup: async () => {
        const [models, rows] = await Promise.all([query(), raw()])
        if (models.length !== PAGE_SIZE || !(models[0] instanceof Droplet)) {
          throw new Error(`Expected ${PAGE_SIZE} Droplet instances, got ${models.length}.`)
        }
        // Both sides must have done the same work: same rows, same order, same values.
        deepStrictEqual(
          models.map((m) => [m.id, m.userId, m.name, m.status, m.ipAddress, m.createdAt.getTime()]),
          rows.map((r) => [r.id, r.user_id, r.name, r.status, r.ip_address, (r.created_at as Date).getTime()]),
        )
      },
      library: async () => await query(),
      raw,
    }),
  ]
}
