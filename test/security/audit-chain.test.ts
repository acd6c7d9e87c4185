/**
 * Attack class: breaking or fooling the audit hash chain.
 *
 * From the application's database role (exactly the grants docs/audit-log.md lists, plus `wincloud_scoped` with
 * row-level security), an attacker who controls the application's SQL tries to move the chain's head: by setting
 * the transaction-local chain state the triggers of `0002_audit` trusted (as a plain session and as a user scope's
 * raw SQL under row-level security), by shadowing the head with a temporary table, and by calling the chain's
 * functions. None of it moves the head: every attack row is chained like any other, audited writes and logins keep
 * working, and `verify()` stays ok. A head moved behind the chain (by a superuser) is reported.
 *
 * From a superuser with triggers off, rows forged into the part of the log the chain does not walk (no sequence
 * number, dated before the chain started; sequence number 0) are reported by `verify()`, as are changes to the rows
 * that predate the chain; `purge()` keeps the anchor of those rows in step, and refuses to hide a forgery.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDatabase, Droplet, hashPassword, User, type Database } from '../../src/index.js'
import {
  adminQuery,
  createTestDatabase,
  fastHash,
  openTestDatabase,
  type TestDatabase,
  createApplicationRole,
} from '../helpers/database.js'

const PASSWORD = 'chain-attack-password'
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('the audit hash chain against the application role and a superuser', () => {
  /** The owner's handle: through PgBouncer in the PgBouncer run. */
  let db: Database
  /** The application's role, connected straight to the server (PgBouncer's user list knows only the owner). */
  let app: Database
  let url: string
  let cleanup: () => Promise<void>
  let role: string
  let su: pg.Client
  let alice: User
  let admin: User
  let droplet: Droplet
  let flip = 0

  const direct = async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> =>
    (await su.query<R>(sql, params)).rows

  /** Runs statements as a superuser with triggers off: what someone tampering with the table could do. */
  async function outOfBand<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      await client.query('set session_replication_role = replica')
      return (await client.query<R>(sql, params)).rows
    } finally {
      await client.end()
    }
  }

  const head = async () =>
    (
      await direct<{ seq: string; hash: string }>(
        `select last_seq::text as seq, encode(last_hash, 'hex') as hash from wincloud_audit_chain where id`,
      )
    )[0]!

  /** The last chained row, as the database has it. */
  const lastRow = async () =>
    (
      await direct<{ id: string; seq: string; prev: string; hash: string; action: string }>(
        `select id::text as id, chain_seq::text as seq, encode(prev_hash, 'hex') as prev, encode(row_hash, 'hex') as hash,
           action from audit_logs where chain_seq is not null order by chain_seq desc limit 1`,
      )
    )[0]!

  /** Audited writes and logins work, for the application and the owner, and the chain verifies end to end. */
  async function expectHealthy(): Promise<void> {
    for (const handle of [app, db]) {
      await handle
        .scope(alice, { requestId: 'after-attack' })
        .repo(Droplet)
        .update(droplet.id, { status: flip++ % 2 === 0 ? 'stopped' : 'active' })
      await handle.auth.login('alice', PASSWORD)
    }
    const report = await db.audit.verify()
    expect(report).toMatchObject({ ok: true, enabled: true })
    expect(report.problem).toBeUndefined()
    const last = await lastRow()
    expect(last.action).toBe('auth.login')
    expect(await head()).toEqual({ seq: last.seq, hash: last.hash })
    expect(await db.audit.head()).toEqual({ seq: last.seq, hash: last.hash })
  }

  /** The row the attack wrote: chained right after the head the attacker found, like any other row. */
  async function expectChainedAfter(before: { seq: string; hash: string }, action: string): Promise<void> {
    const rows = await direct<{ seq: string; prev: string }>(
      `select chain_seq::text as seq, encode(prev_hash, 'hex') as prev from audit_logs where action = $1`,
      [action],
    )
    expect(rows).toEqual([{ seq: String(BigInt(before.seq) + 1n), prev: before.hash }])
  }

  beforeAll(async () => {
    ;({ db, url, cleanup } = await openTestDatabase({ rls: true, auth: { passwordHash: fastHash } }))
    su = new pg.Client({ connectionString: url })
    await su.connect()
    const created = await createApplicationRole(url, { rls: true })
    role = created.role
    const appUrl = created.url
    app = await createDatabase({ connection: appUrl, rls: true, auth: { passwordHash: fastHash } })

    const hash = await hashPassword(PASSWORD, fastHash)
    alice = await db
      .model(User)
      .query()
      .insertAndFetch({ email: 'alice@example.com', username: 'alice', passwordHash: hash })
    admin = await db
      .model(User)
      .query()
      .insertAndFetch({ email: 'root@example.com', username: 'root', passwordHash: hash, role: 'admin' })
    // History from before the chain, some of it with multi-byte text.
    droplet = await app.scope(alice, { userAgent: 'Navigateur/1.0 (é, 日本, 😀)' }).repo(Droplet).create({
      name: 'wéb-1',
      region: 'nyc3',
      size: 's',
    })
    await app.scope(admin).audit.record('admin.note', { metadata: { note: 'ünïcödé ✓ "quoted" \\ back' } })
    await app.auth.login('alice', PASSWORD)
    await db.audit.enableHashChain()
    await app
      .scope(alice)
      .repo(Droplet)
      .bulkCreate([
        { name: 'a-1', region: 'nyc3', size: 's' },
        { name: 'a-2', region: 'nyc3', size: 's' },
      ])
    await app.auth.login('alice', 'wrong').catch(() => undefined)
    expect(await db.audit.verify()).toMatchObject({ ok: true, enabled: true, checked: 3 })
  })
  afterAll(async () => {
    await app?.close()
    await su?.end()
    await cleanup()
    await adminQuery(`drop role if exists ${role}`)
  })

  it('route 1: the application role sets the chain state and inserts: the triggers ignore it', async () => {
    const before = await head()
    // A head behind the chain (every later insert would collide with an existing sequence number), written by a
    // statement that inserts nothing, then one far ahead of it, written by a real row.
    await app.knex.transaction(async (trx) => {
      await trx.raw(`select set_config('wincloud.audit_chain', ?, true)`, [`1:${'ab'.repeat(32)}`])
      await trx.raw(`insert into audit_logs (action) select 'attack.route1' where false`)
    })
    expect(await head()).toEqual(before)
    await app.knex.transaction(async (trx) => {
      await trx.raw(`select set_config('wincloud.audit_chain', ?, true)`, [`1000000:${'cd'.repeat(32)}`])
      await trx.raw(`insert into audit_logs (action) values ('attack.route1')`)
    })
    await expectChainedAfter(before, 'attack.route1')
    await expectHealthy()
  })

  it('route 2: a temporary table named like the head does not shadow it', async () => {
    const before = await head()
    await app.knex.transaction(async (trx) => {
      await trx.raw(`create temp table wincloud_audit_chain on commit drop as select * from wincloud_audit_chain`)
      await trx.raw(`create temp table audit_logs on commit drop as select * from audit_logs limit 0`)
      await trx.raw(`insert into public.audit_logs (action) values ('attack.route2')`)
    })
    await expectChainedAfter(before, 'attack.route2')
    expect(await head()).not.toEqual(before)
    await expectHealthy()
  })

  it('route 3: a user scope with row-level security sets the chain state from raw SQL: ignored too', async () => {
    for (const [handle, action] of [
      [app, 'attack.route3'],
      [db, 'attack.route3_owner'],
    ] as const) {
      const before = await head()
      await handle.scope(alice).transaction(async (tx) => {
        const { rows } = await tx.knex.raw<{ rows: { user: string }[] }>('select current_user as user')
        expect(rows[0]!.user).toBe('wincloud_scoped')
        await tx.knex.raw(`select set_config('wincloud.audit_chain', ?, true)`, [`1:${'ef'.repeat(32)}`])
        await tx.knex.raw(
          `insert into audit_logs (actor_id, actor_role, action) select ?::uuid, 'user', ? where false`,
          [alice.id, action],
        )
      })
      expect(await head()).toEqual(before)
      await handle.scope(alice).transaction(async (tx) => {
        await tx.knex.raw(`select set_config('wincloud.audit_chain', ?, true)`, [`7:${'ef'.repeat(32)}`])
        await tx.knex.raw(`insert into audit_logs (actor_id, actor_role, action) values (?::uuid, 'user', ?)`, [
          alice.id,
          action,
        ])
      })
      await expectChainedAfter(before, action)
    }
    await expectHealthy()
  })

  it('the application role cannot run the chain’s functions', async () => {
    const before = await head()
    for (const call of [
      'select wincloud_audit_chain_row()',
      'select wincloud_audit_chain_head()',
      'select wincloud_audit_enable_chain()',
      'select * from wincloud_audit_purge(now())',
      `select wincloud_audit_digest_step('\\x00'::bytea, '\\x00'::bytea)`,
    ]) {
      await expect(app.knex.raw(call), call).rejects.toMatchObject({ code: '42501' })
    }
    expect(await head()).toEqual(before)
  })

  it('verify reports a head moved behind or ahead of the chain', async () => {
    const last = await lastRow()
    const previous = (
      await direct<{ hash: string }>(
        `select encode(row_hash, 'hex') as hash from audit_logs where chain_seq = $1::bigint - 1`,
        [last.seq],
      )
    )[0]!
    try {
      await outOfBand(`update wincloud_audit_chain set last_seq = last_seq - 1, last_hash = decode($1, 'hex')`, [
        previous.hash,
      ])
      expect(await db.audit.verify()).toMatchObject({
        ok: false,
        problem: { kind: 'inserted', id: last.id, seq: last.seq },
      })
      await outOfBand(`update wincloud_audit_chain set last_seq = $1::bigint + 1`, [last.seq])
      expect(await db.audit.verify()).toMatchObject({ ok: false, problem: { kind: 'deleted', id: null } })
    } finally {
      await outOfBand(`update wincloud_audit_chain set last_seq = $1::bigint, last_hash = decode($2, 'hex')`, [
        last.seq,
        last.hash,
      ])
    }
    expect(await db.audit.verify()).toMatchObject({ ok: true })
  })

  it('verify reads the head and the rows from one snapshot: appends running meanwhile are no false alarm', async () => {
    const scope = app.scope(alice, { requestId: 'concurrent' })
    const writes = (async () => {
      for (let i = 0; i < 30; i += 1) await scope.audit.record('test.concurrent', { entityId: String(i) })
    })()
    const reports = []
    for (let i = 0; i < 10; i += 1) reports.push(await db.audit.verify({ batchSize: 3 }))
    await writes
    for (const report of reports) expect(report).toMatchObject({ ok: true })
    expect(await db.audit.verify()).toMatchObject({ ok: true })
  })

  it('break 7: an unchained row dated before the chain started is reported, and purge will not hide it', async () => {
    const { enabledAt } = await db.audit.enableHashChain()
    const forged = await outOfBand<{ id: string }>(
      `insert into audit_logs (id, actor_id, actor_role, action, created_at)
       values (gen_random_uuid(), $1, 'admin', 'user.delete', $2::timestamptz - interval '1 minute')
       returning id::text as id`,
      [admin.id, enabledAt],
    )
    try {
      expect(await db.audit.verify()).toMatchObject({ ok: false, problem: { kind: 'inserted', seq: null } })
      const count = await direct<{ n: number }>('select count(*)::int as n from audit_logs')
      await expect(db.audit.purge({ before: new Date(enabledAt.getTime() - 1), reason: 'retention' })).rejects.toThrow()
      expect(await direct<{ n: number }>('select count(*)::int as n from audit_logs')).toEqual(count)
    } finally {
      await outOfBand('delete from audit_logs where id = $1', [forged[0]!.id])
    }
    expect(await db.audit.verify()).toMatchObject({ ok: true })
  })

  it('break 7: a row claiming sequence number 0 is reported', async () => {
    const forged = await outOfBand<{ id: string }>(
      `insert into audit_logs (id, actor_id, actor_role, action, created_at, chain_seq, prev_hash, row_hash)
       values (gen_random_uuid(), $1, 'admin', 'user.delete', clock_timestamp() - interval '1 day', 0,
               decode(repeat('00', 32), 'hex'), decode(repeat('11', 32), 'hex'))
       returning id::text as id`,
      [admin.id],
    )
    try {
      expect(await db.audit.verify()).toMatchObject({
        ok: false,
        problem: { kind: 'inserted', id: forged[0]!.id, seq: '0' },
      })
    } finally {
      await outOfBand('delete from audit_logs where id = $1', [forged[0]!.id])
    }
    expect(await db.audit.verify()).toMatchObject({ ok: true })
  })

  it('break 7: a row from before the chain that was changed or removed is reported', async () => {
    const target = (
      await direct<{ id: string; row: string }>(
        `select id::text as id, row_to_json(a)::text as row from audit_logs a where chain_seq is null
         order by created_at limit 1`,
      )
    )[0]!
    await outOfBand(`update audit_logs set metadata = metadata || '{"forged": true}' where id = $1`, [target.id])
    expect(await db.audit.verify()).toMatchObject({ ok: false, problem: { kind: 'modified', id: null } })
    await outOfBand('delete from audit_logs where id = $1', [target.id])
    expect(await db.audit.verify()).toMatchObject({ ok: false, problem: { kind: 'deleted', id: null } })
    await outOfBand('insert into audit_logs select * from json_populate_record(null::audit_logs, $1::json)', [
      target.row,
    ])
    expect(await db.audit.verify()).toMatchObject({ ok: true })
  })

  it('break 7: a purge after the chain started keeps verify ok, and the anchor still catches forgeries', async () => {
    // A cutoff between the rows from before the chain: the older ones go, the newer ones stay anchored.
    const [first, second] = await direct<{ at: Date }>(
      `select created_at as at from audit_logs where chain_seq is null order by created_at, id`,
    )
    expect(second).toBeDefined()
    const cutoff = new Date(first!.at.getTime() + 1)
    expect(cutoff.getTime()).toBeLessThanOrEqual(second!.at.getTime())
    const before = await direct<{ n: number }>('select count(*)::int as n from audit_logs where chain_seq is null')
    const { deleted } = await db.audit.purge({ before: cutoff, reason: 'retention' })
    expect(deleted).toBe(1)
    expect(await direct<{ n: number }>('select count(*)::int as n from audit_logs where chain_seq is null')).toEqual([
      { n: before[0]!.n - 1 },
    ])
    expect(await db.audit.verify()).toMatchObject({ ok: true, anchorSeq: '0' })
    await sleep(5)
    await expectHealthy()

    const forged = await outOfBand<{ id: string }>(
      `insert into audit_logs (id, action, created_at) values (gen_random_uuid(), 'forged.entry', $1)
       returning id::text as id`,
      [second!.at],
    )
    expect(await db.audit.verify()).toMatchObject({ ok: false, problem: { kind: 'inserted' } })
    await outOfBand('delete from audit_logs where id = $1', [forged[0]!.id])
    expect(await db.audit.verify()).toMatchObject({ ok: true })
  })
})

describe('the audit hash chain under forced row-level security, the tables owned by a non-superuser', () => {
  let testDb: TestDatabase
  let db: Database
  let role: string
  let alice: User

  beforeAll(async () => {
    testDb = await createTestDatabase()
    role = `owner_${randomBytes(4).toString('hex')}`
    const password = randomBytes(12).toString('hex')
    await adminQuery(`create role ${role} login createrole password '${password}'`)
    await adminQuery(`alter database "${testDb.name}" owner to ${role}`)
    const url = new URL(testDb.url)
    url.username = role
    url.password = password
    db = await createDatabase({ connection: url.toString(), rls: true })
    await db.migrate.latest()
    alice = await db
      .model(User)
      .query()
      .insertAndFetch({ email: 'alice@example.com', username: 'alice', passwordHash: 'x' })
    await db.audit.enableHashChain()
  })
  afterAll(async () => {
    await db?.close()
    await testDb?.drop()
    await adminQuery(`drop role if exists ${role}`)
  })

  it('chains a multi-row statement of a scope whose policies hide the audit log from it', async () => {
    const { rows } = await db.knex.raw<{ rows: { rolsuper: boolean; forced: boolean }[] }>(
      `select (select rolsuper from pg_roles where rolname = current_user) as rolsuper, relforcerowsecurity as forced
       from pg_class where relname = 'audit_logs'`,
    )
    expect(rows[0]).toEqual({ rolsuper: false, forced: true })
    const made = await db
      .scope(alice)
      .repo(Droplet)
      .bulkCreate([0, 1, 2].map((i) => ({ name: `a-${i}`, region: 'nyc3', size: 's' })))
    await db
      .scope(alice)
      .repo(Droplet)
      .bulkUpdate(
        made.map((d) => d.id),
        { status: 'active' },
      )
    // A role no policy lets read audit_logs, writing three rows in one statement.
    await db.scope(alice).transaction(async (tx) => {
      await tx.knex.raw(`select set_config('app.role', 'bot', true)`)
      await tx.knex.raw(
        `insert into audit_logs (actor_id, actor_role, action) select ?::uuid, 'bot', 'bot.ping' from generate_series(1, 3)`,
        [alice.id],
      )
      const seen = await tx.knex.raw<{ rows: unknown[] }>('select id from audit_logs')
      expect(seen.rows).toEqual([])
    })
    await db.scope(alice).audit.record('test.after')
    expect(await db.audit.verify()).toEqual({ ok: true, enabled: true, checked: 10, anchorSeq: '0' })
  })
})
