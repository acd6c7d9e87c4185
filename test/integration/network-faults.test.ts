import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startTopology, type Topology, queryOnce } from '../../scripts/topology.js'
import { createDatabase, Droplet, UnavailableError, User, type Database, type DatabaseConfig } from '../../src/index.js'
import { adminUrl, createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { startFaultProxy, type FaultProxy } from '../helpers/tcp-proxy.js'
import { needs } from '../helpers/tools.js'

/**
 * What a host meets when the network or the server fails under the pool: a server restart, connections reset, a
 * middlebox that silently drops idle connections or a connection in the middle of a query, a write whose connection
 * dies. The faults are real: a server of its own stopped and started again, and a TCP proxy between the library and
 * PostgreSQL that resets or black-holes its connections. Every call goes through the public API (a scoped
 * repository, `db.model`, `db.knex`).
 */

type PoolConfig = NonNullable<DatabaseConfig['pool']>
type Actor = { id: string; role: string }
type Call = readonly [name: string, run: () => Promise<unknown>]

/** How a promise settled, and when; 'pending' if it had not after the time given (it is left running). */
type Outcome<T> =
  | { state: 'fulfilled'; value: T; ms: number }
  | { state: 'rejected'; error: unknown; ms: number }
  | { state: 'pending'; ms: number }

async function within<T>(promise: PromiseLike<T>, ms: number): Promise<Outcome<T>> {
  const started = Date.now()
  let timer: NodeJS.Timeout | undefined
  const settled = Promise.resolve(promise).then(
    (value): Outcome<T> => ({ state: 'fulfilled', value, ms: Date.now() - started }),
    (error: unknown): Outcome<T> => ({ state: 'rejected', error, ms: Date.now() - started }),
  )
  const late = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => resolve({ state: 'pending', ms: Date.now() - started }), ms)
  })
  try {
    return await Promise.race([settled, late])
  } finally {
    clearTimeout(timer)
  }
}

/** One call of each kind a host makes: a scoped repository read, a model read, a raw query on db.knex. */
function readsOf(db: Database, actor: Actor): Call[] {
  return [
    ['repo.list', () => db.scope(actor).repo(Droplet).list()],
    ['db.model findById', async () => db.model(User).query().findById(actor.id)],
    ['db.knex.raw', () => db.knex.raw('select 1')],
  ]
}

/** Runs the calls one after the other; returns the failures. */
async function failuresInTurn(calls: readonly Call[]): Promise<string[]> {
  const failures: string[] = []
  for (const [name, run] of calls) await run().catch((error: unknown) => failures.push(`${name}: ${String(error)}`))
  return failures
}

/** Runs the calls at once; returns the failures. */
async function failuresAtOnce(calls: readonly Call[]): Promise<string[]> {
  const results = await Promise.allSettled(calls.map(([, run]) => run()))
  return results.flatMap((result, i) =>
    result.status === 'rejected' ? [`${calls[i]![0]}: ${String(result.reason)}`] : [],
  )
}

/** Makes the pool open `count` connections (count ≤ pool.max) and leaves them idle in it. */
async function warm(db: Database, count: number): Promise<void> {
  await Promise.all(Array.from({ length: count }, () => db.knex.raw('select pg_sleep(0.05)')))
}

function expectUnavailable(outcome: Outcome<unknown>, commitUnknown: boolean): void {
  expect(outcome.state).toBe('rejected')
  const error = outcome.state === 'rejected' ? outcome.error : undefined
  expect(error, String(error)).toBeInstanceOf(UnavailableError)
  expect((error as UnavailableError).commitUnknown).toBe(commitUnknown)
}

const ownServer = needs('postgresql-15', 'the server restart tests') ? describe : describe.skip

ownServer('a server restart (a server of its own, stopped and started)', () => {
  let topology: Topology
  let url: string

  beforeAll(async () => {
    topology = await startTopology({ replica: false, pgbouncer: false, redis: false })
    await queryOnce(topology.primaryUrl, 'create database app')
    url = topology.urlFor(topology.primaryUrl, 'app')
  }, 120_000)

  afterAll(async () => {
    await topology?.stop()
  })

  it('calls fail promptly with UnavailableError while it is down, and the very next call of each kind succeeds once it is back', async () => {
    const appName = `restart-${randomBytes(5).toString('hex')}`
    const db = await createDatabase({
      connection: url,
      applicationName: appName,
      pool: { min: 0, max: 4, acquireTimeoutMs: 10_000 },
    })
    try {
      await db.migrate.latest()
      const user = await db
        .model(User)
        .query()
        .insertAndFetch({ email: 'restart@example.com', username: 'restart', passwordHash: 'x' })
      const actor = { id: user.id, role: 'user' }
      await warm(db, 4)
      const idle = await queryOnce<{ count: number }>(
        topology.primaryUrl,
        `select count(*)::int as count from pg_stat_activity where application_name = $1 and state = 'idle'`,
        [appName],
      )
      expect(idle[0]!.count).toBe(4)

      await topology.stopPrimary()
      // Down: nothing listens on the port. Each call fails at once (the pool's attempt to connect is refused), long
      // before acquireTimeoutMs.
      for (const [name, run] of readsOf(db, actor)) {
        const outcome = await within(run(), 9_000)
        expect(outcome.state, name).toBe('rejected')
        expect(outcome.ms, name).toBeLessThan(5_000)
        const error = outcome.state === 'rejected' ? outcome.error : undefined
        // db.knex is plain knex: its errors are pg's own.
        if (name === 'db.knex.raw') expect(error, name).toMatchObject({ code: 'ECONNREFUSED' })
        else expect(error, `${name}: ${String(error)}`).toBeInstanceOf(UnavailableError)
      }
      await expect(db.scope(actor).repo(Droplet).create({ name: 'down', region: 'nyc3', size: 's' })).rejects.toThrow(
        UnavailableError,
      )

      await topology.startPrimary()
      // Back: the very next call of each kind succeeds, with no wait but the restart itself.
      expect(await failuresInTurn(readsOf(db, actor))).toEqual([])
      const repo = db.scope(actor).repo(Droplet)
      await repo.create({ name: 'after-restart', region: 'nyc3', size: 's' })
      expect((await repo.list()).map((d) => d.name)).toEqual(['after-restart'])
    } finally {
      await db.close()
    }
  })
})

describe('network faults between the pool and the server (a TCP proxy)', () => {
  let testDb: TestDatabase
  let actor: Actor
  /** A connection of the test's own to the test database, straight to the server. */
  let admin: pg.Client
  const cleanups: (() => Promise<void>)[] = []

  const target = (): { host: string; port: number } => {
    const server = new URL(adminUrl())
    return { host: server.hostname === 'localhost' ? '127.0.0.1' : server.hostname, port: Number(server.port) }
  }

  /** A database handle whose connections all go through a fresh proxy. */
  async function openProxied(pool: PoolConfig): Promise<{ db: Database; proxy: FaultProxy; appName: string }> {
    const proxy = await startFaultProxy(target())
    const appName = `netfault-${randomBytes(5).toString('hex')}`
    const db = await createDatabase({ connection: proxy.urlFor(testDb.url), applicationName: appName, pool })
    cleanups.push(async () => {
      // The proxy first: its sockets destroyed, no connection is left waiting on a black hole.
      await proxy.close()
      await db.close()
    })
    return { db, proxy, appName }
  }

  /** The pids of the application's backends that wait on a lock, once there are `count` of them. */
  async function waitingOnLock(appName: string, count: number): Promise<number[]> {
    const deadline = Date.now() + 10_000
    for (;;) {
      const { rows } = await admin.query<{ pid: number }>(
        `select pid from pg_stat_activity where application_name = $1 and wait_event_type = 'Lock'`,
        [appName],
      )
      if (rows.length >= count) return rows.map((row) => row.pid)
      if (Date.now() > deadline) throw new Error(`${count} backends of ${appName} never waited on a lock`)
      await sleep(5)
    }
  }

  /** Holds a row lock on the actor's user row (FOR UPDATE) until `release()`: writes that need it wait. */
  async function lockUser(): Promise<{ release(): Promise<void> }> {
    const locker = new pg.Client({ connectionString: testDb.url })
    await locker.connect()
    await locker.query('begin')
    await locker.query('select id from users where id = $1 for update', [actor.id])
    let released = false
    const release = async (): Promise<void> => {
      if (released) return
      released = true
      await locker.query('commit')
      await locker.end()
    }
    cleanups.push(release)
    return { release }
  }

  async function dropletCopies(name: string): Promise<number> {
    const { rows } = await admin.query<{ copies: number }>(
      'select count(*)::int as copies from droplets where name = $1',
      [name],
    )
    return rows[0]!.copies
  }

  beforeAll(async () => {
    testDb = await createTestDatabase('netfault')
    const setup = await createDatabase({ connection: testDb.url })
    try {
      await setup.migrate.latest()
      const user = await setup
        .model(User)
        .query()
        .insertAndFetch({ email: 'net@example.com', username: 'net', passwordHash: 'x' })
      actor = { id: user.id, role: 'user' }
    } finally {
      await setup.close()
    }
    admin = new pg.Client({ connectionString: testDb.url })
    await admin.connect()
  })

  afterEach(async () => {
    const failures: unknown[] = []
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((error: unknown) => failures.push(error))
    expect(failures).toEqual([])
  })

  afterAll(async () => {
    await admin?.end()
    await testDb?.drop()
  })

  it('idle connections reset (TCP RST): the next calls succeed', async () => {
    const { db, proxy } = await openProxied({ min: 0, max: 3 })
    await warm(db, 3)
    expect(proxy.connections).toBe(3)
    // The calls start in the same tick as the reset: the pool has not heard of it yet and hands out the dead
    // connections, one to each call.
    proxy.resetAll()
    expect(await failuresAtOnce(readsOf(db, actor))).toEqual([])

    // Several connections reset at once, then one call at a time: a call that meets a dead connection runs again,
    // and may meet another dead one before a fresh connection; it must still not fail.
    for (let round = 0; round < 5; round++) {
      await warm(db, 3)
      expect(proxy.connections).toBe(3)
      proxy.resetAll()
      expect(await failuresInTurn(readsOf(db, actor))).toEqual([])
    }

    // One connection, reset before each call of each kind.
    const single = await openProxied({ min: 0, max: 1 })
    const failures: string[] = []
    for (const call of readsOf(single.db, actor)) {
      await warm(single.db, 1)
      single.proxy.resetAll()
      failures.push(...(await failuresInTurn([call])))
    }
    expect(failures).toEqual([])
  })

  it('a middlebox that silently dropped the idle connections: with idleCheckMs the next calls succeed; without, they hang', async () => {
    // The ping of an idle connection may take min(acquireTimeoutMs, 2000) ms.
    const pool = { min: 0, max: 3, acquireTimeoutMs: 8_000 }
    const checked = await openProxied({ ...pool, idleCheckMs: 200 })
    const unchecked = await openProxied({ ...pool, idleCheckMs: 0 })
    await Promise.all([warm(checked.db, 3), warm(unchecked.db, 3)])
    for (const { proxy } of [checked, unchecked]) {
      // The connections sit in the pool, open at both ends, and nothing they send arrives any more; new connections
      // get through.
      proxy.blackhole()
      proxy.heal()
    }
    await sleep(400)

    const [withCheck, withoutCheck] = await Promise.all([
      Promise.all(readsOf(checked.db, actor).map(([, run]) => within(run(), 7_000))),
      Promise.all(readsOf(unchecked.db, actor).map(([, run]) => within(run(), 5_000))),
    ])
    // Each ping went unanswered, its connection was discarded, and the call ran on a new one.
    expect(withCheck.map((outcome) => outcome.state)).toEqual(['fulfilled', 'fulfilled', 'fulfilled'])
    expect(await failuresInTurn(readsOf(checked.db, actor))).toEqual([])
    // Without the check each call was sent on a dead connection and waits for an answer that never comes.
    expect(withoutCheck.map((outcome) => outcome.state)).toEqual(['pending', 'pending', 'pending'])
  })

  it('a middlebox that silently dropped several idle connections: one call pays one ping, not one per connection', async () => {
    // Three dead idle connections, pinged one after another (2 s each), would outlast the 4 s acquire timeout: the
    // first failed ping retires the connections that went quiet with it.
    const { db, proxy } = await openProxied({ min: 0, max: 3, acquireTimeoutMs: 4_000, idleCheckMs: 200 })
    await warm(db, 3)
    expect(proxy.connections).toBe(3)
    proxy.blackhole()
    proxy.heal()
    await sleep(400)
    expect(await failuresInTurn(readsOf(db, actor).slice(0, 1))).toEqual([])
    expect(await failuresInTurn(readsOf(db, actor))).toEqual([])
  })

  it('a middlebox that drops connections mid-query: with queryTimeoutMs the calls fail in time, a write says commitUnknown', async () => {
    const { db, proxy, appName } = await openProxied({ min: 0, max: 2, queryTimeoutMs: 1_000, acquireTimeoutMs: 8_000 })
    await warm(db, 2)
    const lock = await lockUser()
    const username = `patched-${randomBytes(4).toString('hex')}`
    // Both wait on the row lock, in flight, when the network goes silent.
    const read = within(db.model(User).query().findById(actor.id).forShare(), 10_000)
    const write = within(db.model(User).query().findById(actor.id).patch({ username }), 10_000)
    const inFlight = await waitingOnLock(appName, 2)
    proxy.blackhole()
    // The server answers (and commits the write) at once, but the answers never arrive.
    await lock.release()

    const [readOutcome, writeOutcome] = await Promise.all([read, write])
    expectUnavailable(readOutcome, false)
    expectUnavailable(writeOutcome, true)
    expect(readOutcome.ms).toBeLessThan(5_000)
    expect(writeOutcome.ms).toBeLessThan(5_000)
    // The write the caller saw fail was applied: why it must be read back, not blindly retried.
    const deadline = Date.now() + 5_000
    let [row] = (await admin.query<{ username: string }>('select username from users where id = $1', [actor.id])).rows
    while (row?.username !== username && Date.now() < deadline) {
      await sleep(20)
      ;[row] = (await admin.query<{ username: string }>('select username from users where id = $1', [actor.id])).rows
    }
    expect(row?.username).toBe(username)

    proxy.heal()
    expect(await failuresInTurn(readsOf(db, actor))).toEqual([])
    const { rows } = await db.knex.raw<{ rows: { pid: number }[] }>('select pg_backend_pid() as pid')
    expect(inFlight).not.toContain(rows[0]!.pid)
  })

  it('a write whose connection is killed mid-statement is never retried: it fails with commitUnknown and is not there', async () => {
    const { db, appName } = await openProxied({ min: 0, max: 2 })
    const writes: [string, (name: string) => Promise<unknown>][] = [
      ['repo.create', (name) => db.scope(actor).repo(Droplet).create({ name, region: 'nyc3', size: 's' })],
      [
        'db.model insert',
        async (name) => db.model(Droplet).query().insert({ userId: actor.id, name, region: 'nyc3', size: 's' }),
      ],
    ]
    for (const [kind, write] of writes) {
      const name = `killed-${randomBytes(4).toString('hex')}`
      const lock = await lockUser()
      // The insert waits on the lock its foreign key takes on the user row; it is killed as soon as it waits (most
      // likely within a few milliseconds of being sent, when a read would be run again).
      const outcome = within(write(name), 10_000)
      const [pid] = await waitingOnLock(appName, 1)
      await admin.query('select pg_terminate_backend($1)', [pid])
      // Were it run again, it would not wait.
      await lock.release()
      const settled = await outcome
      expectUnavailable(settled, true)
      expect(await dropletCopies(name), kind).toBe(0)
    }
    // The pool goes on.
    expect(await failuresInTurn(readsOf(db, actor))).toEqual([])
  })

  it('a write committed whose answer was lost is never retried: it fails with commitUnknown and is there once', async () => {
    const { db, proxy, appName } = await openProxied({ min: 0, max: 2 })
    const name = `once-${randomBytes(4).toString('hex')}`
    const lock = await lockUser()
    const outcome = within(db.scope(actor).repo(Droplet).create({ name, region: 'nyc3', size: 's' }), 10_000)
    await waitingOnLock(appName, 1)
    proxy.blackhole()
    await lock.release()
    // Committed on the server; its answer is swallowed.
    for (const deadline = Date.now() + 5_000; (await dropletCopies(name)) === 0; await sleep(10)) {
      if (Date.now() > deadline) throw new Error('the write never committed')
    }
    // New connections get through again, and the one the write waits on is reset.
    proxy.heal()
    proxy.resetAll()
    const settled = await outcome
    expectUnavailable(settled, true)
    expect(await dropletCopies(name)).toBe(1)
    expect(await failuresInTurn(readsOf(db, actor))).toEqual([])
  })

  it('db.close() does not hang on black-holed connections', async () => {
    const { db, proxy } = await openProxied({ min: 0, max: 3 })
    await warm(db, 3)
    proxy.blackhole()
    const closed = await within(db.close(), 15_000)
    expect(closed.state).toBe('fulfilled')
    expect(closed.ms).toBeLessThan(10_000)
  })
})
