/**
 * Attack class: writes through `scope.repo(M).query()` escaping the audit. A query-builder patch or delete must
 * audit exactly the rows it changed, even when another transaction commits new matching rows while the write waits
 * for a row lock: the audit rows come from the write itself (one statement), so no interleaving separates them.
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { JSONSchema } from 'objection'
import { BaseModel, definePolicy, Droplet, ownedBy, User, type Database, type Policy } from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

/** A host model with a counter. */
class Quota extends BaseModel {
  static override tableName = 'quotas'
  static override jsonSchema: JSONSchema = {
    type: 'object',
    additionalProperties: false,
    properties: { ...BaseModel.baseProperties, userId: { type: 'string', format: 'uuid' }, used: { type: 'integer' } },
  }
  static override policy: Policy = definePolicy({ owner: ownedBy('userId') })
  declare userId: string
  declare used: number
}

describe.each([false, true])('query-builder writes are audited from the write itself (rls: %s)', (rls) => {
  let db: Database
  let url: string
  let cleanup: () => Promise<void>
  let alice: User

  beforeAll(async () => {
    ;({ db, url, cleanup } = await openTestDatabase({ rls }))
    alice = await db
      .model(User)
      .query()
      .insertAndFetch({ email: 'alice@example.com', username: 'alice', passwordHash: 'x' })
  })
  afterAll(async () => {
    await cleanup()
  })

  /** Waits until some backend of the database waits for a lock (the scoped write, blocked by `holder`). */
  async function blockedOnLock(probe: pg.Client): Promise<void> {
    for (let i = 0; i < 500; i++) {
      const { rows } = await probe.query<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
      )
      if (rows[0]!.n > 0) return
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    throw new Error('the write never waited for the lock')
  }

  /**
   * Another transaction locks one matching row and inserts a new matching row (alice's, committed only later), the
   * scoped write starts and waits on the lock, the other transaction commits: the write must change only what it
   * audits, and audit all it changes.
   */
  async function race(region: string, write: () => PromiseLike<unknown>) {
    const [locked] = await db
      .model(Droplet)
      .query()
      .insert([{ userId: alice.id, name: `${region}-locked`, region, size: 's' }])
    const holder = new pg.Client({ connectionString: url })
    const probe = new pg.Client({ connectionString: url })
    await holder.connect()
    await probe.connect()
    try {
      await holder.query('begin')
      await holder.query(`update droplets set size = 'm' where id = $1`, [locked!.id])
      await holder.query(
        `insert into droplets (id, user_id, name, region, size, status, created_at, updated_at)
         values (gen_random_uuid(), $1, $2, $3, 's', 'building', now(), now())`,
        [alice.id, `${region}-late`, region],
      )
      // A query builder runs each time it is awaited: run it once, as a promise.
      const pending = Promise.resolve(write())
      pending.catch(() => undefined)
      await Promise.race([blockedOnLock(probe), pending])
      await holder.query('commit')
      return await pending
    } finally {
      await holder.end()
      await probe.end()
    }
  }

  const audited = async (action: string, region: string) =>
    (
      await db.knex.raw<{ rows: { entity_id: string }[] }>(
        `select entity_id from audit_logs where action = ? and entity_type = 'droplet'
         and entity_id in (select id::text from droplets where region = ?
                           union select entity_id from audit_logs where changes -> 'region' ->> 'from' = ?)
         order by entity_id`,
        [action, region, region],
      )
    ).rows.map((r) => r.entity_id)

  it('patch: every changed row has its audit row, and no row changes without one', async () => {
    const region = `p${rls ? 'r' : 'n'}1`
    const count = await race(region, () =>
      db.scope(alice).repo(Droplet).query().patch({ status: 'stopped' }).where('region', region),
    )
    const { rows } = await db.knex.raw<{ rows: { id: string; status: string; size: string }[] }>(
      'select id::text, status, size from droplets where region = ? order by id',
      [region],
    )
    const stopped = rows.filter((r) => r.status === 'stopped').map((r) => r.id)
    expect(count).toBe(stopped.length)
    expect(await audited('droplet.update', region)).toEqual(stopped)
    // The row that was locked was changed (after the other transaction's change, which it kept).
    expect(rows.find((r) => r.size === 'm')?.status).toBe('stopped')
  })

  it('delete: every deleted row has its audit row, and no row goes without one', async () => {
    const region = `d${rls ? 'r' : 'n'}1`
    const count = await race(region, () => db.scope(alice).repo(Droplet).query().delete().where('region', region))
    const remaining = await db.knex.raw<{ rows: { id: string }[] }>('select id::text from droplets where region = ?', [
      region,
    ])
    const { rows } = await db.knex.raw<{ rows: { entity_id: string }[] }>(
      `select entity_id from audit_logs where action = 'droplet.delete' and changes -> 'region' ->> 'from' = ?`,
      [region],
    )
    // The locked row went, audited; the row committed while the delete waited was not in its snapshot and stays.
    expect(count).toBe(1)
    expect(rows).toHaveLength(1)
    expect(remaining.rows.map((r) => r.id)).not.toContain(rows[0]!.entity_id)
    expect(remaining.rows).toHaveLength(1)
  })

  it('patch with returning gives the changed rows, audited; a patch outside the scope changes and audits nothing', async () => {
    const bob = await db
      .model(User)
      .query()
      .insertAndFetch({
        email: `bob${rls ? 'r' : 'n'}@example.com`,
        username: `bob${rls ? 'r' : 'n'}`,
        passwordHash: 'x',
      })
    const [mine] = await db
      .model(Droplet)
      .query()
      .insert([{ userId: alice.id, name: 'ret', region: 'ret', size: 's' }])
    const [theirs] = await db
      .model(Droplet)
      .query()
      .insert([{ userId: bob.id, name: 'ret', region: 'ret', size: 's' }])
    const rows = await db.scope(alice).repo(Droplet).query().patch({ size: 'xl' }).where('name', 'ret').returning('*')
    expect(rows.map((r) => r.id)).toEqual([mine!.id])
    expect(rows[0]!.size).toBe('xl')
    const audit = await db.knex.raw<{ rows: { entity_id: string; changes: object }[] }>(
      `select entity_id, changes from audit_logs where action = 'droplet.update' and entity_id = any(?::text[])`,
      [[mine!.id, theirs!.id]],
    )
    expect(audit.rows).toEqual([{ entity_id: mine!.id, changes: { size: { from: 's', to: 'xl' } } }])
    const untouched = await db.knex.raw<{ rows: { size: string }[] }>('select size from droplets where id = ?', [
      theirs!.id,
    ])
    expect(untouched.rows[0]!.size).toBe('s')
  })

  it('increment and decrement are audited with their old and new values, within the scope', async () => {
    await db.knex
      .raw(`create table if not exists quotas (id uuid primary key, user_id uuid not null references users (id),
      used integer not null default 0, created_at timestamptz not null default now(),
      updated_at timestamptz not null default now())`)
    if (rls) await db.knex.raw(`grant select, insert, update, delete on quotas to public`)
    const bob = await db
      .model(User)
      .query()
      .insertAndFetch({
        email: `q${rls ? 'r' : 'n'}@example.com`,
        username: `quota-${rls ? 'r' : 'n'}`,
        passwordHash: 'x',
      })
    const mine = await db.scope(alice).repo(Quota).create({ used: 1 })
    const theirs = await db.scope(bob).repo(Quota).create({ used: 1 })
    expect(await db.scope(alice).repo(Quota).query().increment('used', 5)).toBeGreaterThanOrEqual(1)
    await db.scope(alice).repo(Quota).query().decrement('used', 2).where('id', mine.id)
    const used = async (id: string) =>
      (await db.knex.raw<{ rows: { used: number }[] }>('select used from quotas where id = ?', [id])).rows[0]!.used
    expect(await used(mine.id)).toBe(4)
    expect(await used(theirs.id)).toBe(1)
    const { rows } = await db.knex.raw<{ rows: { entity_id: string; changes: object }[] }>(
      `select entity_id, changes from audit_logs where action = 'quota.update' and entity_id = any(?::text[])
       order by created_at, id`,
      [[mine.id, theirs.id]],
    )
    expect(rows).toEqual([
      { entity_id: mine.id, changes: { used: { from: 1, to: 6 } } },
      { entity_id: mine.id, changes: { used: { from: 6, to: 4 } } },
    ])
  })
})
