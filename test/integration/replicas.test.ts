import { randomBytes, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTopology, type Topology, queryOnce } from '../../scripts/topology.js'
import {
  createDatabase,
  Droplet,
  InvalidCursorError,
  User,
  type Database,
  type ReplicaStatus,
} from '../../src/index.js'
import { needs } from '../helpers/tools.js'

/**
 * Read replicas against a real primary and a real streaming replica (pg_basebackup -R) on loopback. Which server
 * answered is told by the data: with WAL replay paused on the replica, a row written since exists only on the
 * primary.
 */
const suite = needs('postgresql-15', 'the replica tests') ? describe : describe.skip

suite('read replicas', () => {
  let topology: Topology
  let primaryUrl: string
  let replicaUrl: string
  let db: Database
  let alice: User
  let admin: User

  /** Waits until the monitor has seen the replica in `state` (and, for 'ok', replayed everything so far). */
  async function replicaState(database: Database, state: ReplicaStatus['state'], withinMs = 10_000): Promise<void> {
    const deadline = Date.now() + withinMs
    for (;;) {
      const [replica] = (await database.health()).replicas
      if (replica?.state === state) return
      if (Date.now() > deadline)
        throw new Error(`replica not ${state} within ${withinMs} ms: ${JSON.stringify(replica)}`)
      await sleep(25)
    }
  }

  /** Waits until the replica has replayed everything and the monitor has checked it since. */
  async function caughtUp(): Promise<void> {
    await topology.waitForReplica()
    await sleep(150)
  }

  /** A droplet written straight into the primary, past the library: no actor's write is noted. */
  async function sneakDroplet(owner: User, name: string): Promise<string> {
    const id = randomUUID()
    await queryOnce(
      primaryUrl,
      `insert into droplets (id, user_id, name, region, size, status) values ($1, $2, $3, 'nyc3', 's', 'active')`,
      [id, owner.id, name],
    )
    return id
  }

  beforeAll(async () => {
    topology = await startTopology({ pgbouncer: false, redis: false })
    await queryOnce(topology.primaryUrl, 'create database app')
    primaryUrl = topology.urlFor(topology.primaryUrl, 'app')
    replicaUrl = topology.urlFor(topology.replicaUrl!, 'app')
    db = await createDatabase({
      connection: primaryUrl,
      replicas: [replicaUrl],
      maxReplicaLagMs: 60_000,
      replicaCheckIntervalMs: 20,
    })
    await db.migrate.latest()
    const system = db.system('test setup').repo(User)
    alice = await system.create({ email: 'alice@example.com', username: 'alice', passwordHash: 'x' })
    admin = await system.create({ email: 'root@example.com', username: 'root', passwordHash: 'x', role: 'admin' })
    await caughtUp()
  }, 120_000)

  afterAll(async () => {
    await db?.close()
    await topology?.stop()
  })

  it('reports the replica in health, and it answers from recovery', async () => {
    await replicaState(db, 'ok')
    const report = await db.health()
    expect(report.replicas).toHaveLength(1)
    expect(report.replicas[0]).toMatchObject({
      state: 'ok',
      lagMs: 0,
      replayLsn: expect.stringMatching(/^[0-9A-F]+\//),
    })
    expect(report.replicas[0]!.name).not.toMatch(/postgres:|@/)
    // Each replica's own pool is in the report and in the metrics, beside its state and lag.
    expect(report.replicas[0]!.pool).toMatchObject({ max: 10, pendingAcquires: 0 })
    const metrics = await db.metrics()
    const name = report.replicas[0]!.name
    expect(metrics).toContain(`wincloud_db_replica_up{replica="${name}"} 1`)
    expect(metrics).toMatch(new RegExp(`wincloud_db_replica_pool_connections\\{replica="${name}",state="free"\\} \\d+`))
    expect(metrics).toContain(`wincloud_db_replica_lag_seconds{replica="${name}"}`)
    expect(await queryOnce<{ r: boolean }>(replicaUrl, 'select pg_is_in_recovery() as r')).toEqual([{ r: true }])
  })

  it('reads your own writes from the primary while the replica lags, and stale reads from the replica', async () => {
    await topology.pauseReplay()
    try {
      const mine = await db.scope(alice).repo(Droplet).create({ name: 'ryw-1', region: 'nyc3', size: 's' })
      // Alice just wrote: her session reads go to the primary and see it.
      expect((await db.scope(alice).repo(Droplet).getById(mine.id)).name).toBe('ryw-1')
      expect((await db.scope(alice).repo(Droplet).list()).map((d) => d.name)).toContain('ryw-1')
      // The admin did not write: its session reads go to the paused replica, which has not seen it…
      expect(await db.scope(admin).repo(Droplet).findById(mine.id)).toBeUndefined()
      // …unless it asks for the primary.
      expect(await db.scope(admin, {}, { consistency: 'primary' }).repo(Droplet).findById(mine.id)).toBeDefined()
      // Alice asking for the replica explicitly gets the replica's stale view.
      expect(await db.scope(alice, {}, { consistency: 'replica' }).repo(Droplet).findById(mine.id)).toBeUndefined()
      expect(await db.scope(alice, {}, { consistency: 'replica' }).repo(Droplet).count()).toBe(0)
      // System scopes read from the primary by default.
      expect(await db.system('job').repo(Droplet).findById(mine.id)).toBeDefined()
    } finally {
      await topology.resumeReplay()
    }
  })

  it('sends the actor back to the replica once it has replayed past the write', async () => {
    await caughtUp()
    await topology.pauseReplay()
    try {
      const sneaked = await sneakDroplet(alice, 'sneaked')
      // Alice's last write is replayed: her session reads are the replica's, which lacks the sneaked row.
      expect(await db.scope(alice).repo(Droplet).findById(sneaked)).toBeUndefined()
      expect(await db.scope(alice, {}, { consistency: 'primary' }).repo(Droplet).findById(sneaked)).toBeDefined()
      // A transaction counts as a write: after it, her reads are the primary's again.
      await db.scope(alice).transaction(async (tx) => {
        await tx.repo(Droplet).create({ name: 'in-tx', region: 'nyc3', size: 's' })
      })
      expect(await db.scope(alice).repo(Droplet).findById(sneaked)).toBeDefined()
    } finally {
      await topology.resumeReplay()
    }
  })

  it('routes bulk writes and builder writes through read-your-writes too', async () => {
    await caughtUp()
    await topology.pauseReplay()
    try {
      const repo = db.scope(alice).repo(Droplet)
      await sleep(100)
      const [created] = await repo.bulkCreate([{ name: 'bulk-ryw', region: 'nyc3', size: 's' }])
      expect((await repo.getById(created!.id)).name).toBe('bulk-ryw')
    } finally {
      await topology.resumeReplay()
    }
  })

  it('skips a replica that lags beyond maxReplicaLagMs, and uses it again when it catches up', async () => {
    const strict = await createDatabase({
      connection: primaryUrl,
      replicas: [replicaUrl],
      maxReplicaLagMs: 300,
      replicaCheckIntervalMs: 20,
    })
    try {
      await replicaState(strict, 'ok')
      await topology.pauseReplay()
      try {
        const sneaked = await sneakDroplet(alice, 'while-lagging')
        await replicaState(strict, 'lagging')
        const report = await strict.health()
        expect(report.replicas[0]!.lagMs).toBeGreaterThan(300)
        expect(report.status).toBe('degraded')
        expect(report.reasons).toContain('1 of 1 replica serves no reads')
        // Beyond it, even an explicit replica read goes to the primary.
        expect(await strict.scope(admin, {}, { consistency: 'replica' }).repo(Droplet).findById(sneaked)).toBeDefined()
      } finally {
        await topology.resumeReplay()
      }
      await replicaState(strict, 'ok')
    } finally {
      await strict.close()
    }
  })

  it('survives the replica going down: reads fall back to the primary, and return when it is back', async () => {
    await caughtUp()
    const reader = db.scope(admin, {}, { consistency: 'replica' }).repo(Droplet)
    const before = await reader.count()
    await topology.stopReplica()
    try {
      // The first read may meet the dead connection: it is retried on the primary, never failed.
      for (let i = 0; i < 5; i++) expect(await reader.count()).toBe(before)
      await replicaState(db, 'down')
      const report = await db.health()
      expect(report.replicas[0]).toMatchObject({ state: 'down', error: expect.stringMatching(/did not answer/) })
      expect(JSON.stringify(report.replicas)).not.toMatch(/postgres:\/\//)
    } finally {
      await topology.startReplica()
    }
    await replicaState(db, 'ok', 20_000)
    await caughtUp()
    await topology.pauseReplay()
    try {
      const sneaked = await sneakDroplet(alice, 'after-return')
      expect(await reader.findById(sneaked)).toBeUndefined() // the replica answers again
    } finally {
      await topology.resumeReplay()
    }
  })

  it('keeps read-your-writes across instances with a consistency token, and refuses a forged or borrowed one', async () => {
    // Two handles on the same primary and replica, sharing the signing secret: two app instances.
    const secret = randomBytes(32).toString('base64')
    const shared = { replicas: [replicaUrl], maxReplicaLagMs: 60_000, replicaCheckIntervalMs: 20 }
    const one = await createDatabase({ connection: primaryUrl, ...shared, pagination: { cursorSecrets: [secret] } })
    const two = await createDatabase({ connection: primaryUrl, ...shared, pagination: { cursorSecrets: [secret] } })
    try {
      await replicaState(two, 'ok')
      await caughtUp()
      await topology.pauseReplay()
      try {
        const writer = one.scope(alice)
        const written = await writer.repo(Droplet).create({ name: 'token-1', region: 'nyc3', size: 's' })
        const token = await writer.consistencyToken()
        expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/)
        expect(token).not.toContain(written.id)
        // The other instance never saw alice write: without the token it reads the paused replica…
        expect(await two.scope(alice).repo(Droplet).findById(written.id)).toBeUndefined()
        // …with it, a server that has the write.
        expect((await two.scope(alice, {}, { after: token }).repo(Droplet).getById(written.id)).name).toBe('token-1')
        expect(await two.scope(alice, {}, { after: token, consistency: 'replica' }).repo(Droplet).count()).toBe(
          await one.scope(alice, {}, { consistency: 'primary' }).repo(Droplet).count(),
        )
        // Altered, another actor's, another deployment's, or a cursor: refused like a forged cursor.
        const altered = `${token.slice(0, 3)}${token[3] === 'A' ? 'B' : 'A'}${token.slice(4)}`
        const page = await one
          .scope(alice)
          .repo(Droplet)
          .list({ page: { size: 1 } })
        const stranger = await createDatabase({ connection: primaryUrl, ...shared })
        try {
          for (const [actor, forged, handle] of [
            [alice, altered, two],
            [admin, token, two],
            [alice, token, stranger],
            [alice, page.pageInfo.endCursor!, two],
            [alice, 'not a token', two],
          ] as const) {
            expect(() => handle.scope(actor, {}, { after: forged })).toThrow(InvalidCursorError)
          }
        } finally {
          await stranger.close()
        }
        await expect(one.scope(alice).transaction(async (tx) => tx.consistencyToken())).rejects.toThrow(
          /after the transaction has committed/,
        )
      } finally {
        await topology.resumeReplay()
      }
      // Once the replica has replayed past it, the token is satisfied there too.
      await caughtUp()
      const token = await one.scope(alice).consistencyToken()
      expect(await two.scope(alice, {}, { after: token }).repo(Droplet).count()).toBeGreaterThan(0)
    } finally {
      await one.close()
      await two.close()
    }
  })

  it('refuses bad scope options', () => {
    expect(() => db.scope(alice, {}, { consistency: 'eventual' as never })).toThrow(/consistency/)
    expect(() => db.scope(alice, {}, { stale: true } as never)).toThrow(/not a scope option/)
  })
})
