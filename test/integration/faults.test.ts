import { randomBytes } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createDatabase, Droplet, isDataError, UnavailableError, User, type Database } from '../../src/index.js'
import { LOST_ON_ARRIVAL_MS } from '../../src/errors/driver-errors.js'
import { adminQuery, openTestDatabase } from '../helpers/database.js'

/**
 * A host's process must never die from an unhandled pg 'error' event, and the pool must recover: each test here
 * kills the database's backends with pg_terminate_backend (as an administrator or a failover would) and checks what
 * the host sees. The backends of the database under test are found by their unique application_name.
 */

let db: Database
let url: string
let appName: string
let cleanup: () => Promise<void>
let processErrors: { event: string; error: unknown }[]
let logged: string[]
const listeners: [event: 'uncaughtException' | 'unhandledRejection', listener: (error: unknown) => void][] = []

beforeEach(async () => {
  processErrors = []
  logged = []
  for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
    const listener = (error: unknown) => processErrors.push({ event, error })
    process.on(event, listener)
    listeners.push([event, listener])
  }
  appName = `faults-${randomBytes(5).toString('hex')}`
  const log = (fields: Record<string, unknown>, message?: string) => logged.push(`${String(fields.source)}: ${message}`)
  ;({ db, url, cleanup } = await openTestDatabase({
    applicationName: appName,
    pool: { min: 2, max: 5, acquireTimeoutMs: 5_000 },
    logger: { debug: log, info: log, warn: log, error: log },
  }))
})

afterEach(async () => {
  try {
    // Give a late 'error' event or rejection a chance to surface before looking.
    await sleep(50)
    expect(processErrors.map(({ event, error }) => `${event}: ${String(error)}`)).toEqual([])
  } finally {
    for (const [event, listener] of listeners.splice(0)) process.off(event, listener)
    await cleanup()
  }
})

async function backends(state?: string, name = appName): Promise<{ pid: number; state: string; query: string }[]> {
  const { rows } = await adminQuery<{ pid: number; state: string; query: string }>(
    `select pid, state, query from pg_stat_activity where application_name = $1 and ($2::text is null or state = $2)`,
    [name, state ?? null],
  )
  return rows
}

/** Waits until the server is running a pg_sleep for the given application. */
async function waitForSleep(name = appName): Promise<void> {
  for (let i = 0; (await backends('active', name)).every((b) => !b.query.includes('pg_sleep')); i++) {
    if (i > 100) throw new Error('the sleeping query never showed up in pg_stat_activity')
    await sleep(20)
  }
  // Killed once it has really been running: one killed as it was sent would be run again (a read lost on arrival).
  await sleep(LOST_ON_ARRIVAL_MS + 50)
}

/** Terminates every backend of the database under test; returns how many were killed. */
async function terminateAll(): Promise<number> {
  const { rows } = await adminQuery<{ killed: boolean }>(
    'select pg_terminate_backend(pid) as killed from pg_stat_activity where application_name = $1',
    [appName],
  )
  return rows.filter((row) => row.killed).length
}

/** Waits until the server lists no backend of the database under test, so the kill has really happened. */
async function waitForNoBackends(): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await backends()).length === 0) return
    await sleep(20)
  }
  throw new Error(`backends of ${appName} are still there after pg_terminate_backend`)
}

/** Resolves with how the promise settled and how long it took, failing if it does not settle in time. */
async function settle<T>(
  promise: PromiseLike<T>,
  withinMs: number,
): Promise<{ ok: true; value: T; ms: number } | { ok: false; error: unknown; ms: number }> {
  const started = Date.now()
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not settle within ${withinMs} ms`)), withinMs)
  })
  try {
    const value = await Promise.race([promise, timeout])
    return { ok: true, value, ms: Date.now() - started }
  } catch (error) {
    if (error instanceof Error && error.message === `did not settle within ${withinMs} ms`) throw error
    return { ok: false, error, ms: Date.now() - started }
  } finally {
    clearTimeout(timer)
  }
}

/** A TCP proxy in front of the test server, to cut connections the way a network or a load balancer does. */
async function startProxy(
  target: URL,
): Promise<{ url: string; cut(how: 'close' | 'reset'): number; close(): Promise<void> }> {
  const pairs = new Set<[client: Socket, upstream: Socket]>()
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname)
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    client.pipe(upstream)
    upstream.pipe(client)
    const drop = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    for (const socket of pair) socket.on('error', drop).on('close', drop)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const proxied = new URL(target)
  proxied.port = String((server.address() as { port: number }).port)
  return {
    url: proxied.toString(),
    cut(how) {
      const count = pairs.size
      for (const [client, upstream] of pairs) {
        upstream.destroy()
        // 'close': a clean FIN with no PostgreSQL error message; 'reset': a TCP RST.
        if (how === 'reset') client.resetAndDestroy()
        else client.end()
      }
      pairs.clear()
      return count
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

/**
 * Runs a 10 s model query through a proxy, cuts every proxied connection while it runs, and returns how the call
 * ended and what the next query through the same database did.
 */
async function cutMidQuery(how: 'close' | 'reset'): Promise<{ error: unknown; ms: number; next: string[] }> {
  await insertUser('sleeper')
  const proxy = await startProxy(new URL(url))
  const name = `${appName}-proxied`
  const proxied = await createDatabase({ connection: proxy.url, applicationName: name, pool: { min: 1, max: 3 } })
  try {
    const running = settle(proxied.model(User).query().select('id').whereRaw('(select true from pg_sleep(10))'), 5_000)
    await waitForSleep(name)
    expect(proxy.cut(how)).toBeGreaterThanOrEqual(1)
    const outcome = await running
    expect(outcome.ok).toBe(false)
    const next = await proxied.model(User).query().select('username')
    return { error: outcome.ok ? undefined : outcome.error, ms: outcome.ms, next: next.map((u) => u.username) }
  } finally {
    await proxied.close()
    await proxy.close()
    // The server-side backends of the cut connections are still sleeping; end them.
    await adminQuery('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [name])
  }
}

function expectUnavailable(error: unknown): void {
  expect(isDataError(error), `expected a DataError, got ${String(error)}`).toBe(true)
  expect(error).toBeInstanceOf(UnavailableError)
  expect(error).toMatchObject({ name: 'UnavailableError', code: 'UNAVAILABLE', httpStatus: 503 })
}

async function insertUser(name: string): Promise<User> {
  return db
    .model(User)
    .query()
    .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x' })
}

describe('pg_terminate_backend on every backend of the pool', () => {
  it('while the connections are idle: the host survives and the next queries succeed', async () => {
    // Open several connections at once, then let them go idle in the pool.
    await Promise.all(Array.from({ length: 4 }, () => db.knex.raw('select pg_sleep(0.05)')))
    const before = await backends('idle')
    expect(before.length).toBeGreaterThanOrEqual(2)

    // No waiting for the kills to land: the pool must not hand out a connection it has not yet heard died.
    expect(await terminateAll()).toBeGreaterThanOrEqual(2)

    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => db.knex.raw('select ?::int as n', [i]).then((r) => r.rows[0].n as number)),
    )
    expect(results).toEqual([0, 1, 2, 3, 4, 5])
    expect(await db.model(Droplet).query().resultSize()).toBe(0)
    // The pool opened new connections; none of the killed ones came back.
    const after = await backends()
    expect(after.length).toBeGreaterThanOrEqual(1)
    expect(after.map((b) => b.pid)).not.toEqual(expect.arrayContaining([before[0]!.pid]))
  })

  it('inside an open knex transaction: the next statement fails with UnavailableError, rollback does not hang', async () => {
    await insertUser('before_trx')
    const trx = await db.knex.transaction()
    expect(await db.model(User).query(trx).resultSize()).toBe(1)
    await db.model(User).query(trx).insert({ email: 'in_trx@example.com', username: 'in_trx', passwordHash: 'x' })

    expect(await terminateAll()).toBeGreaterThanOrEqual(1)
    await waitForNoBackends()

    const next = await settle(db.model(User).query(trx).select('id'), 2_000)
    expect(next.ok).toBe(false)
    if (!next.ok) expectUnavailable(next.error)

    // rollback (and commit) on the dead connection settle promptly, whichever way.
    expect((await settle(trx.rollback(), 2_000)).ms).toBeLessThan(2_000)
    expect(trx.isCompleted()).toBe(true)

    // The pool hands out a working connection, and the killed transaction's insert is gone.
    const users = await db.model(User).query().select('username').orderBy('username')
    expect(users.map((u) => u.username)).toEqual(['before_trx'])
  })

  it('inside an open knex transaction: commit on the dead connection does not hang, and nothing is committed', async () => {
    const trx = await db.knex.transaction()
    await db.model(User).query(trx).insert({ email: 'lost@example.com', username: 'lost', passwordHash: 'x' })

    expect(await terminateAll()).toBeGreaterThanOrEqual(1)
    await waitForNoBackends()

    // knex's trx.commit() resolves even when COMMIT fails (knex/knex#3847); the failure is on executionPromise.
    expect((await settle(trx.commit(), 2_000)).ms).toBeLessThan(2_000)
    const execution = await settle(trx.executionPromise, 2_000)
    expect(execution.ok).toBe(false)
    if (!execution.ok) expect(String(execution.error)).toMatch(/^Error: COMMIT;/)
    expect(trx.isCompleted()).toBe(true)
    expect(await db.model(User).query().resultSize()).toBe(0)
  })

  it('inside a model transaction: the statement rejects with UnavailableError, the transaction promptly', async () => {
    let inner: unknown
    const outcome = await settle(
      db.model(User).transaction(async (trx) => {
        await db.model(User).query(trx).insert({ email: 'tx@example.com', username: 'tx_user', passwordHash: 'x' })
        expect(await terminateAll()).toBeGreaterThanOrEqual(1)
        await waitForNoBackends()
        try {
          return await db.model(User).query(trx).select('id')
        } catch (error) {
          inner = error
          throw error
        }
      }),
      3_000,
    )
    expectUnavailable(inner)
    // The transaction rejects promptly. (With what: knex replaces the callback's error by the failed ROLLBACK's,
    // "ROLLBACK - Client has encountered a connection error and is not queryable", which the library does not map.)
    expect(outcome.ok).toBe(false)
    expect(outcome.ms).toBeLessThan(3_000)

    expect(await db.model(User).query().resultSize()).toBe(0)
  })

  it('mid-query (model query): the call rejects with UnavailableError within a couple of seconds', async () => {
    await insertUser('sleeper')
    const started = Date.now()
    const running = settle(db.model(User).query().select('id').whereRaw('(select true from pg_sleep(10))'), 5_000)
    // Wait until the server is really running the sleep, then kill every backend.
    await waitForSleep()
    const killedAt = Date.now()
    expect(await terminateAll()).toBeGreaterThanOrEqual(1)

    const outcome = await running
    expect(outcome.ok).toBe(false)
    if (!outcome.ok) expectUnavailable(outcome.error)
    expect(Date.now() - killedAt).toBeLessThan(2_000)
    expect(Date.now() - started).toBeLessThan(5_000)

    // The same sweep killed the pool's idle connection too: the next query must not get it.
    const users = await db.model(User).query().select('username')
    expect(users.map((u) => u.username)).toEqual(['sleeper'])
  })

  it('mid-query (db.knex.raw): the call rejects promptly and the next query succeeds', async () => {
    const running = settle(db.knex.raw('select pg_sleep(10)'), 5_000)
    await waitForSleep()
    const killedAt = Date.now()
    expect(await terminateAll()).toBeGreaterThanOrEqual(1)

    const outcome = await running
    expect(outcome.ok).toBe(false)
    expect(Date.now() - killedAt).toBeLessThan(2_000)
    // db.knex is plain knex: its errors are pg's own, not mapped. PostgreSQL says why: 57P01 admin_shutdown.
    if (!outcome.ok) expect(outcome.error).toMatchObject({ code: '57P01' })

    const { rows } = await db.knex.raw('select 42 as answer')
    expect(rows).toEqual([{ answer: 42 }])
  })

  it('a model query right after the kill returns normally', async () => {
    // Three queries that overlap, so the pool really holds three open connections.
    await Promise.all(Array.from({ length: 3 }, () => db.knex.raw('select pg_sleep(0.05)')))
    expect(await db.model(Droplet).query().limit(1)).toEqual([])
    expect((await backends()).length).toBeGreaterThanOrEqual(2)

    expect(await terminateAll()).toBeGreaterThanOrEqual(2)

    const droplets = await db.model(Droplet).query()
    expect(droplets).toEqual([])
    const counts = await Promise.all(Array.from({ length: 4 }, () => db.model(Droplet).query().resultSize()))
    expect(counts).toEqual([0, 0, 0, 0])
    // knex noticed the dead connections and said so through the host's logger, not the console.
    expect(logged.some((line) => line.startsWith('knex: Connection Error'))).toBe(true)
  })

  it('a network reset mid-query (TCP RST): UnavailableError within a couple of seconds, next query succeeds', async () => {
    const { error, ms, next } = await cutMidQuery('reset')
    expectUnavailable(error)
    expect(ms).toBeLessThan(2_000)
    expect(next).toEqual(['sleeper'])
  })

  it('a connection closed mid-query without a message (TCP FIN): the call rejects promptly, next query succeeds', async () => {
    const { error, ms, next } = await cutMidQuery('close')
    expect(error).toBeInstanceOf(Error)
    expect(ms).toBeLessThan(2_000)
    expect(next).toEqual(['sleeper'])
  })

  // pg says 'Connection terminated unexpectedly' and knex puts the SQL in front of it
  // ('select "id" from "users" where … - Connection terminated unexpectedly'): still an UnavailableError.
  it('a connection closed mid-query without a message (TCP FIN): the call rejects with UnavailableError', async () => {
    const { error } = await cutMidQuery('close')
    expectUnavailable(error)
  })
})
