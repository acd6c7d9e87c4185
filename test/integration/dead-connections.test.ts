import { randomBytes, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { queryOnce } from '../../scripts/topology.js'
import { afterEach, describe, expect, it } from 'vitest'
import { Droplet, UnavailableError, User, type Database } from '../../src/index.js'
import { LOST_ON_ARRIVAL_MS } from '../../src/errors/driver-errors.js'
import { adminUrl, openTestDatabase } from '../helpers/database.js'
import { DEEP } from '../helpers/property.js'

/**
 * A connection that died is never handed out again. pg reports a killed backend to the query that was running on it
 * before it emits the connection's `end`, and knex gives the connection back to its pool in between; plain knex and
 * pg then hand the dead connection to the next caller, who fails too. These tests never wait for the kill to land
 * or for the backend to vanish: the next call is made at once, as a host's next request would be.
 */

const ROUNDS = DEEP ? 100 : 20

let db: Database
let url: string
let appName: string
let cleanup: () => Promise<void>
/** An administrator's connection kept open, so a kill takes one round trip and the next call follows at once. */
let admin: pg.Client

async function open(poolMax: number): Promise<void> {
  appName = `dead-${randomBytes(5).toString('hex')}`
  ;({ db, url, cleanup } = await openTestDatabase({ applicationName: appName, pool: { min: 0, max: poolMax } }))
  admin = new pg.Client({ connectionString: adminUrl() })
  await admin.connect()
}

afterEach(async () => {
  await admin.end()
  await cleanup()
})

/** The pid of the backend of this database running a pg_sleep, once the server shows it. */
async function sleepingBackend(): Promise<number> {
  for (let i = 0; i < 250; i++) {
    const { rows } = await admin.query<{ pid: number }>(
      `select pid from pg_stat_activity where application_name = $1 and state = 'active' and query like '%pg_sleep%'`,
      [appName],
    )
    if (rows[0] !== undefined) return rows[0].pid
    await sleep(4)
  }
  throw new Error('the sleeping query never showed up in pg_stat_activity')
}

/** Kills the backend running a pg_sleep mid-query; resolves with how the sleeping call failed. */
async function killMidQuery(sleeping: Promise<unknown>): Promise<unknown> {
  const failed = sleeping.then(
    () => new Error('the killed query succeeded'),
    (error: unknown) => error,
  )
  const pid = await sleepingBackend()
  // Killed once it has really been running: one killed as it was sent would be run again (a read lost on arrival).
  await sleep(LOST_ON_ARRIVAL_MS + 50)
  await admin.query('select pg_terminate_backend($1)', [pid])
  return failed
}

/** Terminates every idle backend of this database, without waiting for them to go. */
async function killIdle(): Promise<number> {
  const { rows } = await admin.query<{ killed: boolean }>(
    `select pg_terminate_backend(pid) as killed from pg_stat_activity where application_name = $1 and state = 'idle'`,
    [appName],
  )
  return rows.filter((row) => row.killed).length
}

async function insertUser(): Promise<User> {
  const name = `u${randomBytes(6).toString('hex')}`
  return db
    .model(User)
    .query()
    .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x' })
}

describe('a backend killed mid-query', () => {
  for (const poolMax of [1, 4]) {
    it(`the very next call succeeds, ${ROUNDS} times out of ${ROUNDS} (pool.max ${poolMax})`, async () => {
      await open(poolMax)
      const user = await insertUser()
      const repo = db.scope({ id: user.id, role: 'user' }).repo(Droplet)
      const next: string[] = []
      for (let i = 0; i < ROUNDS; i++) {
        const error = await killMidQuery(db.knex.raw('select pg_sleep(10)'))
        // The server said why: 57P01 admin_shutdown (db.knex is plain knex: its errors are pg's own).
        expect(error).toMatchObject({ code: '57P01' })
        // At once, through each way a host queries.
        const calls: [string, () => Promise<unknown>][] = [
          ['db.knex.raw', async () => void (await db.knex.raw('select 1'))],
          ['db.model', async () => db.model(User).query().findById(user.id)],
          ['repo.list', () => repo.list()],
        ]
        const [name, call] = calls[i % calls.length]!
        await call().catch((failure: unknown) => next.push(`${name}: ${String(failure)}`))
      }
      expect(next).toEqual([])
    })
  }

  it('under load: no failed next call, and every acknowledged write is there exactly once', async () => {
    await open(4)
    const user = await insertUser()
    const repo = db.scope({ id: user.id, role: 'user' }).repo(Droplet)
    const acknowledged: string[] = []
    const failures: string[] = []
    let stop = false
    // Two writers keep creating droplets while the backends of pg_sleep queries are killed one after the other.
    const writer = async (): Promise<void> => {
      while (!stop) {
        const name = `d-${randomUUID()}`
        try {
          await repo.create({ name, region: 'nyc3', size: 's-1vcpu-1gb' })
          acknowledged.push(name)
        } catch (error) {
          failures.push(`write: ${String(error)}`)
        }
      }
    }
    const writers = [writer(), writer()]
    try {
      for (let i = 0; i < ROUNDS; i++) {
        await killMidQuery(db.knex.raw('select pg_sleep(10)'))
        await repo.count().catch((error: unknown) => failures.push(`next: ${String(error)}`))
      }
    } finally {
      stop = true
      await Promise.all(writers)
    }
    expect(failures).toEqual([])
    expect(acknowledged.length).toBeGreaterThan(0)
    const rows = await queryOnce<{ name: string; copies: number }>(
      url,
      `select name, count(*)::int as copies from droplets where name = any($1) group by name`,
      [acknowledged],
    )
    expect(rows.length).toBe(acknowledged.length)
    expect(rows.filter((row) => row.copies !== 1)).toEqual([])
  })
})

describe('a backend killed while idle', () => {
  it(`a scoped read right after the kill succeeds: retried once on a fresh connection (${ROUNDS} rounds)`, async () => {
    await open(1)
    const user = await insertUser()
    const scope = db.scope({ id: user.id, role: 'user' })
    const repo = scope.repo(Droplet)
    const mine = await repo.create({ name: 'web-1', region: 'nyc3', size: 's-1vcpu-1gb' })
    const failures: string[] = []
    let killed = 0
    for (let i = 0; i < ROUNDS; i++) {
      await repo.count()
      killed += await killIdle()
      const reads: (() => Promise<unknown>)[] = [
        () => repo.findById(mine.id),
        () => repo.list({ filter: { status: 'building' } }),
        () => repo.count(),
        () => repo.list({ page: { number: 1, size: 5 } }),
        () => repo.list({ page: { size: 5 } }),
      ]
      await reads[i % reads.length]!().catch((error: unknown) => failures.push(String(error)))
    }
    expect(killed).toBe(ROUNDS)
    expect(failures).toEqual([])
  })

  it('a write right after the kill is never retried: it succeeds, or fails with UnavailableError and is not there', async () => {
    await open(1)
    const user = await insertUser()
    const repo = db.scope({ id: user.id, role: 'user' }).repo(Droplet)
    const outcomes = { written: 0, refused: 0 }
    for (let i = 0; i < ROUNDS; i++) {
      await repo.count()
      await killIdle()
      const name = `w-${randomUUID()}`
      const result = await repo.create({ name, region: 'nyc3', size: 's-1vcpu-1gb' }).then(
        () => 'written' as const,
        (error: unknown) => {
          expect(error).toBeInstanceOf(UnavailableError)
          return 'refused' as const
        },
      )
      outcomes[result] += 1
      const rows = await queryOnce<{ copies: number }>(
        url,
        'select count(*)::int as copies from droplets where name = $1',
        [name],
      )
      expect(rows[0]!.copies).toBe(result === 'written' ? 1 : 0)
    }
    expect(outcomes.written + outcomes.refused).toBe(ROUNDS)
  })
})
