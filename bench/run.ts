/**
 * `npm run bench`: loads the benchmark data set, runs every benchmark against its raw-pg baseline and prints the
 * results. Uses BENCH_DATABASE_URL when set (the data is loaded once and kept), else a throwaway embedded
 * PostgreSQL 15 that is stopped at the end. Timings never make the run fail; errors do.
 */
import { cpus } from 'node:os'
import pg from 'pg'
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/db/embedded-postgres.js'
import { createDatabase, type Database } from '../src/index.js'
import { formatResults, runBenchmarks, runOptionsFromEnv, type Benchmark } from './harness.js'
import { loadBenchData } from './load.js'
import { modelLoadBenchmarks, type BenchContext } from './model-load.bench.js'
import { scopedListBenchmarks } from './scoped-list.bench.js'
import { paginationBenchmarks } from './pagination.bench.js'
import { bulkBenchmarks } from './bulk.bench.js'
import { auditBenchmarks } from './audit.bench.js'
import { BENCH_ENCRYPTION, cryptoBenchmarks, encryptedLoadBenchmarks } from './crypto.bench.js'
import { observabilityBenchmarks } from './observability.bench.js'
import { scalingBenchmarks } from './scaling.bench.js'
import { measureFailover, reliabilityBenchmarks } from './reliability.bench.js'

/** Every benchmark file's factory, in the order they run. */
const SUITES: readonly ((context: BenchContext) => Benchmark[] | Promise<Benchmark[]>)[] = [
  cryptoBenchmarks,
  modelLoadBenchmarks,
  encryptedLoadBenchmarks,
  scopedListBenchmarks,
  paginationBenchmarks,
  bulkBenchmarks,
  auditBenchmarks,
  observabilityBenchmarks,
  scalingBenchmarks,
  reliabilityBenchmarks,
]

/** A throwaway, non-durable server: the data is regenerated at will. */
const EMBEDDED_SETTINGS: Record<string, string> = {
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  max_wal_size: '4GB',
  shared_buffers: '512MB',
  maintenance_work_mem: '256MB',
}

async function main(): Promise<void> {
  const options = runOptionsFromEnv()
  const external = process.env.BENCH_DATABASE_URL
  let server: EmbeddedServer | undefined
  let db: Database | undefined
  let pool: pg.Pool | undefined
  const cleanups: (() => Promise<void>)[] = []
  try {
    let url: string
    if (external) {
      url = external
    } else {
      const starting = performance.now()
      server = await startEmbeddedPostgres({ settings: EMBEDDED_SETTINGS })
      url = server.url
      console.log(`embedded PostgreSQL started in ${((performance.now() - starting) / 1000).toFixed(1)} s`)
    }
    // One connection on each side, so neither gets more parallelism or warmer connections than the other.
    db = await createDatabase({ connection: url, pool: { min: 1, max: 1 }, encryption: BENCH_ENCRYPTION })
    pool = new pg.Pool({ connectionString: url, max: 1 })
    await db.migrate.latest()
    const data = await loadBenchData(db.knex)

    const version = (await pool.query<{ server_version: string }>('show server_version')).rows[0]!.server_version
    console.log(
      `node ${process.version}, PostgreSQL ${version}${server ? ' (embedded)' : ''}, ` +
        `${cpus().length} CPUs, ${options.iterations} timed rounds after ${options.warmup} warm-up rounds`,
    )
    const context: BenchContext = { db, pool, data, url, onClose: (close) => cleanups.push(close) }
    const benchmarks: Benchmark[] = []
    for (const suite of SUITES) benchmarks.push(...(await suite(context)))
    // BENCH_ONLY=bulk runs only the benchmarks whose name contains it.
    const only = process.env.BENCH_ONLY
    const results = await runBenchmarks(only ? benchmarks.filter((b) => b.name.includes(only)) : benchmarks, options)
    console.log(`\n${formatResults(results)}`)
    for (const result of results) {
      const line = benchmarks.find((b) => b.name === result.name)?.summary?.(result)
      if (line !== undefined) console.log(line)
    }
    if (only === undefined || 'failover'.includes(only)) await reportFailover()
  } finally {
    for (const close of cleanups.reverse()) await close()
    await pool?.end()
    await db?.close()
    await server?.stop()
  }
}

/** Failover time on real servers, three times (each on a topology of its own). */
async function reportFailover(): Promise<void> {
  const runs = []
  for (let i = 0; i < 3; i++) {
    const run = await measureFailover()
    if (run === null) {
      console.log('failover: skipped (no PostgreSQL server programs on this machine)')
      return
    }
    runs.push(run)
  }
  const ms = (values: number[]) => values.map((v) => v.toFixed(0)).join(', ')
  console.log(
    `failover (host list, replica promoted 1 s after the primary stopped): first write ` +
      `${ms(runs.map((r) => r.stopToWriteMs))} ms after the stop, ${ms(runs.map((r) => r.promoteToWriteMs))} ms after the promotion`,
  )
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
