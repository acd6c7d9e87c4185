import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAutoFailover, type AutoFailover } from '../../scripts/auto-failover.js'
import { createDatabase, Droplet, UnavailableError, User, type Database } from '../../src/index.js'
import { needs } from '../helpers/tools.js'

/**
 * Failover driven by a real HA manager: pg_auto_failover (Debian's postgresql-15-auto-failover) with a monitor and two
 * PostgreSQL 15 nodes on loopback. The library is given the URI the monitor prints (a libpq host list with
 * target_session_attrs=read-write) and must follow `pg_autoctl perform failover` by itself while a writer writes.
 */
const suite = needs('pg-auto-failover', 'the pg_auto_failover test') ? describe : describe.skip

suite('failover with pg_auto_failover', () => {
  let formation: AutoFailover
  let db: Database
  let owner: User

  beforeAll(async () => {
    formation = await startAutoFailover()
    db = await createDatabase({
      connection: formation.uriFor('app', 'app'),
      failoverTimeoutMs: 30_000,
      pool: { max: 4, acquireTimeoutMs: 30_000 },
    })
    await db.migrate.latest()
    owner = await db
      .system('test setup')
      .repo(User)
      .create({ email: 'owner@example.com', username: 'owner', passwordHash: 'x' })
  }, 180_000)

  afterAll(async () => {
    await db?.close()
    await formation?.stop()
  })

  it('follows pg_autoctl perform failover: writes resume on the new primary, every acknowledged write is there', async () => {
    const before = await formation.primaryPort()
    expect((await db.health()).primary.host).toBe(`127.0.0.1:${before}`)

    const acknowledged: string[] = []
    const at: number[] = []
    const failures: unknown[] = []
    let stopped = false
    const writing = (async () => {
      for (let i = 0; !stopped; i++) {
        try {
          await db
            .scope(owner)
            .repo(Droplet)
            .create({ name: `af-${i}`, region: 'nyc3', size: 's' })
          acknowledged.push(`af-${i}`)
          at.push(Date.now())
        } catch (error) {
          failures.push(error)
          await sleep(20)
        }
      }
    })()
    while (acknowledged.length < 20) await sleep(10)

    const started = Date.now()
    await formation.performFailover()
    const finished = Date.now()
    const after = await formation.primaryPort()
    expect(after).not.toBe(before)
    // Writes go on after the failover, on the new primary.
    const count = acknowledged.length
    while (acknowledged.length < count + 10) {
      if (Date.now() - finished > 30_000) throw new Error('no write succeeded within 30 s of the failover')
      await sleep(20)
    }
    stopped = true
    await writing

    const report = await db.health()
    expect(report.primary.host).toBe(`127.0.0.1:${after}`)
    expect(report.primary.changes).toBeGreaterThanOrEqual(1)
    expect(report.database.inRecovery).toBe(false)
    // Every failure meanwhile was typed; every acknowledged write is on the new primary, once.
    for (const failure of failures) expect(failure).toBeInstanceOf(UnavailableError)
    const names = (await db.knex('droplets').select<{ name: string }[]>('name')).map((d) => d.name)
    for (const name of acknowledged) expect(names).toContain(name)
    expect(new Set(names).size).toBe(names.length)
    // The longest wait between two acknowledged writes spans the failover.
    const gaps = at.slice(1).map((t, i) => [at[i]!, t] as const)
    const [gapFrom, gapTo] = gaps.reduce((a, b) => (b[1] - b[0] > a[1] - a[0] ? b : a))
    console.info(
      `pg_auto_failover: perform failover took ${finished - started} ms; writes paused ${gapTo - gapFrom} ms ` +
        `(${gapFrom - started} ms after it began); ${failures.length} failed writes`,
    )
  }, 120_000)
})
