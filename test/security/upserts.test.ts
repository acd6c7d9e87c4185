/**
 * Attack class: upserts through `scope.repo(M).query()` (`onConflict().merge()` / `.ignore()`), `insertGraph` with
 * relate and `upsertGraph`. A user must not move, rewrite or re-id another user's row by colliding with its unique
 * value, and the audit row must say what happened (create or update), with RLS off and on.
 */
import type { JSONSchema } from 'objection'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  BaseModel,
  ConflictError,
  definePolicy,
  Droplet,
  ForbiddenError,
  ownedBy,
  User,
  ValidationError,
  type Database,
  type Policy,
} from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

/** A host model with an owner and a unique column. */
class Domain extends BaseModel {
  static override tableName = 'domains'
  static override jsonSchema: JSONSchema = {
    type: 'object',
    required: ['hostname'],
    additionalProperties: false,
    properties: {
      ...BaseModel.baseProperties,
      userId: { type: 'string', format: 'uuid' },
      hostname: { type: 'string', minLength: 1, maxLength: 253 },
      note: { type: 'string', maxLength: 200 },
    },
  }
  static override policy: Policy = definePolicy({ owner: ownedBy('userId') })
  declare userId: string
  declare hostname: string
  declare note: string
}

interface Row {
  id: string
  user_id: string
  hostname: string
  note: string
}

describe.each([false, true])('upserts keep the scope (rls: %s)', (rls) => {
  let db: Database
  let cleanup: () => Promise<void>
  let alice: User
  let bob: User
  let admin: User
  let bobs: Row

  const rowsOf = async (): Promise<Row[]> =>
    (
      await db.knex.raw<{ rows: Row[] }>(
        'select id::text, user_id::text, hostname, note from domains order by hostname',
      )
    ).rows
  const auditOf = async (hostname: string) =>
    (
      await db.knex.raw<{ rows: { action: string; actor_id: string; entity_id: string; changes: object }[] }>(
        `select action, actor_id::text, entity_id, changes from audit_logs
         where entity_type = 'domain' and (changes -> 'hostname' ->> 'to' = ? or entity_id in
           (select id::text from domains where hostname = ?)) order by created_at, id`,
        [hostname, hostname],
      )
    ).rows

  beforeAll(async () => {
    // `creator` may create its own rows but update none: merging into a row is an update of it.
    ;({ db, cleanup } = await openTestDatabase({ rls, roles: { creator: { read: 'own', create: 'own' } } }))
    const make = (name: string, role = 'user') =>
      db
        .model(User)
        .query()
        .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x', role })
    alice = await make('alice')
    bob = await make('bob')
    admin = await make('root', 'admin')
    await db.knex.raw(`create table domains (
      id uuid primary key, user_id uuid not null references users (id), hostname text not null unique,
      note text not null default '', created_at timestamptz not null default now(),
      updated_at timestamptz not null default now())`)
    if (rls) await db.knex.raw(`grant select, insert, update, delete on domains to public`)
    await db.scope(bob).repo(Domain).create({ hostname: 'bob.example', note: 'bob’s' })
    await db.scope(alice).repo(Domain).create({ hostname: 'alice.example', note: 'first' })
    bobs = (await rowsOf()).find((r) => r.hostname === 'bob.example')!
  })
  afterAll(async () => {
    await cleanup()
  })

  it('merge() into another user’s row is a ConflictError and changes nothing, audit included', async () => {
    const before = await rowsOf()
    const auditBefore = await auditOf('bob.example')
    const repo = db.scope(alice).repo(Domain)
    await expect(
      repo.query().insert({ hostname: 'bob.example', note: 'mine now' }).onConflict('hostname').merge(),
    ).rejects.toBeInstanceOf(ConflictError)
    await expect(
      repo.query().insert({ hostname: 'bob.example', note: 'rewritten' }).onConflict('hostname').merge(['note']),
    ).rejects.toBeInstanceOf(ConflictError)
    await expect(
      repo.query().insert({ hostname: 'bob.example', note: 'rewritten' }).onConflict('hostname').merge({ note: 'x' }),
    ).rejects.toBeInstanceOf(ConflictError)
    expect(await rowsOf()).toEqual(before)
    expect(await auditOf('bob.example')).toEqual(auditBefore)
  })

  it('the ConflictError is the one a plain insert of the same value gets', async () => {
    const repo = db.scope(alice).repo(Domain)
    const plain = await repo
      .query()
      .insert({ hostname: 'bob.example' })
      .catch((e: unknown) => e)
    const upsert = await repo
      .query()
      .insert({ hostname: 'bob.example' })
      .onConflict('hostname')
      .merge(['note'])
      .catch((e: unknown) => e)
    expect(plain).toBeInstanceOf(ConflictError)
    expect(upsert).toBeInstanceOf(ConflictError)
    expect((upsert as ConflictError).httpStatus).toBe((plain as ConflictError).httpStatus)
    expect((upsert as ConflictError).table).toBe('domains')
  })

  it('a refused upsert inside a transaction leaves nothing behind, and the transaction goes on', async () => {
    const before = await rowsOf()
    const made = await db.scope(alice).transaction(async (tx) => {
      await expect(
        tx
          .repo(Domain)
          .query()
          .insert([{ hostname: 'tx-new.example' }, { hostname: 'bob.example', note: 'stolen' }])
          .onConflict('hostname')
          .merge(['note']),
      ).rejects.toBeInstanceOf(ConflictError)
      return tx.repo(Domain).create({ hostname: 'tx-after.example' })
    })
    const after = await rowsOf()
    expect(after.map((r) => r.hostname)).toEqual([...before.map((r) => r.hostname), 'tx-after.example'].sort())
    expect(after.find((r) => r.hostname === 'bob.example')).toEqual(bobs)
    expect(made.hostname).toBe('tx-after.example')
    expect(await auditOf('tx-new.example')).toEqual([])
  })

  it('merge() needs update access: a role that may only create gets a ForbiddenError and changes nothing', async () => {
    const before = await rowsOf()
    const creator = db.scope({ id: alice.id, role: 'creator' }).repo(Domain)
    await expect(
      creator.query().insert({ hostname: 'alice.example', note: 'creator' }).onConflict('hostname').merge(['note']),
    ).rejects.toBeInstanceOf(ForbiddenError)
    expect(await rowsOf()).toEqual(before)
    // A plain insert is still what the role may do.
    const made = await creator.query().insert({ hostname: 'creator.example' })
    expect(made.userId).toBe(alice.id)
    await db.knex.raw(`delete from domains where hostname = 'creator.example'`)
  })

  it('merge() may never write the id, the owner or the creation time', async () => {
    const repo = db.scope(alice).repo(Domain)
    for (const columns of [['id'], ['user_id'], ['domains.user_id'], ['created_at'], ['note', 'id']]) {
      await expect(
        repo.query().insert({ hostname: 'alice.example', note: 'x' }).onConflict('hostname').merge(columns),
      ).rejects.toBeInstanceOf(ValidationError)
    }
    await expect(
      repo.query().insert({ hostname: 'alice.example' }).onConflict('hostname').merge({ userId: bob.id }),
    ).rejects.toBeInstanceOf(ValidationError)
    // An admin may move a row to another owner, but never re-id it.
    await expect(
      db.scope(admin).repo(Domain).query().insert({ hostname: 'bob.example' }).onConflict('hostname').merge(['id']),
    ).rejects.toBeInstanceOf(ValidationError)
    expect((await rowsOf()).find((r) => r.hostname === 'bob.example')).toEqual(bobs)
  })

  it('merge() into one’s own row updates it in place, keeps its id and is audited as an update', async () => {
    const repo = db.scope(alice).repo(Domain)
    const own = (await rowsOf()).find((r) => r.hostname === 'alice.example')!
    const merged = await repo
      .query()
      .insert({ hostname: 'alice.example', note: 'second' })
      .onConflict('hostname')
      .merge()
    expect(merged.id).toBe(own.id)
    const now = (await rowsOf()).find((r) => r.hostname === 'alice.example')!
    expect(now).toEqual({ ...own, note: 'second' })
    const audit = await auditOf('alice.example')
    expect(audit.map((a) => a.action)).toEqual(['domain.create', 'domain.update'])
    expect(audit[1]).toMatchObject({
      actor_id: alice.id,
      entity_id: own.id,
      changes: { note: { from: 'first', to: 'second' } },
    })
  })

  it('an upsert that inserts is audited as a create; a mixed one as a create and an update', async () => {
    const repo = db.scope(alice).repo(Domain)
    const rows = await repo
      .query()
      .insert([
        { hostname: 'new.example', note: 'n' },
        { hostname: 'alice.example', note: 'third' },
      ])
      .onConflict('hostname')
      .merge(['note'])
    expect(rows).toHaveLength(2)
    const created = await auditOf('new.example')
    expect(created.map((a) => a.action)).toEqual(['domain.create'])
    expect(created[0]!.entity_id).toBe((await rowsOf()).find((r) => r.hostname === 'new.example')!.id)
    const updated = await auditOf('alice.example')
    expect(updated.at(-1)).toMatchObject({
      action: 'domain.update',
      changes: { note: { from: 'second', to: 'third' } },
    })
  })

  it('ignore() never touches another user’s row and audits only what it inserted', async () => {
    const before = await rowsOf()
    await db
      .scope(alice)
      .repo(Domain)
      .query()
      .insert({ hostname: 'bob.example', note: 'ignored' })
      .onConflict('hostname')
      .ignore()
    expect(await rowsOf()).toEqual(before)
    expect((await auditOf('bob.example')).filter((a) => a.actor_id === alice.id)).toEqual([])
  })

  it('an admin’s merge updates in place, keeps the id, and the audit row says update', async () => {
    await db
      .scope(admin)
      .repo(Domain)
      .query()
      .insert({ userId: bob.id, hostname: 'bob.example', note: 'by admin' })
      .onConflict('hostname')
      .merge(['note'])
    const now = (await rowsOf()).find((r) => r.hostname === 'bob.example')!
    expect(now).toEqual({ ...bobs, note: 'by admin' })
    expect((await auditOf('bob.example')).at(-1)).toMatchObject({
      action: 'domain.update',
      actor_id: admin.id,
      entity_id: bobs.id,
      changes: { note: { from: 'bob’s', to: 'by admin' } },
    })
    bobs = now
  })

  it('insertGraph cannot relate a row to another user, upsertGraph cannot reach another user’s row', async () => {
    const before = await db.knex.raw<{ rows: object[] }>('select * from droplets order by id')
    const bobDroplet = await db.scope(bob).repo(Droplet).create({ name: 'bob-d', region: 'nyc3', size: 's' })
    const repo = db.scope(alice).repo(Droplet)
    await expect(
      repo
        .query()
        .insertGraph({ name: 'stolen', region: 'nyc3', size: 's', owner: { id: bob.id } } as never, { relate: true }),
    ).rejects.toBeInstanceOf(ForbiddenError)
    // Another user's row is not found, exactly like a row that does not exist.
    const attempt = (id: string) =>
      repo
        .query()
        .upsertGraph({ id, name: 'renamed' } as never, { insertMissing: false })
        .then(
          () => undefined,
          (error: unknown) => error as Error,
        )
    const reached = await attempt(bobDroplet.id)
    const missing = await attempt('01a252e4-0000-7000-8000-000000000000')
    expect(reached?.name).toBe('NotFoundError')
    expect(reached?.message.replace(bobDroplet.id, 'ID')).toBe(
      missing?.message.replace('01a252e4-0000-7000-8000-000000000000', 'ID'),
    )
    const after = await db.knex.raw<{ rows: { id: string; name: string; user_id: string }[] }>(
      'select * from droplets order by id',
    )
    expect(after.rows.length).toBe(before.rows.length + 1)
    expect(after.rows.find((r) => r.id === bobDroplet.id)).toMatchObject({ name: 'bob-d', user_id: bob.id })
  })
})

describe('inserts through query() with returning', () => {
  it('return the row as it is in the table, and nothing of the statement that audits it', async () => {
    const { db, cleanup } = await openTestDatabase()
    try {
      const alice = await db
        .model(User)
        .query()
        .insertAndFetch({ email: 'ret@example.com', username: 'ret', passwordHash: 'x' })
      const rows = await db
        .scope(alice)
        .repo(Droplet)
        .query()
        .insert([{ userId: alice.id, name: 'r1', region: 'nyc3', size: 's' }])
        .returning('*')
      expect(rows).toHaveLength(1)
      const json = rows[0]!.toJSON() as Record<string, unknown>
      expect(Object.keys(json).filter((k) => k.toLowerCase().includes('wincloud'))).toEqual([])
      expect(json).toMatchObject({ userId: alice.id, name: 'r1', status: 'building' })
    } finally {
      await cleanup()
    }
  })
})
