import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { connect, createServer as createTcpServer, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createDatabase,
  Droplet,
  hashPassword,
  healthHandler,
  normalizeSql,
  User,
  ValidationError,
  type Database,
  type Logger,
  type SlowQuery,
} from '../../src/index.js'
import { createTestDatabase, openTestDatabase } from '../helpers/database.js'
import { needs, pythonFor } from '../helpers/tools.js'

/** Every call of a logger, as JSON lines. */
function capturingLogger(): { lines: string[]; logger: Logger } {
  const lines: string[] = []
  const log =
    (level: string) =>
    (fields: Record<string, unknown>, message?: string): void => {
      lines.push(JSON.stringify({ level, message, ...fields }))
    }
  return {
    lines,
    logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
  }
}

describe('normalizeSql', () => {
  it.each([
    ["select * from t where name = 'x''y' and n = 42", 'select * from t where name = ? and n = ?'],
    ['select * from t where id in ($1, $2, $3)', 'select * from t where id in (?...)'],
    ['select * from t where id in (?, ?)', 'select * from t where id in (?...)'],
    ['insert into t (a, b) values (?, ?), (?, ?), (?, ?)', 'insert into t (a, b) values (?, ?)...'],
    ['select  "col1"\n from   t2 limit 10', 'select "col1" from t2 limit ?'],
    ['select -1.5, x::text[] from t', 'select ?, x::text[] from t'],
    ["select $$it's$$, $tag$a $$ b$tag$, E'it\\'s' -- note 'x'\n from t", 'select ?, ?, ? from t'],
    ['select 1e10, .5, 0x1F /* secret 42 */ from t', 'select ?, ?, ? from t'],
  ])('%s', (sql, normalized) => {
    expect(normalizeSql(sql)).toBe(normalized)
  })
})

describe('query timing and slow queries', () => {
  let db: Database
  let cleanup: () => Promise<void>
  const captured = capturingLogger()

  beforeAll(async () => {
    ;({ db, cleanup } = await openTestDatabase({
      slowQueryMs: 40,
      logger: captured.logger,
      observability: { connectionLeakMs: 150 },
    }))
  })
  afterAll(async () => {
    await cleanup()
  })

  it('groups queries by normalized SQL, counting calls, rows and errors', async () => {
    db.stats.reset()
    const ids = Array.from({ length: 5 }, () => '00000000-0000-4000-8000-000000000000')
    await db.knex('droplets').whereIn('id', ids.slice(0, 2))
    await db.knex('droplets').whereIn('id', ids)
    await db.knex.raw(`select generate_series(1, 7) as n where 'secret-literal' <> ''`)
    await expect(db.knex.raw('select * from no_such_table')).rejects.toThrow()
    const { queries, totals, enabled } = db.stats()
    expect(enabled).toBe(true)
    const inList = queries.find((q) => q.sql.includes('where "id" in (?...)'))!
    expect(inList).toMatchObject({ calls: 2, errors: 0, rows: 0, operation: 'select' })
    expect(inList.id).toMatch(/^[0-9a-f]{12}$/)
    const series = queries.find((q) => q.sql.startsWith('select generate_series'))!
    expect(series).toMatchObject({ calls: 1, rows: 7, sql: 'select generate_series(?, ?) as n where ? <> ?' })
    expect(queries.find((q) => q.sql.includes('no_such_table'))).toMatchObject({ calls: 1, errors: 1 })
    expect(totals).toMatchObject({ calls: 4, errors: 1 })
    for (const q of queries) expect(q.maxMs).toBeGreaterThanOrEqual(q.p95Ms)
    expect(JSON.stringify(queries)).not.toContain('secret-literal')
  })

  it('keeps the wait for a connection apart from the query, and counts failed acquisitions', async () => {
    db.stats.reset()
    await Promise.all(Array.from({ length: 15 }, () => db.knex.raw('select pg_sleep(0.01)')))
    const { connections, queries } = db.stats()
    expect(connections.acquires).toBe(15)
    // 15 calls on a pool of 10: some waited for a connection, and the queries themselves did not include it.
    expect(connections.maxMs).toBeGreaterThan(5)
    const sleepQuery = queries.find((q) => q.sql.includes('pg_sleep'))!
    expect(sleepQuery.calls).toBe(15)
    expect(sleepQuery.maxMs).toBeLessThan(connections.maxMs + 30)
  })

  it('reports slow queries with bindings redacted, to listeners, the log and the report', async () => {
    db.stats.reset()
    const heard: SlowQuery[] = []
    const stop = db.stats.onSlowQuery((q) => heard.push(q))
    db.stats.onSlowQuery(() => {
      throw new Error('a broken listener does not break the query')
    })
    await db.knex.raw('select pg_sleep(0.06), ?::text as token', ['tok-very-secret-value'])
    await db.knex.raw('select 1')
    stop()
    await db.knex.raw('select pg_sleep(0.05)')
    expect(heard).toHaveLength(1)
    expect(heard[0]).toMatchObject({ sql: 'select pg_sleep(?), ?::text as token', bindings: 1, failed: false })
    expect(heard[0]!.durationMs).toBeGreaterThanOrEqual(40)
    const report = db.stats()
    expect(report.totals.slow).toBe(2)
    expect(report.slowQueries.map((q) => q.sql)).toEqual(['select pg_sleep(?), ?::text as token', 'select pg_sleep(?)'])
    const slowLines = captured.lines.filter((l) => l.includes('"slow query"') && l.includes('::text as token'))
    expect(slowLines).toHaveLength(1)
    expect(slowLines[0]).toContain('[1 redacted]')
    expect(captured.lines.join('\n')).not.toContain('tok-very-secret-value')
    expect(captured.lines.some((l) => l.includes('a slow-query listener threw'))).toBe(true)
  })

  it('reports a connection held past connectionLeakMs once, with the stack that acquired it', async () => {
    const before = captured.lines.length
    await db.knex.transaction(async (trx) => {
      await trx.raw('select 1')
      await sleep(400)
      // While held: in the report and in health.
      expect(db.stats().connections.leaks).toHaveLength(1)
      expect(db.stats().connections.leaks[0]!.stack).toContain('observability.test.ts')
      const health = await db.health()
      expect(health.status).toBe('degraded')
      expect(health.reasons).toContain('1 connection held past observability.connectionLeakMs')
    })
    const leakLines = captured.lines.slice(before).filter((l) => l.includes('connectionLeakMs'))
    expect(leakLines).toHaveLength(1)
    expect(leakLines[0]).toContain('observability.test.ts')
    expect(db.stats().connections.leaks).toEqual([])
  })

  it('logs nothing that is a secret: passwords, encrypted values, keys, bindings', async () => {
    const keys = { k1: randomBytes(32).toString('base64') }
    const blind = randomBytes(32).toString('base64')
    const { lines, logger } = capturingLogger()
    const { db: secretDb, cleanup: close } = await openTestDatabase({
      slowQueryMs: 0, // every query is "slow": every one is logged
      logger,
      encryption: { keys, current: 'k1', blindIndexKey: blind },
    })
    try {
      const passwordHash = await hashPassword('Correct-Horse-Battery-9', { cost: 10 })
      const user = await secretDb
        .system('t')
        .repo(User)
        .create({ email: 'sec@example.com', username: 'sec', passwordHash, apiToken: 'tok-plain-4242' })
      const repo = secretDb.scope(user).repo(Droplet)
      const droplet = await repo.create({ name: 'sec-1', region: 'nyc3', size: 's', adminPassword: 'Admin-Pa55-777' })
      await repo.update(droplet.id, { adminPassword: 'Admin-Pa55-888' })
      expect((await repo.getById(droplet.id)).adminPassword).toBe('Admin-Pa55-888')
      await secretDb
        .system('t')
        .repo(User)
        .list({ filter: { apiToken: 'tok-plain-4242' } })
      await secretDb.auth.login('sec@example.com', 'Correct-Horse-Battery-9')
      await expect(secretDb.auth.login('sec@example.com', 'wrong-Password-1')).rejects.toThrow()
      await secretDb.crypto.rotate()
      const stored = (await secretDb.knex('droplets').where('id', droplet.id).first()) as Record<string, string>
      const text = lines.join('\n')
      expect(lines.length).toBeGreaterThan(10)
      for (const secret of [
        'Correct-Horse-Battery-9',
        'wrong-Password-1',
        'tok-plain-4242',
        'Admin-Pa55-777',
        'Admin-Pa55-888',
        stored.admin_password_ciphertext!,
        user.passwordHash,
        keys.k1,
        blind,
      ]) {
        expect(text).not.toContain(secret)
      }
    } finally {
      await close()
    }
  })

  it('can be turned off: no timing, the report says so', async () => {
    const { db: quiet, cleanup: close } = await openTestDatabase({ observability: { queryTiming: false } })
    try {
      await quiet.knex.raw('select 1')
      const report = quiet.stats()
      expect(report.enabled).toBe(false)
      expect(report.queries).toEqual([])
      expect(report.connections.acquires).toBeGreaterThan(0)
    } finally {
      await close()
    }
  })
})

describe('db.health()', () => {
  let db: Database
  let cleanup: () => Promise<void>
  const keys = { k1: randomBytes(32).toString('base64') }

  beforeAll(async () => {
    ;({ db, cleanup } = await openTestDatabase({
      encryption: { keys, current: 'k1' },
      pool: { max: 4, acquireTimeoutMs: 2_000 },
    }))
    const user = await db
      .system('t')
      .repo(User)
      .create({ email: 'h@example.com', username: 'hh-ops', passwordHash: 'x' })
    await db
      .scope(user)
      .repo(Droplet)
      .bulkCreate(
        Array.from({ length: 25 }, (_, i) => ({ name: `h-${i}`, region: 'nyc3', size: 's', adminPassword: `pw-${i}` })),
      )
  })
  afterAll(async () => {
    await cleanup()
  })

  it('is healthy on a migrated database, with server, pool, tables and key ids, and no secret', async () => {
    const report = await db.health()
    expect(report).toMatchObject({
      status: 'healthy',
      reasons: [],
      database: { serverVersion: expect.stringMatching(/^15\./), inRecovery: false },
      pool: { min: 0, max: 4, pendingAcquires: 0 },
      migrations: { pending: [] },
      replicas: [],
      encryption: { currentKey: 'k1', keys: ['k1'] },
    })
    expect(Object.keys(report.tables).sort()).toEqual(['audit_logs', 'droplets', 'users'])
    expect(Date.parse(report.checkedAt)).toBeGreaterThan(Date.now() - 60_000)
    expect(report.error).toBeUndefined()
    const text = JSON.stringify(report)
    expect(text).not.toContain(keys.k1)
    expect(text).not.toMatch(/postgres:\/\//)
  })

  it('counts exactly on request, and the values each key protects', async () => {
    const report = await db.health({ exactCounts: true, keyUsage: true, tables: ['wincloud_data_migrations', 'nope'] })
    expect(report.tables.droplets).toEqual({ rows: 25, exact: true })
    expect(report.tables.users).toEqual({ rows: 1, exact: true })
    expect(report.tables.wincloud_data_migrations).toEqual({ rows: 5, exact: true })
    expect(report.tables.nope).toBeUndefined()
    expect(report.encryption?.keyUsage).toEqual({ k1: 25 })
  })

  it('does not take a pooled connection, and concurrent checks share one round trip', async () => {
    db.stats.reset()
    const [a, b] = await Promise.all([db.health(), db.health()])
    expect(a).toBe(b)
    expect(db.stats().connections.acquires).toBe(0)
  })

  it('is degraded while callers wait for connections, and says why', async () => {
    // knex builders run when awaited: then() starts them now.
    const sleepers = Array.from({ length: 6 }, () => db.knex.raw('select pg_sleep(0.6)').then(() => undefined))
    await sleep(150)
    const report = await db.health({ timeoutMs: 500 })
    expect(report.status).toBe('degraded')
    expect(report.pool).toMatchObject({ used: 4, max: 4, pendingAcquires: 2 })
    expect(report.reasons).toEqual(
      expect.arrayContaining(['2 callers wait for a connection', 'every pooled connection is in use']),
    )
    await Promise.all(sleepers)
    expect((await db.health()).status).toBe('healthy')
  })

  it('is degraded with migrations pending, and over the latency threshold', async () => {
    const fresh = await createTestDatabase()
    const bare = await createDatabase({ connection: fresh.url })
    try {
      const report = await bare.health()
      expect(report.status).toBe('degraded')
      expect(report.migrations.pending).toEqual([
        '0001_initial',
        '0002_audit',
        '0003_encrypted_columns',
        '0004_audit_chain_hardening',
        '0005_legacy_token_inventory',
      ])
      expect(report.tables).toEqual({})
    } finally {
      await bare.close()
      await fresh.drop()
    }
    const slow = await db.health({ degradedLatencyMs: 0 })
    expect(slow.status).toBe('degraded')
    expect(slow.reasons).toEqual(['round trip over 0 ms'])
  })

  it('refuses bad options with a ValidationError', async () => {
    await expect(db.health({ timeoutMs: 0 })).rejects.toBeInstanceOf(ValidationError)
    await expect(db.health({ timeoutMs: 1.5 })).rejects.toBeInstanceOf(ValidationError)
    await expect(db.health({ tables: ['users; drop table users'] })).rejects.toBeInstanceOf(ValidationError)
    await expect(db.health({ degradedLatencyMs: -1 })).rejects.toBeInstanceOf(ValidationError)
    expect(await db.knex('users').count({ n: '*' })).toEqual([{ n: '1' }])
  })

  it('renders Prometheus text, with the health gauge unless told not to, and no key', async () => {
    await db.knex.raw('select 1')
    const text = await db.metrics()
    expect(text).toMatch(/^# HELP wincloud_db_pool_connections /)
    expect(text).toContain('wincloud_db_up 1')
    expect(text).not.toContain(keys.k1)
    const withoutHealth = await db.metrics({ health: false })
    expect(withoutHealth).not.toContain('wincloud_db_up')
  })

  // The same text through the Prometheus client's own parser: python3 with prometheus_client (../helpers/tools.ts).
  const parser = needs('prometheus-client', 'the Prometheus client parser check of db.metrics()')
  it.skipIf(!parser)('renders Prometheus text that the Prometheus client parser accepts', async () => {
    await db.knex.raw('select 1')
    const text = await db.metrics()
    const families = JSON.parse(
      execFileSync(
        pythonFor('prometheus-client')!,
        [
          '-c',
          `import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    out[family.name] = {"type": family.type, "samples": [[s.name, s.labels, s.value] for s in family.samples]}
print(json.dumps(out))`,
        ],
        { input: text, encoding: 'utf8' },
      ),
    ) as Record<string, { type: string; samples: [string, Record<string, string>, number][] }>
    expect(families.wincloud_db_pool_connections?.type).toBe('gauge')
    expect(families.wincloud_db_up?.samples).toEqual([['wincloud_db_up', {}, 1]])
    expect(families.wincloud_db_query_duration_seconds?.type).toBe('histogram')
    // The parser strips _total from counter family names.
    expect(families.wincloud_db_queries?.type).toBe('counter')
    const inf = families.wincloud_db_query_duration_seconds!.samples.find(
      ([name, labels]) => name.endsWith('_bucket') && labels.operation === 'select' && labels.le === '+Inf',
    )
    expect(inf?.[2]).toBeGreaterThan(0)
    expect(families.wincloud_db_table_rows?.samples).toContainEqual([
      'wincloud_db_table_rows',
      { table: 'droplets', exact: 'false' },
      expect.any(Number),
    ])
  })
})

/** A TCP proxy that can stop forwarding bytes while keeping every socket open: a network black hole. */
async function blackHoleProxy(
  target: URL,
): Promise<{ url: string; swallow(on: boolean): void; close(): Promise<void> }> {
  let swallowing = false
  const sockets = new Set<Socket>()
  const server = createTcpServer((client) => {
    const upstream = connect(Number(target.port), target.hostname)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('error', () => undefined).on('close', () => sockets.delete(socket))
    }
    client.on('data', (chunk) => void (swallowing || upstream.write(chunk)))
    upstream.on('data', (chunk) => void (swallowing || client.write(chunk)))
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const proxied = new URL(target)
  proxied.port = String((server.address() as { port: number }).port)
  return {
    url: proxied.toString(),
    swallow: (on) => {
      swallowing = on
    },
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

describe('db.health() when the network swallows every packet', () => {
  it('answers unhealthy within its timeout, drops the dead connection, and recovers when the network does', async () => {
    const fresh = await createTestDatabase()
    const proxy = await blackHoleProxy(new URL(fresh.url))
    const db = await createDatabase({ connection: proxy.url, pool: { acquireTimeoutMs: 1_000 } })
    try {
      await db.migrate.latest()
      expect((await db.health()).status).toBe('healthy')
      proxy.swallow(true)
      for (let i = 0; i < 2; i++) {
        const started = performance.now()
        const report = await db.health({ timeoutMs: 300 })
        const elapsed = performance.now() - started
        expect(report.status).toBe('unhealthy')
        expect(report.error).toBe('no answer within 300 ms')
        expect(elapsed).toBeLessThan(300 + 200)
      }
      // Pooled queries meanwhile hang in the same hole; the health check did not wait for them.
      proxy.swallow(false)
      let status = ''
      for (let i = 0; i < 50 && status !== 'healthy'; i++) {
        status = (await db.health({ timeoutMs: 500 })).status
        if (status !== 'healthy') await sleep(100)
      }
      expect(status).toBe('healthy')
    } finally {
      await db.close({ timeoutMs: 1_000 })
      await proxy.close()
      await fresh.drop()
    }
  })
})

describe('healthHandler over HTTP', () => {
  let db: Database
  let cleanup: () => Promise<void>
  let server: Server
  let base: string

  beforeAll(async () => {
    ;({ db, cleanup } = await openTestDatabase())
    const ready = healthHandler(db, { check: 'ready', timeoutMs: 500 })
    const live = healthHandler(db, { check: 'live' })
    server = createServer((req, res) => void (req.url === '/health/live' ? live(req, res) : ready(req, res)))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const address = server.address() as { port: number }
    base = `http://127.0.0.1:${address.port}`
  })
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve))
    await cleanup()
  })

  it('answers readiness with the report (200) and liveness without the database', async () => {
    const ready = await fetch(`${base}/health/ready`)
    expect(ready.status).toBe(200)
    expect(ready.headers.get('content-type')).toMatch(/application\/json/)
    expect(ready.headers.get('cache-control')).toBe('no-store')
    const body = (await ready.json()) as { status: string; pool: unknown }
    expect(body.status).toBe('healthy')
    expect(body.pool).toBeDefined()
    const live = await fetch(`${base}/health/live`)
    expect(live.status).toBe(200)
    expect(((await live.json()) as { status: string }).status).toBe('alive')
  })

  it('answers 503 when the database is unhealthy, and liveness stays 200', async () => {
    await db.close()
    const ready = await fetch(`${base}/health/ready`)
    expect(ready.status).toBe(503)
    const body = (await ready.json()) as { status: string; error: string }
    expect(body.status).toBe('unhealthy')
    expect(body.error).not.toMatch(/postgres:\/\/|password/)
    expect((await fetch(`${base}/health/live`)).status).toBe(200)
  })

  it('speaks to a Fastify reply through code/header/send', async () => {
    const sent: { status?: number; headers: Record<string, string>; body?: string } = { headers: {} }
    const reply = {
      sent: false,
      code(status: number) {
        sent.status = status
        return reply
      },
      header(name: string, value: string) {
        sent.headers[name] = value
        return reply
      },
      send(body: string) {
        sent.body = body
      },
    }
    await healthHandler(db, { check: 'live' })({}, reply)
    expect(sent.status).toBe(200)
    expect(sent.headers['content-type']).toMatch(/json/)
    expect(JSON.parse(sent.body!)).toMatchObject({ status: 'alive' })
  })
})
