import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Knex } from 'knex'
import type { JSONSchema } from 'objection'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AuditLog,
  AuthenticationError,
  BaseModel,
  createDatabase,
  definePolicy,
  Droplet,
  ForbiddenError,
  hashPassword,
  NotFoundError,
  ownedBy,
  User,
  ValidationError,
  type Database,
  type Filter,
  type Policy,
  type ScopedRepository,
} from '../../src/index.js'
import { adminQuery, fastHash, openTestDatabase } from '../helpers/database.js'

/** The request metadata of the user scopes below, as audit rows must carry it. */
const META = { ip: '203.0.113.7', userAgent: 'vitest-agent/1.0', requestId: 'req-7f3a' }

/** An audit row as the tests compare it. */
interface Entry {
  actorId: string | null
  actorRole: string | null
  action: string
  entityType: string | null
  entityId: string | null
  changes: Record<string, unknown>
  metadata: Record<string, unknown>
}

interface AuditRow extends Entry {
  id: string
}

const ENTRY_COLUMNS = `id::text as id, actor_id::text as "actorId", actor_role as "actorRole", action,
  entity_type as "entityType", entity_id as "entityId", changes, metadata`

/** Audit rows read by the application's own (unscoped) connection, oldest first. */
async function auditRows(db: Database, where = 'true', bindings: readonly Knex.RawBinding[] = []): Promise<AuditRow[]> {
  const { rows } = await db.knex.raw<{ rows: AuditRow[] }>(
    `select ${ENTRY_COLUMNS} from audit_logs where ${where} order by created_at, id`,
    bindings,
  )
  return rows
}

const entry = ({ id: _id, ...rest }: AuditRow): Entry => rest

/** Code-unit order, as PostgreSQL sorts uuids and the library sorts ids. */
const order = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0)

/** The ids of every audit row now: `auditSince(db, mark)` then returns what was written after. */
async function markAudit(db: Database): Promise<Set<string>> {
  const { rows } = await db.knex.raw<{ rows: { id: string }[] }>('select id::text as id from audit_logs')
  return new Set(rows.map((r) => r.id))
}

/** The audit rows written since `mark`, oldest first (by entity id first when `byEntity`, for set-based writes). */
async function auditSince(db: Database, mark: ReadonlySet<string>, byEntity = false): Promise<Entry[]> {
  const rows = (await auditRows(db)).filter((r) => !mark.has(r.id))
  if (byEntity) rows.sort((x, y) => order(x.entityId ?? '', y.entityId ?? ''))
  return rows.map(entry)
}

/** Every audit row as text, for "nothing changed" checks. */
async function auditSnapshot(db: Database): Promise<string[]> {
  const { rows } = await db.knex.raw<{ rows: { row: string }[] }>(
    'select a::text as row from audit_logs a order by a.id',
  )
  return rows.map((r) => r.row)
}

/** How many audit rows contain `text` anywhere (every column, as the row's text). */
async function auditRowsContaining(db: Database, text: string): Promise<number> {
  const { rows } = await db.knex.raw<{ rows: { n: number }[] }>(
    'select count(*)::int as n from audit_logs a where strpos(a::text, ?) > 0',
    [text],
  )
  return rows[0]!.n
}

async function auditCount(db: Database): Promise<number> {
  const { rows } = await db.knex.raw<{ rows: { n: number }[] }>('select count(*)::int as n from audit_logs')
  return rows[0]!.n
}

/** Droplet rows as text, by id. */
async function dropletRows(db: Database, ids: readonly string[]): Promise<string[]> {
  const { rows } = await db.knex.raw<{ rows: { row: string }[] }>(
    'select d::text as row from droplets d where d.id = any(?::uuid[]) order by d.id',
    [ids as string[]],
  )
  return rows.map((r) => r.row)
}

/** The database's clock, read with a little distance on both sides, so rows before and after it are clearly so. */
async function cutoffNow(db: Database): Promise<Date> {
  await sleep(15)
  const { rows } = await db.knex.raw<{ rows: { now: Date }[] }>('select clock_timestamp() as now')
  await sleep(15)
  return rows[0]!.now
}

const created = (userId: string, name: string, region: string, size: string) => ({
  userId: { to: userId },
  name: { to: name },
  region: { to: region },
  size: { to: size },
  status: { to: 'building' },
  ipAddress: { to: null },
})

const byId = <T extends { id: string }>(rows: readonly T[]): T[] => [...rows].sort((x, y) => order(x.id, y.id))

/** Every page of a keyset walk. */
async function keysetPages(
  repo: ScopedRepository<AuditLog>,
  filter: Filter | undefined,
  size: number,
  sort: readonly string[] = ['-createdAt'],
): Promise<AuditLog[][]> {
  const pages: AuditLog[][] = []
  let after: string | undefined
  for (let guard = 0; guard < 1_000; guard += 1) {
    const page = await repo.list({ filter, sort, page: after === undefined ? { size } : { size, after } })
    pages.push(page.items)
    if (!page.pageInfo.hasNextPage) return pages
    after = page.pageInfo.endCursor ?? undefined
    expect(after).toBeDefined()
  }
  throw new Error('keyset walk did not end')
}

describe.each([false, true])('audit trail of scoped writes (rls: %s)', (rls) => {
  let db: Database
  let cleanup: () => Promise<void>
  let alice: User
  let bob: User
  let admin: User
  let carol: User
  const alicePassword = `alice-${randomBytes(6).toString('hex')}`
  const bobPassword = `bob-${randomBytes(6).toString('hex')}`
  const adminPassword = `root-${randomBytes(6).toString('hex')}`
  const carolPassword = `carol-${randomBytes(6).toString('hex')}`

  beforeAll(async () => {
    ;({ db, cleanup } = await openTestDatabase({ rls, auth: { passwordHash: fastHash } }))
    // Through the unscoped model class: no audit rows yet.
    const make = async (name: string, password: string, role = 'user', isActive = true) =>
      db
        .model(User)
        .query()
        .insertAndFetch({
          email: `${name}@example.com`,
          username: name,
          passwordHash: await hashPassword(password, fastHash),
          role,
          isActive,
        })
    alice = await make('alice', alicePassword)
    bob = await make('bob', bobPassword)
    admin = await make('root', adminPassword, 'admin')
    carol = await make('carol', carolPassword, 'user', false)
    expect(await auditCount(db)).toBe(0)
  })
  afterAll(async () => {
    await cleanup()
  })

  describe('recorder', () => {
    it('create, update and delete each write one row: actor, request metadata and exactly what changed', async () => {
      const mark = await markAudit(db)
      const repo = db.scope(alice, META).repo(Droplet)
      const d = await repo.create({ name: 'web-1', region: 'nyc3', size: 's-1vcpu-2gb' })
      await repo.update(d.id, { status: 'active', name: 'web-1' })
      await repo.update(d.id, { ipAddress: '192.0.2.15', name: 'web-one' })
      await repo.delete(d.id)
      const me = await db
        .scope(alice, META)
        .repo(User)
        .update(alice.id, { preferences: { theme: 'dark' } })
      expect(me.preferences).toEqual({ theme: 'dark' })

      const by = { actorId: alice.id, actorRole: 'user', metadata: META }
      expect(await auditSince(db, mark)).toEqual([
        {
          ...by,
          action: 'droplet.create',
          entityType: 'droplet',
          entityId: d.id,
          changes: created(alice.id, 'web-1', 'nyc3', 's-1vcpu-2gb'),
        },
        {
          ...by,
          action: 'droplet.update',
          entityType: 'droplet',
          entityId: d.id,
          changes: { status: { from: 'building', to: 'active' } },
        },
        {
          ...by,
          action: 'droplet.update',
          entityType: 'droplet',
          entityId: d.id,
          changes: { ipAddress: { from: null, to: '192.0.2.15' }, name: { from: 'web-1', to: 'web-one' } },
        },
        {
          ...by,
          action: 'droplet.delete',
          entityType: 'droplet',
          entityId: d.id,
          changes: {
            userId: { from: alice.id },
            name: { from: 'web-one' },
            region: { from: 'nyc3' },
            size: { from: 's-1vcpu-2gb' },
            status: { from: 'active' },
            ipAddress: { from: '192.0.2.15' },
          },
        },
        {
          ...by,
          action: 'user.update',
          entityType: 'user',
          entityId: alice.id,
          changes: { preferences: { from: {}, to: { theme: 'dark' } } },
        },
      ])
    })

    it('writes no row for an update that changes nothing, nor for rows outside the scope', async () => {
      const repo = db.scope(alice, META).repo(Droplet)
      const mine = await repo.create({ name: 'quiet', region: 'ams3', size: 's' })
      const theirs = await db.scope(bob).repo(Droplet).create({ name: 'bobs', region: 'ams3', size: 's' })
      const mark = await markAudit(db)
      const before = await dropletRows(db, [theirs.id])

      const same = await repo.update(mine.id, { status: 'building', name: 'quiet' })
      expect(same.updatedAt.getTime()).toBeGreaterThan(mine.updatedAt.getTime())
      await expect(repo.update(theirs.id, { status: 'stopped' })).rejects.toBeInstanceOf(NotFoundError)
      await expect(repo.delete(theirs.id)).rejects.toBeInstanceOf(NotFoundError)
      expect(await repo.bulkUpdate([theirs.id], { status: 'stopped' })).toEqual({ updated: [], notFound: [theirs.id] })
      expect(await repo.bulkUpdateEach([{ id: theirs.id, name: 'taken' }])).toEqual({
        updated: [],
        notFound: [theirs.id],
      })
      expect(await repo.bulkUpdate({ filter: { id: theirs.id } }, { status: 'stopped' })).toEqual({ updated: 0 })

      expect(await auditSince(db, mark)).toEqual([])
      expect(await dropletRows(db, [theirs.id])).toEqual(before)
    })

    it('records system scopes as role system with their reason, and admins as themselves', async () => {
      const theirs = await db.scope(bob).repo(Droplet).create({ name: 'sys-target', region: 'fra1', size: 's' })
      const mark = await markAudit(db)
      await db.system('nightly maintenance').repo(Droplet).update(theirs.id, { status: 'stopped' })
      await db.scope(admin, { requestId: 'req-admin' }).repo(Droplet).update(theirs.id, { region: 'lon1' })
      await db.system('cleanup job').repo(Droplet).delete(theirs.id)
      const rows = await auditSince(db, mark)
      expect(rows.map((r) => [r.action, r.actorId, r.actorRole, r.metadata, r.changes])).toEqual([
        [
          'droplet.update',
          null,
          'system',
          { reason: 'nightly maintenance' },
          { status: { from: 'building', to: 'stopped' } },
        ],
        ['droplet.update', admin.id, 'admin', { requestId: 'req-admin' }, { region: { from: 'fra1', to: 'lon1' } }],
        [
          'droplet.delete',
          null,
          'system',
          { reason: 'cleanup job' },
          {
            userId: { from: bob.id },
            name: { from: 'sys-target' },
            region: { from: 'lon1' },
            size: { from: 's' },
            status: { from: 'stopped' },
            ipAddress: { from: null },
          },
        ],
      ])
      expect(rows.every((r) => r.entityType === 'droplet' && r.entityId === theirs.id)).toBe(true)
    })

    it('bulkCreate, bulkUpdate (ids, stream, filter) and bulkUpdateEach write one row per changed row', async () => {
      const repo = db.scope(alice, META).repo(Droplet)
      const theirs = await db.scope(bob).repo(Droplet).create({ name: 'bob-bulk', region: 'nyc3', size: 's' })
      const by = { actorId: alice.id, actorRole: 'user', entityType: 'droplet', metadata: META }

      let mark = await markAudit(db)
      const made = byId(
        await repo.bulkCreate(
          ['b-0', 'b-1', 'b-2'].map((name) => ({ name, region: 'nyc3', size: 's' })),
          { chunkSize: 2 },
        ),
      )
      const [d0, d1, d2] = made as [Droplet, Droplet, Droplet]
      expect(await auditSince(db, mark, true)).toEqual(
        made.map((d) => ({
          ...by,
          action: 'droplet.create',
          entityId: d.id,
          changes: created(alice.id, d.name, 'nyc3', 's'),
        })),
      )

      // By ids: d0 and d1 change; bob's droplet is not found.
      mark = await markAudit(db)
      expect(await repo.bulkUpdate([d1.id, theirs.id, d0.id], { status: 'active' })).toEqual({
        updated: [d0.id, d1.id],
        notFound: [theirs.id],
      })
      const activated = (id: string) => ({
        ...by,
        action: 'droplet.update',
        entityId: id,
        changes: { status: { from: 'building', to: 'active' } },
      })
      expect(await auditSince(db, mark, true)).toEqual([activated(d0.id), activated(d1.id)])

      // d0 is already active: it is updated (matched) but nothing about it changed, so only d2 has a row.
      mark = await markAudit(db)
      expect(await repo.bulkUpdate([d0.id, d2.id], { status: 'active' })).toEqual({
        updated: [d0.id, d2.id],
        notFound: [],
      })
      expect(await auditSince(db, mark, true)).toEqual([activated(d2.id)])

      // A stream of ids, chunk by chunk.
      mark = await markAudit(db)
      async function* ids(): AsyncGenerator<string> {
        for (const id of [d0.id, theirs.id, d1.id]) yield await Promise.resolve(id)
      }
      expect(await repo.bulkUpdate(ids(), { region: 'ams3' }, { chunkSize: 2 })).toEqual({ updated: 2, notFound: 1 })
      expect(await auditSince(db, mark, true)).toEqual(
        [d0, d1].map((d) => ({
          ...by,
          action: 'droplet.update',
          entityId: d.id,
          changes: { region: { from: 'nyc3', to: 'ams3' } },
        })),
      )

      // A filter: bob's droplet matches it but is outside the scope.
      mark = await markAudit(db)
      expect(
        await repo.bulkUpdate({ filter: { id: { in: [d0.id, d2.id, theirs.id] } } }, { size: 'l' }, { chunkSize: 1 }),
      ).toEqual({ updated: 2 })
      expect(await auditSince(db, mark, true)).toEqual(
        [d0, d2].map((d) => ({
          ...by,
          action: 'droplet.update',
          entityId: d.id,
          changes: { size: { from: 's', to: 'l' } },
        })),
      )

      // A patch per row; d1's name is unchanged, so only its status is recorded.
      mark = await markAudit(db)
      expect(
        await repo.bulkUpdateEach([
          { id: d0.id, name: 'b-zero' },
          { id: d1.id, status: 'stopped', name: d1.name },
          { id: d2.id, ipAddress: '2001:db8::7' },
          { id: theirs.id, name: 'hijacked' },
        ]),
      ).toEqual({ updated: [d0.id, d1.id, d2.id], notFound: [theirs.id] })
      expect(await auditSince(db, mark, true)).toEqual([
        { ...by, action: 'droplet.update', entityId: d0.id, changes: { name: { from: d0.name, to: 'b-zero' } } },
        { ...by, action: 'droplet.update', entityId: d1.id, changes: { status: { from: 'active', to: 'stopped' } } },
        { ...by, action: 'droplet.update', entityId: d2.id, changes: { ipAddress: { from: null, to: '2001:db8::7' } } },
      ])

      // Bob's droplet only ever has its create row (by bob).
      expect((await auditRows(db, 'entity_id = ?', [theirs.id])).map((r) => [r.action, r.actorId])).toEqual([
        ['droplet.create', bob.id],
      ])
    })

    it('audits writes through repo.query(): patch, delete and insert, within the scope', async () => {
      const repo = db.scope(alice, META).repo(Droplet)
      const [d0, d1] = byId(
        await repo.bulkCreate([
          { name: 'q-0', region: 'sfo3', size: 's' },
          { name: 'q-1', region: 'sfo3', size: 's', status: 'active' },
        ]),
      ) as [Droplet, Droplet]
      const theirs = await db.scope(bob).repo(Droplet).create({ name: 'q-bob', region: 'sfo3', size: 's' })
      const by = { actorId: alice.id, actorRole: 'user', entityType: 'droplet', metadata: META }

      let mark = await markAudit(db)
      // Bob's droplet matches the where clause but is outside the scope; d1 is already active.
      expect(await repo.query().patch({ status: 'active' }).where('region', 'sfo3')).toBe(2)
      expect(await auditSince(db, mark, true)).toEqual([
        { ...by, action: 'droplet.update', entityId: d0.id, changes: { status: { from: 'building', to: 'active' } } },
      ])

      mark = await markAudit(db)
      const inserted = await repo.query().insert({ userId: alice.id, name: 'q-2', region: 'sfo3', size: 's' })
      expect(inserted.userId).toBe(alice.id)
      expect(await repo.query().delete().where('name', 'q-1')).toBe(1)
      expect(await repo.query().delete().where('name', 'q-bob')).toBe(0)
      expect(await auditSince(db, mark)).toEqual([
        {
          ...by,
          action: 'droplet.create',
          entityId: inserted.id,
          changes: created(alice.id, 'q-2', 'sfo3', 's'),
        },
        {
          ...by,
          action: 'droplet.delete',
          entityId: d1.id,
          changes: {
            userId: { from: alice.id },
            name: { from: 'q-1' },
            region: { from: 'sfo3' },
            size: { from: 's' },
            status: { from: 'active' },
            ipAddress: { from: null },
          },
        },
      ])

      // In a scope transaction that fails, the rows go with the change.
      mark = await markAudit(db)
      await expect(
        db.scope(alice, META).transaction(async (tx) => {
          await tx.repo(Droplet).query().patch({ size: 'xl' }).where('id', d0.id)
          throw new Error('roll back')
        }),
      ).rejects.toThrow('roll back')
      expect(await auditSince(db, mark)).toEqual([])
      expect((await auditRows(db, 'entity_id = ?', [theirs.id])).map((r) => r.action)).toEqual(['droplet.create'])
    })
  })

  describe('same transaction', () => {
    it.runIf(rls)('lets raw SQL in a scoped transaction append audit rows only in the actor’s own name', async () => {
      const before = await auditSnapshot(db)
      const insert = `insert into audit_logs (id, actor_id, actor_role, action, created_at)
        values (gen_random_uuid(), ?, ?, 'forged.entry', clock_timestamp())`
      for (const [actorId, role] of [
        [bob.id, 'user'],
        [alice.id, 'admin'],
        [null, 'system'],
      ] as const) {
        await expect(
          db.scope(alice).transaction((tx) => tx.knex.raw(insert, [actorId, role])),
          `${actorId} ${role}`,
        ).rejects.toBeInstanceOf(ForbiddenError)
      }
      await expect(
        db.scope(alice).transaction(async (tx) => {
          await tx.knex.raw(insert, [alice.id, 'user'])
          throw new Error('roll back')
        }),
      ).rejects.toThrow('roll back')
      expect(await auditSnapshot(db)).toEqual(before)
    })

    it('rolls the audit rows back with the change when a scope transaction fails', async () => {
      const scope = db.scope(alice, META)
      const d = await scope.repo(Droplet).create({ name: 'tx-target', region: 'nyc3', size: 's' })
      const mark = await markAudit(db)
      const before = await dropletRows(db, [d.id])
      let insideTransaction = -1
      await expect(
        scope.transaction(async (tx) => {
          await tx.repo(Droplet).update(d.id, { status: 'active' })
          await tx.repo(Droplet).create({ name: 'tx-made', region: 'nyc3', size: 's' })
          const { rows } = await tx.knex.raw<{ rows: { n: number }[] }>(
            'select count(*)::int as n from audit_logs where entity_id = ?',
            [d.id],
          )
          insideTransaction = rows[0]!.n
          throw new Error('roll back')
        }),
      ).rejects.toThrow('roll back')
      // The create row from before, and the update row, while the transaction was open.
      expect(insideTransaction).toBe(2)
      expect(await dropletRows(db, [d.id])).toEqual(before)
      expect(await db.model(Droplet).query().where('name', 'tx-made').resultSize()).toBe(0)
      expect(await auditSince(db, mark)).toEqual([])

      await scope.transaction((tx) => tx.repo(Droplet).update(d.id, { status: 'active' }))
      expect((await auditSince(db, mark)).map((r) => [r.action, r.entityId, r.changes])).toEqual([
        ['droplet.update', d.id, { status: { from: 'building', to: 'active' } }],
      ])
    })

    it('fails the write and changes nothing when its audit row cannot be written', async () => {
      const repo = db.scope(alice, META).repo(Droplet)
      const [first, second] = byId(
        await repo.bulkCreate([
          { name: 'inj-a', region: 'nyc3', size: 's' },
          { name: 'inj-b', region: 'nyc3', size: 's' },
        ]),
      ) as [Droplet, Droplet]
      // The audit insert fails for rows about `second` (the later id, so bulk chunks of one reach it last) and for
      // any create of a droplet named 'poison'.
      await db.knex.raw(`create function audit_test_fail() returns trigger language plpgsql as $$
        begin
          if new.entity_id = '${second.id}' or new.changes #>> '{name,to}' = 'poison' then
            raise exception 'injected audit failure';
          end if;
          return new;
        end $$`)
      await db.knex.raw(
        'create trigger audit_test_fail before insert on audit_logs for each row execute function audit_test_fail()',
      )
      try {
        const mark = await markAudit(db)
        const before = await dropletRows(db, [first.id, second.id])
        const injected = /injected audit failure/
        await expect(repo.update(second.id, { status: 'stopped' })).rejects.toThrow(injected)
        await expect(repo.delete(second.id)).rejects.toThrow(injected)
        await expect(repo.bulkUpdate([second.id, first.id], { status: 'stopped' }, { chunkSize: 1 })).rejects.toThrow(
          injected,
        )
        await expect(
          repo.bulkUpdate({ filter: { name: { in: ['inj-a', 'inj-b'] } } }, { status: 'stopped' }, { chunkSize: 1 }),
        ).rejects.toThrow(injected)
        await expect(
          repo.bulkUpdateEach(
            [
              { id: first.id, name: 'inj-a2' },
              { id: second.id, name: 'inj-b2' },
            ],
            { chunkSize: 1 },
          ),
        ).rejects.toThrow(injected)
        await expect(repo.create({ name: 'poison', region: 'nyc3', size: 's' })).rejects.toThrow(injected)
        await expect(
          repo.bulkCreate(
            [
              { name: 'fine', region: 'nyc3', size: 's' },
              { name: 'poison', region: 'nyc3', size: 's' },
            ],
            { chunkSize: 1 },
          ),
        ).rejects.toThrow(injected)

        expect(await dropletRows(db, [first.id, second.id])).toEqual(before)
        expect(await db.model(Droplet).query().whereIn('name', ['fine', 'poison']).resultSize()).toBe(0)
        expect(await auditSince(db, mark)).toEqual([])
        // With a transaction per chunk, the chunk before the failure stays, with its audit row, and only it.
        await expect(
          repo.bulkUpdate([second.id, first.id], { status: 'stopped' }, { chunkSize: 1, transaction: 'chunk' }),
        ).rejects.toThrow(injected)
        expect((await db.model(Droplet).query().findById(first.id))?.status).toBe('stopped')
        expect(await dropletRows(db, [second.id])).toEqual(before.slice(1))
        expect((await auditSince(db, mark)).map((r) => [r.action, r.entityId, r.changes])).toEqual([
          ['droplet.update', first.id, { status: { from: 'building', to: 'stopped' } }],
        ])
      } finally {
        await db.knex.raw('drop trigger audit_test_fail on audit_logs')
        await db.knex.raw('drop function audit_test_fail()')
      }
    })
  })

  describe('custom events', () => {
    it('scope.audit.record writes one row with the scope’s actor, merging its metadata over the scope’s', async () => {
      const scope = db.scope(alice, META)
      const d = await scope.repo(Droplet).create({ name: 'reboot-me', region: 'nyc3', size: 's' })
      const mark = await markAudit(db)
      const logged = await scope.audit.record('droplet.reboot', {
        entityType: 'droplet',
        entityId: d.id,
        metadata: { x: 1, requestId: 'req-override' },
      })
      expect(logged).toBeInstanceOf(AuditLog)
      expect(logged).toMatchObject({
        actorId: alice.id,
        actorRole: 'user',
        action: 'droplet.reboot',
        entityType: 'droplet',
        entityId: d.id,
        changes: {},
      })
      expect(logged.metadata).toEqual({ ...META, x: 1, requestId: 'req-override' })
      expect(logged.createdAt).toBeInstanceOf(Date)

      const resized = await scope.audit.record('droplet.resize', {
        entityType: 'droplet',
        entityId: d.id,
        changes: { size: { from: 's', to: 'l' } },
      })
      const system = await db.system('hourly check').audit.record('maintenance.window_opened')
      expect(system).toMatchObject({ actorId: null, actorRole: 'system', entityType: null, entityId: null })
      expect(system.metadata).toEqual({ reason: 'hourly check' })

      const rows = (await auditRows(db)).filter((r) => !mark.has(r.id))
      expect(rows.map((r) => r.id)).toEqual([logged.id, resized.id, system.id])
      expect(rows.map(entry)).toEqual([
        {
          actorId: alice.id,
          actorRole: 'user',
          action: 'droplet.reboot',
          entityType: 'droplet',
          entityId: d.id,
          changes: {},
          metadata: { ...META, x: 1, requestId: 'req-override' },
        },
        {
          actorId: alice.id,
          actorRole: 'user',
          action: 'droplet.resize',
          entityType: 'droplet',
          entityId: d.id,
          changes: { size: { from: 's', to: 'l' } },
          metadata: META,
        },
        {
          actorId: null,
          actorRole: 'system',
          action: 'maintenance.window_opened',
          entityType: null,
          entityId: null,
          changes: {},
          metadata: { reason: 'hourly check' },
        },
      ])
    })

    it('commits and rolls back with the scope transaction it is recorded in', async () => {
      const scope = db.scope(alice, META)
      const d = await scope.repo(Droplet).create({ name: 'tx-event', region: 'nyc3', size: 's' })
      const mark = await markAudit(db)
      await expect(
        scope.transaction(async (tx) => {
          await tx.repo(Droplet).update(d.id, { status: 'active' })
          await tx.audit.record('droplet.reboot', { entityType: 'droplet', entityId: d.id })
          throw new Error('roll back')
        }),
      ).rejects.toThrow('roll back')
      expect(await auditSince(db, mark)).toEqual([])

      const logged = await scope.transaction(async (tx) => {
        await tx.repo(Droplet).update(d.id, { status: 'active' })
        return tx.audit.record('droplet.reboot', { entityType: 'droplet', entityId: d.id })
      })
      expect((await auditSince(db, mark)).map((r) => r.action)).toEqual(['droplet.update', 'droplet.reboot'])
      expect((await auditRows(db, 'id = ?', [logged.id])).map((r) => r.action)).toEqual(['droplet.reboot'])
    })

    it('refuses bad action names and bad events with a ValidationError, writing nothing', async () => {
      const scope = db.scope(alice, META)
      const before = await auditSnapshot(db)
      const badActions: unknown[] = ['Bad Name', '', 'a'.repeat(129), 42, undefined, null, '9lives', 'droplet reboot']
      for (const action of badActions) {
        await expect(scope.audit.record(action as string), String(action)).rejects.toBeInstanceOf(ValidationError)
      }
      const badEvents: unknown[] = [
        [],
        null,
        'droplet',
        { entityType: 'droplet', colour: 'red' },
        { changes: 'status' },
        { changes: [] },
        { changes: null },
        { metadata: ['x'] },
        { entityId: '' },
        { entityType: 7 },
        { entityType: 'x'.repeat(65) },
        { entityId: 'x'.repeat(256) },
      ]
      for (const event of badEvents) {
        await expect(
          scope.audit.record('droplet.reboot', event as never),
          JSON.stringify(event),
        ).rejects.toBeInstanceOf(ValidationError)
      }
      await expect(db.system('x').audit.record('Bad Name')).rejects.toBeInstanceOf(ValidationError)
      expect(await auditSnapshot(db)).toEqual(before)
      // The longest name allowed is fine.
      const longest = await scope.audit.record('a'.repeat(128))
      expect(longest.action).toHaveLength(128)
    })
  })

  describe('logins', () => {
    it('records auth.login and auth.login_failed with the reason and the request metadata, never the password', async () => {
      const mark = await markAudit(db)
      expect((await db.auth.login('alice', alicePassword, META)).id).toBe(alice.id)
      await expect(db.auth.login('ALICE@example.com', 'guess-9x7', META)).rejects.toBeInstanceOf(AuthenticationError)
      await expect(db.auth.login('ghost', alicePassword, META)).rejects.toBeInstanceOf(AuthenticationError)
      expect((await db.auth.login('root', adminPassword)).id).toBe(admin.id)
      await expect(db.auth.login('carol', carolPassword, META)).rejects.toBeInstanceOf(AuthenticationError)
      // Malformed input fails before the user lookup: no attempt, no row.
      await expect(db.auth.login('', alicePassword, META)).rejects.toBeInstanceOf(AuthenticationError)
      await expect(db.auth.login('alice', 42 as never, META)).rejects.toBeInstanceOf(AuthenticationError)
      expect(await auditSince(db, mark)).toEqual([
        {
          actorId: alice.id,
          actorRole: 'user',
          action: 'auth.login',
          entityType: 'user',
          entityId: alice.id,
          changes: {},
          metadata: { ...META, login: 'alice', reason: 'ok' },
        },
        {
          actorId: alice.id,
          actorRole: 'user',
          action: 'auth.login_failed',
          entityType: 'user',
          entityId: alice.id,
          changes: {},
          metadata: { ...META, login: 'ALICE@example.com', reason: 'wrong-password' },
        },
        {
          actorId: null,
          actorRole: null,
          action: 'auth.login_failed',
          entityType: 'user',
          entityId: null,
          changes: {},
          metadata: { ...META, login: 'ghost', reason: 'unknown-user' },
        },
        {
          actorId: admin.id,
          actorRole: 'admin',
          action: 'auth.login',
          entityType: 'user',
          entityId: admin.id,
          changes: {},
          metadata: { login: 'root', reason: 'ok' },
        },
        {
          actorId: carol.id,
          actorRole: 'user',
          action: 'auth.login_failed',
          entityType: 'user',
          entityId: carol.id,
          changes: {},
          metadata: { ...META, login: 'carol', reason: 'inactive' },
        },
      ])
      expect(await auditRowsContaining(db, 'ghost')).toBeGreaterThan(0)
      for (const secret of [alicePassword, 'guess-9x7', adminPassword, carolPassword]) {
        expect(await auditRowsContaining(db, secret)).toBe(0)
      }
    })
  })

  describe('reading the trail', () => {
    let trail: Droplet
    let bobsDroplet: Droplet
    /** The trail's rows, oldest first, with their creation times to the microsecond. */
    let trailRows: { id: string; createdAt: string }[]

    beforeAll(async () => {
      const mine = db.scope(alice, META).repo(Droplet)
      trail = await mine.create({ name: 'trail', region: 'nyc3', size: 's' })
      await mine.update(trail.id, { status: 'active' })
      await db.scope(alice, META).audit.record('droplet.reboot', { entityType: 'droplet', entityId: trail.id })
      await db.scope(admin).repo(Droplet).update(trail.id, { name: 'trail-renamed' })
      await mine.update(trail.id, { ipAddress: '192.0.2.99' })
      await mine.delete(trail.id)
      bobsDroplet = await db.scope(bob).repo(Droplet).create({ name: 'bob-trail', region: 'nyc3', size: 's' })
      await db.scope(bob).repo(Droplet).update(bobsDroplet.id, { status: 'stopped' })
      await db.auth.login('alice', 'not-her-password').catch(() => undefined)
      await db.auth.login('bob', 'not-his-password').catch(() => undefined)
      await db.auth.login('nobody-at-all', 'whatever').catch(() => undefined)
      const { rows } = await db.knex.raw<{ rows: { id: string; createdAt: string }[] }>(
        `select id::text as id, to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as "createdAt"
         from audit_logs where entity_type = 'droplet' and entity_id = ? order by created_at, id`,
        [trail.id],
      )
      trailRows = rows
    })

    it('walks one droplet’s trail newest first in keyset pages of two', async () => {
      expect(trailRows).toHaveLength(6)
      const filter = { entityType: 'droplet', entityId: trail.id }
      const asAdmin = await keysetPages(db.scope(admin).repo(AuditLog), filter, 2)
      expect(asAdmin.map((page) => page.length)).toEqual([2, 2, 2])
      expect(asAdmin.flat().map((r) => [r.action, r.actorId])).toEqual([
        ['droplet.delete', alice.id],
        ['droplet.update', alice.id],
        ['droplet.update', admin.id],
        ['droplet.reboot', alice.id],
        ['droplet.update', alice.id],
        ['droplet.create', alice.id],
      ])
      expect(asAdmin.flat().map((r) => r.id)).toEqual(trailRows.map((r) => r.id).reverse())
      expect(asAdmin.flat().every((r) => r instanceof AuditLog && r.entityId === trail.id)).toBe(true)

      // Alice's own view of the same trail leaves out what the admin did.
      const asAlice = await keysetPages(db.scope(alice).repo(AuditLog), filter, 2)
      expect(asAlice.map((page) => page.length)).toEqual([2, 2, 1])
      expect(asAlice.flat().map((r) => r.action)).toEqual([
        'droplet.delete',
        'droplet.update',
        'droplet.reboot',
        'droplet.update',
        'droplet.create',
      ])
      expect(asAlice.flat().every((r) => r.actorId === alice.id)).toBe(true)
    })

    it('filters by actorId, action and createdAt', async () => {
      const repo = db.scope(admin).repo(AuditLog)
      const ids = (rows: readonly { id: string }[]) => rows.map((r) => r.id)

      const bobs = await keysetPages(repo, { actorId: bob.id }, 100)
      const bobRaw = await auditRows(db, 'actor_id = ?', [bob.id])
      expect(bobRaw.length).toBeGreaterThanOrEqual(3)
      expect(ids(bobs.flat())).toEqual(ids(bobRaw).reverse())
      expect(await repo.count({ actorId: bob.id })).toBe(bobRaw.length)

      const failed = await keysetPages(repo, { action: 'auth.login_failed' }, 100)
      const failedRaw = await auditRows(db, `action = 'auth.login_failed'`)
      expect(ids(failed.flat())).toEqual(ids(failedRaw).reverse())
      expect(failed.flat().map((r) => r.metadata.login)).toContain('nobody-at-all')

      expect(
        (await repo.list({ filter: { entityId: trail.id, action: 'droplet.update' }, sort: ['createdAt'] })).map(
          (r) => r.changes,
        ),
      ).toEqual([
        { status: { from: 'building', to: 'active' } },
        { name: { from: 'trail', to: 'trail-renamed' } },
        { ipAddress: { from: null, to: '192.0.2.99' } },
      ])

      const window = await repo.list({
        filter: { entityId: trail.id, createdAt: { gte: trailRows[1]!.createdAt, lt: trailRows[4]!.createdAt } },
        sort: ['createdAt'],
      })
      expect(ids(window)).toEqual(ids(trailRows.slice(1, 4)))
      expect(window.map((r) => r.action)).toEqual(['droplet.update', 'droplet.reboot', 'droplet.update'])
    })

    it('shows admins every entry and users only the entries where they are the actor', async () => {
      const all = await auditRows(db)
      const adminRepo = db.scope(admin).repo(AuditLog)
      expect(await adminRepo.count()).toBe(all.length)
      const everything = (await keysetPages(adminRepo, undefined, 100)).flat()
      expect(everything.map((r) => r.id)).toEqual(all.map((r) => r.id).reverse())

      for (const user of [alice, bob]) {
        const repo = db.scope(user).repo(AuditLog)
        const own = all.filter((r) => r.actorId === user.id)
        const seen = (await keysetPages(repo, undefined, 100)).flat()
        expect(seen.map((r) => r.id)).toEqual(own.map((r) => r.id).reverse())
        expect(await repo.count()).toBe(own.length)
        // Failed logins on their own account are theirs to see.
        expect(seen.filter((r) => r.action === 'auth.login_failed').map((r) => r.metadata.reason)).toContain(
          'wrong-password',
        )
      }
      const aliceRepo = db.scope(alice).repo(AuditLog)
      const bobRow = all.find((r) => r.actorId === bob.id)!
      expect(await aliceRepo.findById(bobRow.id)).toBeUndefined()
      await expect(aliceRepo.getById(bobRow.id)).rejects.toBeInstanceOf(NotFoundError)
      expect(await aliceRepo.count({ actorId: bob.id })).toBe(0)
      expect(await aliceRepo.list({ filter: { entityId: bobsDroplet.id } })).toEqual([])
      expect(await aliceRepo.list({ filter: { or: [{ actorId: bob.id }, { actorId: { isNull: true } }] } })).toEqual([])
      const viaQuery = await aliceRepo.query().where('actor_id', bob.id).orWhereNull('actor_id')
      expect(viaQuery).toEqual([])
    })

    it('lets nobody create, update or delete audit rows through repo(AuditLog)', async () => {
      const before = await auditSnapshot(db)
      const own = (await auditRows(db, 'actor_id = ?', [alice.id]))[0]!
      for (const scope of [db.scope(alice, META), db.scope(admin)]) {
        const repo = scope.repo(AuditLog)
        await expect(repo.create({ action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
        await expect(repo.bulkCreate([{ action: 'forged.entry' }])).rejects.toBeInstanceOf(ForbiddenError)
        await expect(repo.update(own.id, { action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
        await expect(repo.bulkUpdate([own.id], { action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
        await expect(repo.delete(own.id)).rejects.toBeInstanceOf(ForbiddenError)
        await expect(repo.query().patch({ action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
        await expect(repo.query().delete()).rejects.toBeInstanceOf(ForbiddenError)
        await expect(repo.query().insert({ action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
      }
      expect(await auditSnapshot(db)).toEqual(before)
    })
  })
})

/** A host's own model with a secret field of its own. */
class ApiKey extends BaseModel {
  static override tableName = 'api_keys'
  static override jsonSchema: JSONSchema = {
    type: 'object',
    required: ['userId', 'label', 'token'],
    additionalProperties: false,
    properties: {
      ...BaseModel.baseProperties,
      userId: { type: 'string', format: 'uuid' },
      label: { type: 'string', minLength: 1, maxLength: 100 },
      token: { type: 'string', minLength: 1, maxLength: 200 },
    },
  }
  static override policy: Policy = definePolicy({ owner: ownedBy('userId') })
  static override secretFields: readonly string[] = ['token']
  declare userId: string
  declare label: string
  declare token: string
}

describe('redaction, append-only and retention', () => {
  let db: Database
  let url: string
  let cleanup: () => Promise<void>
  let alice: User

  beforeAll(async () => {
    ;({ db, url, cleanup } = await openTestDatabase())
    alice = await db
      .model(User)
      .query()
      .insertAndFetch({ email: 'alice@example.com', username: 'alice', passwordHash: 'x' })
    await db.knex.raw(`create table api_keys (
      id uuid primary key, user_id uuid not null references users (id), label text not null, token text not null,
      created_at timestamptz not null default now(), updated_at timestamptz not null default now())`)
  })
  afterAll(async () => {
    await cleanup()
  })

  it('records a user’s password hash as redacted, on create, update and delete, and never its value', async () => {
    const hashes = await Promise.all(
      ['first', 'second', 'third', 'fourth', 'fifth', 'sixth'].map((pw) => hashPassword(pw, fastHash)),
    )
    const [h1, h2, h3, h4, h5, h6] = hashes as [string, string, string, string, string, string]
    const repo = db.system('account admin').repo(User)
    const mark = await markAudit(db)
    const user = await repo.create({ email: 'grace@example.com', username: 'grace', passwordHash: h1 })
    await repo.update(user.id, { passwordHash: h2 })
    await repo.update(user.id, { passwordHash: h2 })
    await repo.update(user.id, { passwordHash: h3, role: 'admin' })
    await repo.bulkUpdateEach([{ id: user.id, passwordHash: h4 }])
    // The search below finds the hash where it is.
    const { rows } = await db.knex.raw<{ rows: { n: number }[] }>(
      'select count(*)::int as n from users u where strpos(u::text, ?) > 0',
      [h4],
    )
    expect(rows[0]!.n).toBe(1)
    await repo.query().patch({ passwordHash: h5 }).where('id', user.id)
    await repo.delete(user.id)
    // Through query() too: insert and delete.
    const other = await repo.query().insert({ email: 'ada@example.com', username: 'ada', passwordHash: h6 })
    expect(await repo.query().delete().where('id', other.id)).toBe(1)

    const by = { actorId: null, actorRole: 'system', entityType: 'user', entityId: user.id }
    const meta = { reason: 'account admin' }
    expect(await auditSince(db, mark)).toEqual([
      {
        ...by,
        action: 'user.create',
        metadata: meta,
        changes: {
          email: { to: 'grace@example.com' },
          username: { to: 'grace' },
          passwordHash: { redacted: true },
          role: { to: 'user' },
          isActive: { to: true },
          preferences: { to: {} },
        },
      },
      { ...by, action: 'user.update', metadata: meta, changes: { passwordHash: { redacted: true } } },
      {
        ...by,
        action: 'user.update',
        metadata: meta,
        changes: { passwordHash: { redacted: true }, role: { from: 'user', to: 'admin' } },
      },
      { ...by, action: 'user.update', metadata: meta, changes: { passwordHash: { redacted: true } } },
      { ...by, action: 'user.update', metadata: meta, changes: { passwordHash: { redacted: true } } },
      {
        ...by,
        action: 'user.delete',
        metadata: meta,
        changes: {
          email: { from: 'grace@example.com' },
          username: { from: 'grace' },
          passwordHash: { redacted: true },
          role: { from: 'admin' },
          isActive: { from: true },
          preferences: { from: {} },
        },
      },
      {
        ...by,
        entityId: other.id,
        action: 'user.create',
        metadata: meta,
        changes: {
          email: { to: 'ada@example.com' },
          username: { to: 'ada' },
          passwordHash: { redacted: true },
          role: { to: 'user' },
          isActive: { to: true },
          preferences: { to: {} },
        },
      },
      {
        ...by,
        entityId: other.id,
        action: 'user.delete',
        metadata: meta,
        changes: {
          email: { from: 'ada@example.com' },
          username: { from: 'ada' },
          passwordHash: { redacted: true },
          role: { from: 'user' },
          isActive: { from: true },
          preferences: { from: {} },
        },
      },
    ])
    for (const hash of hashes) {
      expect(await auditRowsContaining(db, hash)).toBe(0)
      // Not even a recognisable piece of it (the salt and key parts of the PHC string).
      for (const part of hash.split('$').slice(-2)) expect(await auditRowsContaining(db, part)).toBe(0)
    }
  })

  it('redacts a host model’s own secretFields, under its snake_case entity type', async () => {
    const token = `tok_${randomBytes(16).toString('hex')}`
    const rotated = `tok_${randomBytes(16).toString('hex')}`
    const repo = db.scope(alice, META).repo(ApiKey)
    const mark = await markAudit(db)
    const key = await repo.create({ label: 'ci', token })
    expect(key.userId).toBe(alice.id)
    await repo.update(key.id, { token: rotated })
    await repo.update(key.id, { label: 'deploy', token: rotated })
    await repo.delete(key.id)
    const by = { actorId: alice.id, actorRole: 'user', entityType: 'api_key', entityId: key.id, metadata: META }
    expect(await auditSince(db, mark)).toEqual([
      {
        ...by,
        action: 'api_key.create',
        changes: { userId: { to: alice.id }, label: { to: 'ci' }, token: { redacted: true } },
      },
      { ...by, action: 'api_key.update', changes: { token: { redacted: true } } },
      { ...by, action: 'api_key.update', changes: { label: { from: 'ci', to: 'deploy' } } },
      {
        ...by,
        action: 'api_key.delete',
        changes: { userId: { from: alice.id }, label: { from: 'deploy' }, token: { redacted: true } },
      },
    ])
    expect(await auditRowsContaining(db, token)).toBe(0)
    expect(await auditRowsContaining(db, rotated)).toBe(0)
  })

  it('refuses UPDATE, DELETE and TRUNCATE of audit_logs, even for the application’s own connection', async () => {
    await db.system('seed').audit.record('test.entry', { entityType: 'test', entityId: 'one' })
    const one = (await auditRows(db, `action = 'test.entry'`))[0]!
    const before = await auditSnapshot(db)
    expect(before.length).toBeGreaterThan(1)
    const refused = { code: '42501' }
    await expect(db.knex.raw(`update audit_logs set action = 'forged.entry'`)).rejects.toMatchObject(refused)
    await expect(db.knex.raw(`update audit_logs set metadata = '{}' where id = ?`, [one.id])).rejects.toMatchObject(
      refused,
    )
    await expect(db.knex.raw('delete from audit_logs')).rejects.toMatchObject(refused)
    await expect(db.knex.raw('delete from audit_logs where id = ?', [one.id])).rejects.toMatchObject(refused)
    await expect(db.knex.raw('truncate audit_logs')).rejects.toMatchObject(refused)
    expect(await auditSnapshot(db)).toEqual(before)
  })

  it('refuses every write through the system scope’s AuditLog repository with a ForbiddenError', async () => {
    const before = await auditSnapshot(db)
    const id = (await auditRows(db))[0]!.id
    const repo = db.system('x').repo(AuditLog)
    await expect(repo.create({ action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
    await expect(repo.bulkCreate([{ action: 'forged.entry' }])).rejects.toBeInstanceOf(ForbiddenError)
    await expect(repo.query().insert({ action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
    await expect(repo.query().patch({ action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
    await expect(repo.query().delete()).rejects.toBeInstanceOf(ForbiddenError)
    await expect(repo.update(id, { action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
    await expect(repo.delete(id)).rejects.toBeInstanceOf(ForbiddenError)
    await expect(repo.bulkUpdate([id], { action: 'forged.entry' })).rejects.toBeInstanceOf(ForbiddenError)
    expect(await auditSnapshot(db)).toEqual(before)
  })

  it('purge refuses bad input with a ValidationError and deletes nothing', async () => {
    const before = await auditSnapshot(db)
    const bad: unknown[] = [
      undefined,
      {},
      { reason: 'retention' },
      { before: '2020-01-01T00:00:00Z', reason: 'retention' },
      { before: Date.now(), reason: 'retention' },
      { before: new Date('not a date'), reason: 'retention' },
      { before: new Date() },
      { before: new Date(), reason: '' },
      { before: new Date(), reason: '   ' },
      { before: new Date(), reason: 'x'.repeat(501) },
      { before: new Date(), reason: 42 },
    ]
    for (const options of bad) {
      await expect(db.audit.purge(options as never), JSON.stringify(options)).rejects.toBeInstanceOf(ValidationError)
    }
    expect(await auditSnapshot(db)).toEqual(before)
  })

  it('purge fails for a role that does not own audit_logs, and deletes nothing', async () => {
    const role = `audit_${randomBytes(5).toString('hex')}`
    const password = randomBytes(12).toString('hex')
    await adminQuery(`create role ${role} login password '${password}'`)
    let other: Database | undefined
    try {
      await db.knex.raw(`grant select, insert, delete on audit_logs to ${role}`)
      await db.knex.raw(`grant select, update on wincloud_audit_chain to ${role}`)
      await db.knex.raw(`grant execute on function wincloud_audit_purge(timestamptz) to ${role}`)
      const connection = new URL(url)
      connection.username = role
      connection.password = password
      other = await createDatabase({ connection: connection.toString() })
      const before = await auditSnapshot(db)
      const future = new Date(Date.now() + 3_600_000)
      await expect(other.audit.purge({ before: future, reason: 'not mine to purge' })).rejects.toBeInstanceOf(
        ForbiddenError,
      )
      // Its DELETE privilege does not help either, nor the purge switch.
      await expect(other.knex.raw('delete from audit_logs')).rejects.toMatchObject({ code: '42501' })
      await expect(
        other.knex.transaction(async (trx) => {
          await trx.raw(`set local wincloud.audit_purge = 'on'`)
          await trx.raw('delete from audit_logs')
        }),
      ).rejects.toMatchObject({ code: '42501' })
      expect(await auditSnapshot(db)).toEqual(before)
    } finally {
      await other?.close()
      await db.knex.raw(`drop owned by ${role}`)
      await adminQuery(`drop role if exists ${role}`)
    }
  })

  it('purge deletes only the rows written before the cutoff and records that it did', async () => {
    const old = await auditRows(db)
    expect(old.length).toBeGreaterThan(0)
    const cutoff = await cutoffNow(db)
    const mark = await markAudit(db)
    await db.scope(alice, META).audit.record('test.after_cutoff', { entityId: 'a' })
    await db.scope(alice, META).audit.record('test.after_cutoff', { entityId: 'b' })
    const kept = (await auditRows(db)).filter((r) => !mark.has(r.id))

    expect(await db.audit.purge({ before: cutoff, reason: 'retention: 90 days' })).toEqual({ deleted: old.length })
    const after = await auditRows(db)
    expect(after.slice(0, 2).map((r) => r.id)).toEqual(kept.map((r) => r.id))
    expect(after.slice(2).map(entry)).toEqual([
      {
        actorId: null,
        actorRole: 'system',
        action: 'audit.purge',
        entityType: 'audit_log',
        entityId: null,
        changes: {},
        metadata: { reason: 'retention: 90 days', before: cutoff.toISOString(), deleted: old.length, anchorSeq: '0' },
      },
    ])
    // Nothing older is left to purge.
    expect(await db.audit.purge({ before: cutoff, reason: 'again' })).toEqual({ deleted: 0 })
    expect(await auditCount(db)).toBe(4)
  })
})

describe('hash chain', () => {
  let db: Database
  let url: string
  let cleanup: () => Promise<void>
  let users: User[]

  /** Runs statements as a superuser with triggers off: what someone tampering with the table could do. */
  async function outOfBand<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
  ): Promise<R[]> {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      await client.query('set session_replication_role = replica')
      return (await client.query<R>(sql, params)).rows
    } finally {
      await client.end()
    }
  }

  interface ChainRow {
    id: string
    seq: string
    prev: string
    hash: string
  }

  async function chain(): Promise<ChainRow[]> {
    const { rows } = await db.knex.raw<{ rows: ChainRow[] }>(
      `select id::text as id, chain_seq::text as seq, encode(prev_hash, 'hex') as prev, encode(row_hash, 'hex') as hash
       from audit_logs where chain_seq is not null order by chain_seq`,
    )
    return rows
  }

  /** A row as JSON, to put it back exactly as it was. */
  async function saved(id: string): Promise<string> {
    const rows = await outOfBand<{ row: string }>(
      'select row_to_json(a)::text as row from audit_logs a where id = $1',
      [id],
    )
    return rows[0]!.row
  }

  async function restore(row: string): Promise<void> {
    await outOfBand('insert into audit_logs select * from json_populate_record(null::audit_logs, $1::json)', [row])
  }

  async function someWrites(user: User, tag: string): Promise<number> {
    const scope = db.scope(user, { requestId: tag })
    const repo = scope.repo(Droplet)
    const made = await repo.bulkCreate(
      [0, 1, 2].map((i) => ({ name: `${tag}-${i}`, region: 'nyc3', size: 's' })),
      { chunkSize: 2 },
    )
    const one = await repo.create({ name: `${tag}-one`, region: 'nyc3', size: 's' })
    for (let i = 0; i < 4; i += 1) await repo.update(one.id, { name: `${tag}-one-${i}` })
    await repo.bulkUpdate(
      made.map((d) => d.id),
      { status: 'active' },
    )
    await scope.transaction(async (tx) => {
      await tx.repo(Droplet).update(one.id, { status: 'stopped' })
      await tx.audit.record('droplet.reboot', { entityType: 'droplet', entityId: one.id })
    })
    await repo.bulkUpdateEach(made.map((d, i) => ({ id: d.id, name: `${tag}-renamed-${i}` })))
    await repo.delete(one.id)
    return 3 + 1 + 4 + 3 + 2 + 3 + 1
  }

  beforeAll(async () => {
    ;({ db, url, cleanup } = await openTestDatabase({ auth: { passwordHash: fastHash } }))
    const hash = await hashPassword('chain-password', fastHash)
    users = await db
      .model(User)
      .query()
      .insert(
        Array.from({ length: 8 }, (_, i) => ({
          email: `u${i}@example.com`,
          username: `user${i}`,
          passwordHash: hash,
        })),
      )
      .returning('*')
  })
  afterAll(async () => {
    await cleanup()
  })

  it('is off until enabled: verify checks nothing, head is undefined, rows carry no chain columns', async () => {
    await db.system('before the chain').audit.record('test.unchained')
    expect(await db.audit.verify()).toEqual({ ok: true, enabled: false, checked: 0, anchorSeq: '0' })
    expect(await db.audit.head()).toBeUndefined()
    const { rows } = await db.knex.raw<{ rows: { n: number }[] }>(
      'select count(*)::int as n from audit_logs where chain_seq is null and prev_hash is null and row_hash is null',
    )
    expect(rows[0]!.n).toBe(1)
  })

  it('enableHashChain is idempotent', async () => {
    const first = await db.audit.enableHashChain()
    const second = await db.audit.enableHashChain()
    expect(first.enabledAt).toBeInstanceOf(Date)
    expect(second.enabledAt.getTime()).toBe(first.enabledAt.getTime())
    const { rows } = await db.knex.raw<{ rows: { n: number }[] }>(
      `select count(*)::int as n from pg_trigger where tgrelid = 'audit_logs'::regclass and tgname like 'wincloud_audit_logs_chain%'`,
    )
    expect(rows[0]!.n).toBe(2)
    // On, with nothing chained yet: the row written before it started is not an out-of-band insert.
    expect(await db.audit.verify()).toEqual({ ok: true, enabled: true, checked: 0, anchorSeq: '0' })
    expect(await db.audit.head()).toEqual({ seq: '0', hash: '00'.repeat(32) })
  })

  it('numbers every later row 1..N, links each to the one before, and verifies', async () => {
    const expected = await someWrites(users[0]!, 'solo')
    await db.auth.login('user0', 'chain-password')
    await db.auth.login('user0', 'wrong').catch(() => undefined)
    // Multi-byte text hashes the same in the database and in verify().
    const scope = db.scope(users[0]!, { userAgent: 'Navigateur/1.0 (é, 日本, 😀)' })
    const unicode = await scope.repo(Droplet).create({ name: 'wéb-日本-😀', region: 'nyc3', size: 's' })
    await scope.audit.record('droplet.note', { entityId: unicode.id, metadata: { note: 'ünïcödé ✓ "quoted" \\ back' } })
    // A nested transaction (a savepoint) that rolls back takes its rows out of the chain with it.
    await scope.transaction(async (tx) => {
      await tx.audit.record('test.outer')
      await tx
        .transaction(async (inner) => {
          await inner.audit.record('test.inner')
          await inner.repo(Droplet).update(unicode.id, { status: 'error' })
          throw new Error('roll back the savepoint')
        })
        .catch(() => undefined)
      await tx.audit.record('test.outer')
    })
    expect(
      await auditRows(db, `action = 'test.inner' or (entity_id = ? and action = 'droplet.update')`, [unicode.id]),
    ).toEqual([])
    const rows = await chain()
    expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: expected + 6 }, (_, i) => i + 1))
    expect(rows[0]!.prev).toBe('00'.repeat(32))
    for (let i = 1; i < rows.length; i += 1) expect(rows[i]!.prev).toBe(rows[i - 1]!.hash)
    // Each hash is sha256(prev_hash || canonical row), as the database function encodes the row.
    const { rows: mismatched } = await db.knex.raw<{ rows: unknown[] }>(
      `select id from audit_logs where chain_seq is not null and row_hash <> sha256(prev_hash || convert_to(
         wincloud_audit_canonical(chain_seq, id, created_at, actor_id, actor_role, action, entity_type, entity_id,
           changes, metadata), 'UTF8'))`,
    )
    expect(mismatched).toEqual([])

    expect(await db.audit.verify()).toEqual({ ok: true, enabled: true, checked: rows.length, anchorSeq: '0' })
    const progress: number[] = []
    expect(await db.audit.verify({ batchSize: 4, onProgress: (n) => progress.push(n) })).toMatchObject({
      ok: true,
      checked: rows.length,
    })
    expect(progress.at(-1)).toBe(rows.length)
    expect(progress.length).toBeGreaterThan(rows.length / 4)
    await expect(db.audit.verify({ batchSize: 0 })).rejects.toBeInstanceOf(ValidationError)
    expect(await db.audit.head()).toEqual({ seq: rows.at(-1)!.seq, hash: rows.at(-1)!.hash })
  })

  it('stays gap-free with 8 scopes writing concurrently', async () => {
    const before = (await chain()).length
    const counts = await Promise.all(users.map((user, w) => someWrites(user, `w${w}`)))
    const total = before + counts.reduce((a, b) => a + b, 0)
    const rows = await chain()
    expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    for (let i = 1; i < rows.length; i += 1) expect(rows[i]!.prev).toBe(rows[i - 1]!.hash)
    expect(await db.audit.verify()).toEqual({ ok: true, enabled: true, checked: total, anchorSeq: '0' })
    expect(await db.audit.head()).toEqual({ seq: String(total), hash: rows.at(-1)!.hash })
  })

  it('names a row whose content was modified', async () => {
    const rows = await chain()
    const target = rows[4]!
    const original = await outOfBand<{ changes: string }>(
      'select changes::text as changes from audit_logs where id = $1',
      [target.id],
    )
    await outOfBand(`update audit_logs set changes = '{"status": {"from": "x", "to": "y"}}' where id = $1`, [target.id])
    expect(await db.audit.verify()).toMatchObject({
      ok: false,
      enabled: true,
      checked: 4,
      problem: { kind: 'modified', id: target.id, seq: target.seq },
    })
    await outOfBand('update audit_logs set changes = $2::jsonb where id = $1', [target.id, original[0]!.changes])
    expect(await db.audit.verify()).toMatchObject({ ok: true, checked: rows.length })
  })

  it('names a row that was modified and re-hashed, by the next row’s link', async () => {
    const rows = await chain()
    const target = rows[6]!
    const row = await saved(target.id)
    await outOfBand(
      `update audit_logs set metadata = metadata || '{"forged": true}',
         row_hash = sha256(prev_hash || convert_to(wincloud_audit_canonical(chain_seq, id, created_at, actor_id,
           actor_role, action, entity_type, entity_id, changes, metadata || '{"forged": true}'), 'UTF8'))
       where id = $1`,
      [target.id],
    )
    const { rows: check } = await db.knex.raw<{ rows: { ok: boolean }[] }>(
      `select row_hash = sha256(prev_hash || convert_to(wincloud_audit_canonical(chain_seq, id, created_at, actor_id,
         actor_role, action, entity_type, entity_id, changes, metadata), 'UTF8')) as ok,
         metadata @> '{"forged": true}' as forged
       from audit_logs where id = ?`,
      [target.id],
    )
    expect(check[0]).toEqual({ ok: true, forged: true })
    expect(await db.audit.verify()).toMatchObject({
      ok: false,
      problem: { kind: 'modified', id: target.id, seq: target.seq },
    })
    await outOfBand('delete from audit_logs where id = $1', [target.id])
    await restore(row)
    expect(await db.audit.verify()).toMatchObject({ ok: true, checked: rows.length })
  })

  it('names the last row when it was modified and re-hashed, by the chain head', async () => {
    const rows = await chain()
    const target = rows[rows.length - 1]!
    const row = await saved(target.id)
    await outOfBand(
      `update audit_logs set metadata = metadata || '{"forged": true}',
         row_hash = sha256(prev_hash || convert_to(wincloud_audit_canonical(chain_seq, id, created_at, actor_id,
           actor_role, action, entity_type, entity_id, changes, metadata || '{"forged": true}'), 'UTF8'))
       where id = $1`,
      [target.id],
    )
    expect(await db.audit.verify()).toMatchObject({
      ok: false,
      problem: { kind: 'modified', id: target.id, seq: target.seq },
    })
    await outOfBand('delete from audit_logs where id = $1', [target.id])
    await restore(row)
    expect(await db.audit.verify()).toMatchObject({ ok: true, checked: rows.length })
  })

  it('names the row after a gap, and the end of the chain when the last rows are gone', async () => {
    const rows = await chain()
    const middle = rows[9]!
    const next = rows[10]!
    const last = rows.at(-1)!
    const savedMiddle = await saved(middle.id)
    await outOfBand('delete from audit_logs where id = $1', [middle.id])
    expect(await db.audit.verify()).toMatchObject({
      ok: false,
      checked: 9,
      problem: { kind: 'deleted', id: next.id, seq: next.seq },
    })
    await restore(savedMiddle)
    expect(await db.audit.verify()).toMatchObject({ ok: true, checked: rows.length })

    const savedLast = await saved(last.id)
    await outOfBand('delete from audit_logs where id = $1', [last.id])
    expect(await db.audit.verify()).toMatchObject({
      ok: false,
      checked: rows.length - 1,
      problem: { kind: 'deleted', id: null, seq: null },
    })
    await restore(savedLast)
    expect(await db.audit.verify()).toMatchObject({ ok: true, checked: rows.length })
  })

  it('names a row inserted without going through the chain', async () => {
    const rows = await chain()
    const inserted = await outOfBand<{ id: string }>(
      `insert into audit_logs (id, action, created_at) values (gen_random_uuid(), 'forged.entry', clock_timestamp())
       returning id::text as id`,
    )
    const id = inserted[0]!.id
    expect(await db.audit.verify()).toMatchObject({
      ok: false,
      checked: rows.length,
      problem: { kind: 'inserted', id, seq: null },
    })
    await outOfBand('delete from audit_logs where id = $1', [id])
    expect(await db.audit.verify()).toMatchObject({ ok: true, checked: rows.length })
  })

  it('still verifies after a purge, from the anchor the purge moved', async () => {
    const before = await chain()
    const cutoff = await cutoffNow(db)
    const scope = db.scope(users[1]!, META)
    await scope.audit.record('test.after_cutoff', { entityId: '1' })
    await scope.audit.record('test.after_cutoff', { entityId: '2' })
    const firstKept = before.length + 1
    const { deleted } = await db.audit.purge({ before: cutoff, reason: 'retention' })
    // Every chained row before the cutoff, and the one written before the chain started.
    expect(deleted).toBe(before.length + 1)
    const anchorSeq = String(firstKept - 1)
    expect(await db.audit.verify()).toEqual({ ok: true, enabled: true, checked: 3, anchorSeq })
    const rows = await chain()
    expect(rows.map((r) => Number(r.seq))).toEqual([firstKept, firstKept + 1, firstKept + 2])
    expect(rows[0]!.prev).toBe(before.at(-1)!.hash)
    const purgeRow = await auditRows(db, `action = 'audit.purge'`)
    expect(purgeRow.map((r) => r.metadata)).toEqual([
      { reason: 'retention', before: cutoff.toISOString(), deleted, anchorSeq },
    ])
    expect(await db.audit.head()).toEqual({ seq: rows.at(-1)!.seq, hash: rows.at(-1)!.hash })
    // A purge that removes nothing keeps the anchor where it is.
    expect(await db.audit.purge({ before: cutoff, reason: 'again' })).toEqual({ deleted: 0 })
    expect(await db.audit.verify()).toEqual({ ok: true, enabled: true, checked: 4, anchorSeq })
  })
})
