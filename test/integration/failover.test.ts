import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTopology, type Topology, queryOnce } from '../../scripts/topology.js'
import { createDatabase, Droplet, UnavailableError, User, type Database } from '../../src/index.js'
import { needs } from '../helpers/tools.js'

/**
 * Primary failover on real servers: a primary and a streaming replica on loopback, the library connected with a
 * libpq host list naming both. The primary is stopped, the replica promoted (`pg_ctl promote`, what an HA manager
 * does), and a writer that never stopped writing must find the new primary by itself.
 */
const suite = needs('postgresql-15', 'the failover tests') ? describe : describe.skip

/** What a writer saw: the names whose insert was acknowledged, and every failure. */
interface WriterLog {
  readonly acknowledged: string[]
  readonly failures: unknown[]
  /** When each acknowledged write returned (ms since the epoch). */
  readonly at: number[]
}

/** Writes droplets one after another, as fast as it can, until `stop` resolves. */
function writer(db: Database, owner: User, stop: Promise<void>): { log: WriterLog; done: Promise<void> } {
  const log: WriterLog = { acknowledged: [], failures: [], at: [] }
  let stopped = false
  void stop.then(() => (stopped = true))
  const done = (async () => {
    for (let i = 0; !stopped; i++) {
      const name = `w-${i}`
      try {
        await db.scope(owner).repo(Droplet).create({ name, region: 'nyc3', size: 's' })
        log.acknowledged.push(name)
        log.at.push(Date.now())
      } catch (error) {
        log.failures.push(error)
        await sleep(20)
      }
    }
  })()
  return { log, done }
}

suite('primary failover with a host list', () => {
  let topology: Topology
  let db: Database
  let owner: User
  let replicaPort: number

  beforeAll(async () => {
    topology = await startTopology({ pgbouncer: false, redis: false })
    await queryOnce(topology.primaryUrl, 'create database app')
    replicaPort = Number(new URL(topology.replicaUrl!).port)
    db = await createDatabase({
      connection: topology.multiHostUrl('app'),
      replicas: [topology.urlFor(topology.replicaUrl!, 'app')],
      failoverTimeoutMs: 20_000,
      pool: { max: 4, acquireTimeoutMs: 20_000 },
      replicaCheckIntervalMs: 50,
      maxReplicaLagMs: 30_000,
    })
    await db.migrate.latest()
    owner = await db
      .system('test setup')
      .repo(User)
      .create({ email: 'owner@example.com', username: 'owner', passwordHash: 'x' })
    await topology.waitForReplica()
  }, 120_000)

  afterAll(async () => {
    await db?.close()
    await topology?.stop()
  })

  it('connects to the writable host of the list, and says which', async () => {
    const report = await db.health()
    expect(report.primary).toEqual({
      host: `127.0.0.1:${new URL(topology.primaryUrl).port}`,
      changedAt: null,
      changes: 0,
    })
    expect(report.database.inRecovery).toBe(false)
  })

  it('takes the host list as connection fields, skips a standby listed first, and refuses a write there', async () => {
    const primary = new URL(topology.primaryUrl)
    const fields = {
      hosts: [
        { host: '127.0.0.1', port: replicaPort },
        { host: '127.0.0.1', port: Number(primary.port) },
      ],
      user: decodeURIComponent(primary.username),
      database: 'app',
    }
    const listed = await createDatabase({ connection: fields, pool: { max: 1 } })
    try {
      expect((await listed.health()).primary).toMatchObject({ host: `127.0.0.1:${primary.port}`, changes: 0 })
      expect(await listed.scope(owner).repo(Droplet).count()).toBeGreaterThanOrEqual(0)
    } finally {
      await listed.close()
    }
    // `any` settles on the first host that answers, the standby: its writes are refused, typed, nothing written.
    const anyHost = await createDatabase({ connection: { ...fields, targetSessionAttrs: 'any' }, pool: { max: 1 } })
    try {
      expect((await anyHost.health()).database.inRecovery).toBe(true)
      const write = anyHost.scope(owner).repo(Droplet).create({ name: 'on-standby', region: 'nyc3', size: 's' })
      await expect(write).rejects.toThrow(UnavailableError)
      await expect(write).rejects.toMatchObject({ commitUnknown: false, message: expect.stringMatching(/read-only/) })
    } finally {
      await anyHost.close()
    }
  })

  it('stop the primary, promote the replica: writes resume on it, every acknowledged write is there', async () => {
    let release!: () => void
    const stop = new Promise<void>((resolve) => (release = resolve))
    const { log, done } = writer(db, owner, stop)
    while (log.acknowledged.length < 20) await sleep(10)

    await topology.stopPrimary()
    const stoppedAt = Date.now()
    // While no server takes writes, the replica keeps serving reads (the primary would make it wait for a host).
    const readStarted = Date.now()
    const reads = await db.scope(owner, {}, { consistency: 'replica' }).repo(Droplet).count()
    expect(reads).toBeGreaterThan(0)
    expect(Date.now() - readStarted).toBeLessThan(1_000)
    await sleep(1_000)
    const promotedAt = Date.now()
    await topology.promoteReplica()
    while (log.at.filter((t) => t > promotedAt).length < 10) {
      if (Date.now() - promotedAt > 30_000) throw new Error('no write succeeded within 30 s of the promotion')
      await sleep(20)
    }
    release()
    await done
    const firstAfter = log.at.find((t) => t > stoppedAt)!
    console.info(
      `failover: first write ${firstAfter - stoppedAt} ms after the primary stopped, ${firstAfter - promotedAt} ms after the promotion; ${log.failures.length} failed writes meanwhile`,
    )

    // Every failure meanwhile was typed: the server was gone or no host took writes.
    for (const failure of log.failures) expect(failure).toBeInstanceOf(UnavailableError)
    // Every acknowledged write is on the new primary, once.
    const names = (await db.knex('droplets').select<{ name: string }[]>('name')).map((d) => d.name)
    for (const name of log.acknowledged) expect(names).toContain(name)
    expect(new Set(names).size).toBe(names.length)

    const report = await db.health()
    expect(report.primary.host).toBe(`127.0.0.1:${replicaPort}`)
    expect(report.primary.changes).toBe(1)
    expect(Date.parse(report.primary.changedAt!)).toBeGreaterThan(promotedAt)
    expect(report.database.inRecovery).toBe(false)
    expect(await db.metrics()).toContain('wincloud_db_primary_changes_total 1')
  }, 90_000)
})
