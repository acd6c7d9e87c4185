import { deepStrictEqual } from 'node:assert/strict'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { createDatabase, Droplet, type Database, type HealthReport } from '../src/index.js'
import { BENCH_ENCRYPTION } from './crypto.bench.js'
import { defineBenchmark, type Benchmark, type BenchmarkResult } from './harness.js'
import type { BenchContext } from './model-load.bench.js'

/** The `timeoutMs` of the failure benchmarks, and what a check may take at most: the timeout plus 50 ms. */
const TIMEOUT_MS = 200
const BUDGET_MS = TIMEOUT_MS + 50
/** Rounds of the failure benchmarks: each takes up to a quarter of a second per side. */
const FAILURE_ROUNDS = 10
/** How many times the first check after a network partition (an open connection that stops answering) is timed. */
const PARTITION_ROUNDS = 5
/** The `application_name` of the database whose only connection sleeps, so the run can cancel that query. */
const EXHAUSTED_APPLICATION = 'wincloud-bench-exhausted'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const ms = (value: number) => `${value.toFixed(1)} ms`
const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[values.length >> 1] ?? NaN

/**
 * A TCP proxy in front of the server, for a database handle whose server can be made to disappear: `stop()` closes
 * the port and cuts every connection (the server is down: connections are refused), `blackHole()` keeps accepting
 * and keeps every connection open but forwards nothing either way (a network that swallows packets).
 */
class TcpProxy {
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  readonly #target: { host: string; port: number }
  #forwarding = true

  constructor(target: { host: string; port: number }) {
    this.#target = target
    this.#server = createServer((client) => this.#accept(client))
  }

  /** Listens on a free port of 127.0.0.1 and returns it. */
  async start(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(0, '127.0.0.1', () => resolve())
    })
    const address = this.#server.address()
    if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP port')
    return address.port
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket)
    socket.on('error', () => socket.destroy())
    socket.on('close', () => this.#sockets.delete(socket))
  }

  #accept(client: Socket): void {
    this.#track(client)
    if (!this.#forwarding) {
      // Accepted, read and dropped: the client waits for an answer that never comes.
      client.resume()
      return
    }
    const upstream = connect(this.#target.port, this.#target.host)
    this.#track(upstream)
    client.on('data', (chunk: Buffer) => {
      if (this.#forwarding) upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      if (this.#forwarding) client.write(chunk)
    })
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  }

  /** From now on nothing is forwarded, on open connections and new ones alike. */
  blackHole(): void {
    this.#forwarding = false
  }

  forward(): void {
    this.#forwarding = true
  }

  /** Closes the port and every connection through it. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    for (const socket of this.#sockets) socket.destroy()
    await closed
  }
}

/** The server's host and port from a `postgres://` URL, and the same URL pointed at `port` on 127.0.0.1. */
function throughProxy(url: string): { target: { host: string; port: number }; at: (port: number) => string } {
  const parsed = new URL(url)
  const target = { host: parsed.hostname === '' ? '127.0.0.1' : parsed.hostname, port: Number(parsed.port || 5432) }
  return {
    target,
    at: (port) => {
      const proxied = new URL(url)
      proxied.hostname = '127.0.0.1'
      proxied.port = String(port)
      return proxied.toString()
    },
  }
}

/** How each timed check ended, e.g. `unhealthy (connection refused (ECONNREFUSED)) ×10`. */
function outcomes(reports: readonly HealthReport[]): string {
  const counts = new Map<string, number>()
  for (const r of reports) {
    const key = r.reasons.length === 0 ? r.status : `${r.status} (${r.reasons.join('; ')})`
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return [...counts].map(([key, n]) => `${key} ×${n}`).join(', ')
}

/**
 * A health check that must come back within {@link BUDGET_MS} whatever the database does. The raw side is a timer
 * of that budget, so the ratio is the share of the budget the check used (PASS at 1× or less); the summary gives
 * the median and the slowest of the timed checks and what they reported.
 */
function boundedHealth(options: {
  name: string
  expected: HealthReport['status']
  db: () => Database
  setup: () => Promise<void>
  note?: () => string
}): Benchmark {
  const timed: { ms: number; report: HealthReport }[] = []
  return defineBenchmark({
    name: options.name,
    target: 1,
    iterations: FAILURE_ROUNDS,
    warmup: 2,
    setup: options.setup,
    library: async () => {
      const started = performance.now()
      const report = await options.db().health({ timeoutMs: TIMEOUT_MS })
      timed.push({ ms: performance.now() - started, report })
      if (report.status !== options.expected) {
        throw new Error(
          `${options.name}: expected ${options.expected}, got ${report.status} (${report.reasons.join(', ')})`,
        )
      }
      return report
    },
    raw: () => sleep(BUDGET_MS),
    summary: (result: BenchmarkResult) => {
      const last = timed.slice(-result.iterations)
      const slowest = Math.max(...last.map((t) => t.ms))
      return (
        `${options.name}: median ${ms(result.library.median / 1000)}, slowest ${ms(slowest)} of ${last.length} ` +
        `(budget ${BUDGET_MS} ms = timeoutMs ${TIMEOUT_MS} + 50: ${slowest <= BUDGET_MS ? 'within' : 'OVER'}); ` +
        `${outcomes(last.map((t) => t.report))}${options.note?.() ?? ''}`
      )
    },
  })
}

/**
 * What observability costs and how it behaves when things go wrong:
 *
 * - `db.health()` on a healthy server (its own connection: one round trip that reads the version, the recovery
 *   flag, row estimates and the applied migrations) against a raw pooled `SELECT 1`;
 * - the scoped list of scoped-list.bench.ts on the main handle (query timing on, the default) against the same list
 *   on a handle created with `observability: { queryTiming: false }`, and against one with leak detection off too;
 * - `db.health({ timeoutMs: 200 })` with the pool exhausted, with the server down and with a black-holed network,
 *   each against the 250 ms it may take at most.
 */
export async function observabilityBenchmarks({ db, pool, url, onClose }: BenchContext): Promise<Benchmark[]> {
  // The same user and list as scoped-list.bench.ts: 20 newest active droplets of a user with about 80.
  const { rows } = await pool.query<{ id: string }>(
    `select id from users where role = 'user' and is_active and id <> (select user_id from droplets group by user_id
     order by count(*) desc limit 1) order by id limit 1 offset 100`,
  )
  const actor = { id: rows[0]!.id, role: 'user' }
  const listOptions = { filter: { status: 'active' }, sort: ['-createdAt'], limit: 20 } as const

  // Same pool and keys as the main handle; only the observability settings differ.
  const handle = async (observability: { queryTiming?: boolean; connectionLeakMs?: number }) => {
    const other = await createDatabase({
      connection: url,
      pool: { min: 1, max: 1 },
      encryption: BENCH_ENCRYPTION,
      observability,
    })
    onClose(() => other.close())
    return other
  }
  const untimedDb = await handle({ queryTiming: false })
  const bareDb = await handle({ queryTiming: false, connectionLeakMs: 0 })

  const timing = (name: string, target: number | undefined, off: Database) => {
    const on = () => db.scope(actor).repo(Droplet).list(listOptions)
    const without = () => off.scope(actor).repo(Droplet).list(listOptions)
    return defineBenchmark({
      name,
      target,
      setup: async () => {
        const [timed, untimed] = await Promise.all([on(), without()])
        if (timed.length === 0) throw new Error('the benchmark user has no active droplets')
        deepStrictEqual(
          timed.map((m) => [m.id, m.status, m.createdAt.getTime()]),
          untimed.map((m) => [m.id, m.status, m.createdAt.getTime()]),
        )
        if (!db.stats().enabled || off.stats().enabled) throw new Error('query timing is not on and off as expected')
      },
      // A scope per call, as a host makes one per request.
      library: async () => await on(),
      raw: async () => await without(),
    })
  }

  // The pool exhausted: a handle of one connection, held by a sleeping query, with one more caller queued behind it.
  let exhaustedDb: Database | undefined
  const held: Promise<unknown>[] = []
  onClose(async () => {
    if (exhaustedDb === undefined) return
    await pool.query(
      `select pg_cancel_backend(pid) from pg_stat_activity where application_name = $1 and state = 'active'`,
      [EXHAUSTED_APPLICATION],
    )
    await Promise.all(held)
    await exhaustedDb.close()
  })

  // The server down and a black-holed network: handles connected through a proxy that is then stopped or muted.
  const { target, at } = throughProxy(url)
  const proxied: { proxy: TcpProxy; db: Database }[] = []
  const viaProxy = async () => {
    const proxy = new TcpProxy(target)
    const port = await proxy.start()
    const proxiedDb = await createDatabase({ connection: at(port), pool: { min: 1, max: 1 } })
    proxied.push({ proxy, db: proxiedDb })
    // A first check opens the health connection while the server is still reachable, as in a running service.
    const first = await proxiedDb.health({ timeoutMs: 1_000 })
    if (first.status === 'unhealthy') throw new Error(`the proxied database is unhealthy: ${first.reasons.join(', ')}`)
    return { proxy, db: proxiedDb }
  }
  onClose(async () => {
    // Cut the sockets first: closing a handle whose connections are black-holed would wait for goodbyes.
    for (const { proxy } of proxied) await proxy.stop()
    for (const { db: proxiedDb } of proxied) await proxiedDb.close({ timeoutMs: 0 })
  })
  let downDb: Database | undefined
  let blackHoleDb: Database | undefined
  const partition: { ms: number; report: HealthReport }[] = []

  return [
    defineBenchmark({
      name: 'health check, healthy server vs raw pooled SELECT 1',
      target: 5,
      setup: async () => {
        const report = await db.health()
        if (report.status !== 'healthy')
          throw new Error(`the bench database is ${report.status}: ${report.reasons.join(', ')}`)
      },
      library: () => db.health(),
      raw: async () => (await pool.query<{ one: number }>('select 1 as one')).rows,
    }),
    timing('scoped list, query timing on vs off', 1.05, untimedDb),
    timing('scoped list, query timing and leak detection on vs both off', undefined, bareDb),
    boundedHealth({
      name: 'health check, pool exhausted (timeoutMs 200)',
      expected: 'degraded',
      db: () => exhaustedDb!,
      setup: async () => {
        exhaustedDb = await createDatabase({
          connection: url,
          pool: { min: 1, max: 1, acquireTimeoutMs: 600_000 },
          applicationName: EXHAUSTED_APPLICATION,
        })
        held.push(exhaustedDb.knex.raw('select pg_sleep(3600)').catch(() => undefined))
        await sleep(50)
        held.push(exhaustedDb.knex.raw('select 1').catch(() => undefined))
        await sleep(50)
        const { used, max, pendingAcquires } = (await exhaustedDb.health()).pool
        if (used < max || pendingAcquires !== 1) throw new Error('the pool is not exhausted')
      },
    }),
    boundedHealth({
      name: 'health check, server down (timeoutMs 200)',
      expected: 'unhealthy',
      db: () => downDb!,
      setup: async () => {
        const { proxy, db: proxiedDb } = await viaProxy()
        await proxy.stop()
        downDb = proxiedDb
      },
    }),
    boundedHealth({
      name: 'health check, black-holed network (timeoutMs 200)',
      expected: 'unhealthy',
      db: () => blackHoleDb!,
      setup: async () => {
        const { proxy, db: proxiedDb } = await viaProxy()
        // The first check after the partition, on a health connection that was open: timed here, several times.
        for (let i = 0; i < PARTITION_ROUNDS; i++) {
          proxy.forward()
          const before = await proxiedDb.health({ timeoutMs: 1_000 })
          if (before.status === 'unhealthy')
            throw new Error(`no health connection to black-hole: ${before.reasons.join(', ')}`)
          proxy.blackHole()
          const started = performance.now()
          const report = await proxiedDb.health({ timeoutMs: TIMEOUT_MS })
          partition.push({ ms: performance.now() - started, report })
        }
        // The timed rounds: every later check opens a new connection that never gets an answer.
        blackHoleDb = proxiedDb
      },
      note: () =>
        `; the first check after the partition (an open health connection stops answering), ${partition.length} ` +
        `times: median ${ms(median(partition.map((p) => p.ms)))}, ` +
        `slowest ${ms(Math.max(...partition.map((p) => p.ms)))}; ${outcomes(partition.map((p) => p.report))}`,
    }),
  ]
}
