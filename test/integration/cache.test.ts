import { randomBytes, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRedis, type RedisServer } from '../../scripts/topology.js'
import { ConfigError, Droplet, User, type Database } from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'
import { needs } from '../helpers/tools.js'

/**
 * The Redis read cache against a real redis-server on loopback. A read served from the cache is told by the
 * database: the row is changed behind the library's back (raw SQL, which invalidates nothing), so a cached read
 * still shows the old value and a database read the new one.
 */
const suite = needs('redis', 'the cache tests') ? describe : describe.skip

suite('the Redis read cache', () => {
  let redis: RedisServer
  let db: Database
  let cleanup: () => Promise<void>
  let alice: User
  let bob: User
  let admin: User
  const keys = { k1: randomBytes(32).toString('base64') }

  /** Renames a droplet behind the library's back: a cached read keeps showing the old name. */
  const rename = (id: string, name: string) => db.knex('droplets').where({ id }).update({ name })

  beforeAll(async () => {
    redis = await startRedis()
    ;({ db, cleanup } = await openTestDatabase({
      cache: { redis: redis.url, ttlSeconds: 60, timeoutMs: 100, prefix: `t${randomBytes(3).toString('hex')}:` },
      encryption: { keys, current: 'k1' },
    }))
    const system = db.system('setup').repo(User)
    alice = await system.create({ email: 'alice@example.com', username: 'alice', passwordHash: 'x' })
    bob = await system.create({ email: 'bob@example.com', username: 'bob', passwordHash: 'x' })
    admin = await system.create({ email: 'root@example.com', username: 'root', passwordHash: 'x', role: 'admin' })
  })
  afterAll(async () => {
    await cleanup?.()
    await redis?.stop()
  })

  it('serves getById and count from the cache after the first read', async () => {
    const repo = db.scope(alice).repo(Droplet)
    const d = await repo.create({ name: 'c-1', region: 'nyc3', size: 's' })
    expect((await repo.getById(d.id)).name).toBe('c-1') // miss: from the database, now cached
    const before = await repo.count()
    await rename(d.id, 'renamed-behind')
    await db.knex('droplets').insert({ ...(await db.knex('droplets').where({ id: d.id }).first()), id: randomUUID() })
    expect((await repo.getById(d.id)).name).toBe('c-1') // hit
    expect(await repo.count()).toBe(before) // hit
    const status = (await db.health()).cache!
    expect(status.state).toBe('ok')
    expect(status.hits).toBeGreaterThanOrEqual(2)
  })

  it("never serves one actor's cached rows to another", async () => {
    const mine = await db.scope(alice).repo(Droplet).create({ name: 'alice-only', region: 'nyc3', size: 's' })
    expect((await db.scope(alice).repo(Droplet).getById(mine.id)).name).toBe('alice-only')
    // Bob asks for the same id: not his row, and Alice's cached copy is not his either.
    expect(await db.scope(bob).repo(Droplet).findById(mine.id)).toBeUndefined()
    expect(await db.scope(bob).repo(Droplet).findById(mine.id)).toBeUndefined()
    // The admin sees it, from the database the first time (its own key).
    await rename(mine.id, 'seen-by-admin')
    expect((await db.scope(admin).repo(Droplet).getById(mine.id)).name).toBe('seen-by-admin')
    expect((await db.scope(alice).repo(Droplet).getById(mine.id)).name).toBe('alice-only') // Alice's cached copy
  })

  it('is invalidated by every write path through the library', async () => {
    const repo = db.scope(alice).repo(Droplet)
    const d = await repo.create({ name: 'inv', region: 'nyc3', size: 's' })
    const paths: [string, () => Promise<unknown>][] = [
      ['update', () => repo.update(d.id, { size: 'm' })],
      ['bulkUpdate by ids', () => repo.bulkUpdate([d.id], { status: 'stopped' })],
      ['bulkUpdate by filter', () => repo.bulkUpdate({ filter: { name: 'inv' } }, { status: 'active' })],
      ['bulkUpdateEach', () => repo.bulkUpdateEach([{ id: d.id, size: 'l' }])],
      ['bulkCreate', () => repo.bulkCreate([{ name: 'inv-2', region: 'nyc3', size: 's' }])],
      [
        'repo.query() patch',
        async () => {
          await repo.query().patch({ size: 'xl' }).where('id', d.id)
        },
      ],
      ['a transaction', () => db.scope(alice).transaction((tx) => tx.repo(Droplet).update(d.id, { size: 's' }))],
      ['a write by another actor (admin)', () => db.scope(admin).repo(Droplet).update(d.id, { region: 'ams3' })],
    ]
    for (const [path, write] of paths) {
      await repo.getById(d.id) // cached
      await repo.count()
      await rename(d.id, `before ${path}`)
      await write()
      // The write bumped the table's version: the next reads come from the database.
      expect((await repo.getById(d.id)).name, path).toBe(`before ${path}`)
    }
    // Delete too: the cached row is gone with it.
    await repo.getById(d.id)
    await repo.delete(d.id)
    expect(await repo.findById(d.id)).toBeUndefined()
  })

  it('keeps encrypted values encrypted in Redis', async () => {
    const repo = db.scope(alice).repo(Droplet)
    const d = await repo.create({ name: 'enc', region: 'nyc3', size: 's', adminPassword: 'Sup3r-Secret-Pw' })
    await repo.getById(d.id)
    expect((await repo.getById(d.id)).adminPassword).toBe('Sup3r-Secret-Pw') // from the cache, decrypted on read
    const { Redis } = await import('ioredis')
    const client = new Redis(redis.url)
    try {
      const names = await client.keys('*')
      const values = await Promise.all(names.map((k) => client.get(k).catch(() => '')))
      const dump = values.join('\n')
      expect(dump).toContain('v1.k1.') // the envelope is what is cached
      expect(dump).not.toContain('Sup3r-Secret-Pw')
    } finally {
      client.disconnect()
    }
  })

  it('falls back to the database when Redis is down or frozen, and says so in health', async () => {
    const repo = db.scope(alice).repo(Droplet)
    const d = await repo.create({ name: 'outage', region: 'nyc3', size: 's' })
    await repo.getById(d.id)
    // Frozen: connected, but nothing answers. Reads give up on it after timeoutMs and ask the database.
    redis.pause()
    try {
      await rename(d.id, 'while-frozen')
      const started = performance.now()
      expect((await repo.getById(d.id)).name).toBe('while-frozen')
      expect(performance.now() - started).toBeLessThan(2_000)
      expect((await db.health()).cache?.state).not.toBe('ok')
    } finally {
      redis.resume()
    }
    // Down: reads go to the database, writes still succeed (their invalidation waits for Redis).
    await redis.stop()
    try {
      await rename(d.id, 'while-down')
      expect((await repo.getById(d.id)).name).toBe('while-down')
      await repo.update(d.id, { size: 'm' })
      const report = await db.health()
      expect(report.cache?.state).toBe('down')
      expect(report.status).toBe('degraded')
      expect(report.reasons).toContain('cache down: reads go to the database')
    } finally {
      await redis.start()
    }
    // Back: the cache serves again.
    for (let i = 0; i < 100 && (await db.health()).cache?.state === 'down'; i++) await sleep(50)
    await repo.getById(d.id)
    await rename(d.id, 'after-return')
    expect((await repo.getById(d.id)).name).not.toBe('after-return')
  })

  it('refuses a bad cache configuration', async () => {
    const { createDatabase } = await import('../../src/index.js')
    await expect(
      createDatabase({ connection: 'postgres://x@127.0.0.1:1/x', cache: { redis: 'http://x' } }),
    ).rejects.toThrow(ConfigError)
    await expect(
      createDatabase({ connection: 'postgres://x@127.0.0.1:1/x', cache: { redis: redis.url, ttlSeconds: 0 } }),
    ).rejects.toThrow(/cache.ttlSeconds/)
  })
})
