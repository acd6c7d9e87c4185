import { knex as createKnex } from 'knex'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ConflictError,
  createDatabase,
  Droplet,
  migrationSource,
  MIGRATIONS_TABLE,
  User,
  type Database,
} from '../../src/index.js'
import { createTestDatabase, openTestDatabase } from '../helpers/database.js'

/** Everything about the schema that a migration can change, as one comparable value. */
async function catalog(db: Database): Promise<unknown> {
  const columns = await db.knex.raw(`
    select table_name, column_name, data_type, is_nullable, column_default
    from information_schema.columns where table_schema = 'public' and table_name not like '${MIGRATIONS_TABLE}%'
    order by table_name, column_name`)
  const indexes = await db.knex.raw(`
    select tablename, indexname, indexdef from pg_indexes
    where schemaname = 'public' and tablename not like '${MIGRATIONS_TABLE}%' order by indexname`)
  const constraints = await db.knex.raw(`
    select c.conrelid::regclass::text as table_name, c.conname, c.contype, pg_get_constraintdef(c.oid) as def
    from pg_constraint c join pg_namespace n on n.oid = c.connamespace
    where n.nspname = 'public' and c.conrelid::regclass::text not like '${MIGRATIONS_TABLE}%' order by c.conname`)
  const triggers = await db.knex.raw(`
    select tgrelid::regclass::text as table_name, tgname, pg_get_triggerdef(oid) as def from pg_trigger
    where not tgisinternal order by tgname`)
  const functions = await db.knex.raw(`
    select p.proname, pg_get_function_identity_arguments(p.oid) as args, md5(p.prosrc) as source
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public' order by p.proname`)
  return {
    columns: columns.rows,
    indexes: indexes.rows,
    constraints: constraints.rows,
    triggers: triggers.rows,
    functions: functions.rows,
  }
}

/** knex's bookkeeping of the library's migrations: every row of the migrations table, and the lock row. */
async function bookkeeping(db: Database): Promise<unknown> {
  const migrations = await db.knex.raw(`select id, name, batch, migration_time from ${MIGRATIONS_TABLE} order by id`)
  const lock = await db.knex.raw(`select * from ${MIGRATIONS_TABLE}_lock`)
  return { migrations: migrations.rows, lock: lock.rows }
}

/** The tables and views of the schema, with their row counts. */
async function relations(db: Database): Promise<Record<string, number>> {
  const { rows } = await db.knex.raw<{ rows: { name: string; kind: string }[] }>(`
    select c.relname as name, c.relkind as kind from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'v', 'm') order by c.relname`)
  const counts: Record<string, number> = {}
  for (const { name } of rows) {
    const { rows: n } = await db.knex.raw<{ rows: { n: string }[] }>(`select count(*) as n from "${name}"`)
    counts[name] = Number(n[0]!.n)
  }
  return counts
}

/** Everything a rollback could change: the schema, the rows, and the bookkeeping. */
async function snapshot(db: Database): Promise<unknown> {
  return { catalog: await catalog(db), relations: await relations(db), bookkeeping: await bookkeeping(db) }
}

/** A migrated database with a user and a droplet in it. */
async function populated(): Promise<{ db: Database; cleanup: () => Promise<void> }> {
  const opened = await openTestDatabase()
  const user = await opened.db
    .system('t')
    .repo(User)
    .create({ email: 'rollback@example.com', username: 'rollback', passwordHash: 'x' })
  await opened.db.scope(user).repo(Droplet).create({ name: 'web', region: 'nyc3', size: 's' })
  return opened
}

let db: Database
let cleanup: () => Promise<void>

beforeAll(async () => {
  ;({ db, cleanup } = await openTestDatabase({}, { migrate: false }))
})
afterAll(async () => {
  await cleanup()
})

describe('migrations', () => {
  it('applies, reports, rolls back everything and re-applies to the identical schema', async () => {
    expect(await db.migrate.status()).toEqual({
      applied: [],
      pending: [
        '0001_initial',
        '0002_audit',
        '0003_encrypted_columns',
        '0004_audit_chain_hardening',
        '0005_legacy_token_inventory',
      ],
    })
    expect(await db.migrate.latest()).toEqual({
      batch: 1,
      migrations: [
        '0001_initial',
        '0002_audit',
        '0003_encrypted_columns',
        '0004_audit_chain_hardening',
        '0005_legacy_token_inventory',
      ],
    })
    expect(await db.migrate.latest()).toEqual({ batch: 1, migrations: [] })
    expect(await db.migrate.status()).toEqual({
      applied: [
        '0001_initial',
        '0002_audit',
        '0003_encrypted_columns',
        '0004_audit_chain_hardening',
        '0005_legacy_token_inventory',
      ],
      pending: [],
    })
    const first = await catalog(db)
    expect(JSON.stringify(first)).toContain('users_email_unique')

    expect(await db.migrate.rollback({ all: true })).toMatchObject({
      migrations: [
        '0005_legacy_token_inventory',
        '0004_audit_chain_hardening',
        '0003_encrypted_columns',
        '0002_audit',
        '0001_initial',
      ],
    })
    const empty = (await catalog(db)) as Record<string, unknown[]>
    for (const part of ['columns', 'indexes', 'constraints', 'triggers', 'functions']) expect(empty[part]).toEqual([])

    await db.migrate.latest()
    expect(await catalog(db)).toEqual(first)
  })

  it('creates the indexes the queries need', async () => {
    const { rows } = await db.knex.raw<{ rows: { indexname: string; indexdef: string }[] }>(
      `select indexname, indexdef from pg_indexes where schemaname = 'public'`,
    )
    const defs = Object.fromEntries(rows.map((r) => [r.indexname, r.indexdef]))
    expect(defs.droplets_user_id_status_index).toMatch(/\(user_id, status\)/)
    expect(defs.droplets_user_id_created_at_id_index).toMatch(/\(user_id, created_at, id\)/)
    expect(defs.users_email_is_active_index).toMatch(/\(lower\(email\), is_active\)/)
    expect(defs.users_email_unique).toMatch(/UNIQUE INDEX .*\(lower\(email\)\)/)
    expect(defs.users_username_unique).toMatch(/UNIQUE INDEX .*\(lower\(username\)\)/)
    expect(defs.audit_logs_entity_index).toMatch(/\(entity_type, entity_id, created_at, id\)/)
    expect(defs.audit_logs_actor_index).toMatch(/\(actor_id, created_at, id\)/)
    expect(defs.audit_logs_action_index).toMatch(/\(action, created_at, id\)/)
    expect(defs.audit_logs_created_at_index).toMatch(/\(created_at, id\)/)
    expect(defs.audit_logs_chain_seq_unique).toMatch(/UNIQUE INDEX .*\(chain_seq\)/)
  })

  it('mounts in a host knex next to the host’s own migrations, and the library sees the same history', async () => {
    const testDb = await createTestDatabase()
    const dir = await mkdtemp(join(tmpdir(), 'host-migrations-'))
    const hostKnex = createKnex({ client: 'pg', connection: testDb.url })
    try {
      await writeFile(
        join(dir, '20260101000000_invoices.js'),
        `exports.up = (knex) => knex.schema.createTable('invoices', (t) => { t.uuid('id').primary(); t.uuid('user_id').references('id').inTable('users') })
exports.down = (knex) => knex.schema.dropTable('invoices')\n`,
      )
      const [, applied] = await hostKnex.migrate.latest({ migrationSource, tableName: MIGRATIONS_TABLE })
      expect(applied).toEqual([
        '0001_initial',
        '0002_audit',
        '0003_encrypted_columns',
        '0004_audit_chain_hardening',
        '0005_legacy_token_inventory',
      ])
      const [, own] = await hostKnex.migrate.latest({ directory: dir, loadExtensions: ['.js'] })
      expect(own).toEqual(['20260101000000_invoices.js'])
      expect(await hostKnex.schema.hasTable('invoices')).toBe(true)

      const lib = await createDatabase({ connection: testDb.url })
      try {
        expect(await lib.migrate.status()).toEqual({
          applied: [
            '0001_initial',
            '0002_audit',
            '0003_encrypted_columns',
            '0004_audit_chain_hardening',
            '0005_legacy_token_inventory',
          ],
          pending: [],
        })
      } finally {
        await lib.close()
      }
      await hostKnex.migrate.rollback({ directory: dir, loadExtensions: ['.js'] })
      await hostKnex.migrate.rollback({ migrationSource, tableName: MIGRATIONS_TABLE })
      expect(await hostKnex.schema.hasTable('users')).toBe(false)
    } finally {
      await hostKnex.destroy()
      await rm(dir, { recursive: true, force: true })
      await testDb.drop()
    }
  })
})

describe('rollback: all or nothing', () => {
  it('refuses while host tables or views depend on the library’s tables, names them, and changes nothing', async () => {
    const { db, cleanup } = await populated()
    try {
      await db.knex.raw(`create table user_notes (id uuid primary key, user_id uuid not null references users)`)
      await db.knex.raw(`create table droplet_snapshots (id uuid primary key, droplet_id uuid references droplets)`)
      await db.knex.raw(`create view active_users as select id, email from users where is_active`)
      await db.knex.raw(`create function user_label(u users) returns text language sql as $$ select u.email $$`)
      const before = await snapshot(db)

      for (const options of [{ all: true }, {}]) {
        const error: unknown = await db.migrate.rollback(options).then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(await snapshot(db)).toEqual(before)
        expect(error).toBeInstanceOf(ConflictError)
        const message = (error as ConflictError).message
        expect(message).toContain('user_notes.user_id references users: drop or alter it first')
        expect(message).toContain('droplet_snapshots.droplet_id references droplets: drop or alter it first')
        expect(message).toContain('view active_users depends on users: drop or alter it first')
        expect(message).toContain('function user_label(users) depends on users: drop or alter it first')
        expect(message).toContain('nothing was changed')
      }

      const plan = await db.migrate.planRollback({ all: true })
      expect(plan.dependents.map((d) => [d.kind, d.object, d.table])).toEqual([
        ['foreign-key', 'droplet_snapshots.droplet_id', 'droplets'],
        ['foreign-key', 'user_notes.user_id', 'users'],
        ['other', 'function user_label(users)', 'users'],
        ['view', 'active_users', 'users'],
      ])
      expect(plan.tables.map((t) => [t.name, t.rows, t.holdsData])).toEqual([
        ['wincloud_legacy_token_columns', 0, false],
        ['wincloud_legacy_tokens', 0, false],
        ['wincloud_audit_chain', 1, false],
        ['audit_logs', 2, true],
        ['droplets', 1, true],
        ['users', 1, true],
      ])

      // Once they are gone, the rollback goes through, and takes the library's tables (only those) with it.
      await db.knex.raw(`drop view active_users`)
      await db.knex.raw(`drop function user_label(users)`)
      await db.knex.raw(`alter table user_notes drop constraint user_notes_user_id_fkey`)
      await db.knex.raw(`alter table droplet_snapshots drop constraint droplet_snapshots_droplet_id_fkey`)
      expect((await db.migrate.planRollback({ all: true })).dependents).toEqual([])
      expect((await db.migrate.rollback({ all: true })).migrations).toHaveLength(5)
      expect(Object.keys(await relations(db)).sort()).toEqual(
        ['droplet_snapshots', 'user_notes', MIGRATIONS_TABLE, `${MIGRATIONS_TABLE}_lock`].sort(),
      )
    } finally {
      await cleanup()
    }
  })

  it('rolls back nothing when a dependency found only at drop time stops a later migration', async () => {
    const { db, cleanup } = await populated()
    try {
      // A host table whose ids come from the library's function: no dependency on a table (the check before the
      // rollback does not see it), but 0002_audit cannot drop wincloud_uuidv7(), after 0005, 0004 and 0003 ran.
      await db.knex.raw(`create table host_events (id uuid primary key default wincloud_uuidv7(), note text)`)
      await db.knex.raw(`insert into host_events (note) values ('kept')`)
      const before = await snapshot(db)

      const error: unknown = await db.migrate.rollback({ all: true }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(await snapshot(db)).toEqual(before)
      expect(error).toBeInstanceOf(ConflictError)
      expect((error as ConflictError).message).toContain(
        'default value for column id of table host_events depends on function wincloud_uuidv7(): drop or alter it first',
      )
      expect(await db.migrate.status()).toMatchObject({ pending: [] })
      expect((await db.migrate.planRollback({ all: true })).dependents).toEqual([])
    } finally {
      await cleanup()
    }
  })

  it('rolls back nothing when a drop fails half-way through the last migration', async () => {
    const { db, cleanup } = await populated()
    try {
      // An event trigger of the host that refuses to let droplets go: 0001_initial drops audit_logs, then fails.
      await db.knex.raw(`
        create function keep_droplets() returns event_trigger language plpgsql as $$
        begin
          if exists (select from pg_event_trigger_dropped_objects() where object_identity = 'public.droplets') then
            raise exception 'droplets are kept';
          end if;
        end $$`)
      await db.knex.raw(`create event trigger keep_droplets on sql_drop execute function keep_droplets()`)
      const before = await snapshot(db)

      await expect(db.migrate.rollback({ all: true })).rejects.toThrow(/droplets are kept/)
      expect(await snapshot(db)).toEqual(before)
      expect(await db.migrate.status()).toMatchObject({ pending: [] })

      await db.knex.raw(`drop event trigger keep_droplets`)
      expect((await db.migrate.rollback({ all: true })).migrations).toHaveLength(5)
      expect(await db.migrate.status()).toMatchObject({ applied: [] })
    } finally {
      await cleanup()
    }
  })

  it('counts the library’s own row-level security as no obstacle', async () => {
    const { db, cleanup } = await openTestDatabase({ rls: true })
    try {
      const { rows } = await db.knex.raw<{ rows: { n: string }[] }>(`select count(*) as n from pg_policies`)
      expect(Number(rows[0]!.n)).toBeGreaterThan(0)
      expect((await db.migrate.planRollback({ all: true })).dependents).toEqual([])
      expect((await db.migrate.rollback({ all: true })).migrations).toHaveLength(5)
    } finally {
      await cleanup()
    }
  })

  it('plans the rollback of the last batch only, and lists every table the migrations create', async () => {
    const { db, cleanup } = await openTestDatabase()
    try {
      const created = Object.keys(await relations(db))
        .filter((name) => !name.startsWith(MIGRATIONS_TABLE))
        .sort()
      const everything = await db.migrate.planRollback({ all: true })
      expect(everything.tables.map((t) => t.name).sort()).toEqual(created)
      expect(everything.tables.every((t) => !t.holdsData)).toBe(true)

      // Two batches: 0005 alone in the last one.
      await db.knex.raw(`update ${MIGRATIONS_TABLE} set batch = 2 where name = '0005_legacy_token_inventory'`)
      expect(await db.migrate.planRollback()).toEqual({
        migrations: ['0005_legacy_token_inventory'],
        tables: [
          { name: 'wincloud_legacy_token_columns', rows: 0, holdsData: false },
          { name: 'wincloud_legacy_tokens', rows: 0, holdsData: false },
        ],
        dependents: [],
      })
      expect(await db.migrate.rollback()).toEqual({ batch: 2, migrations: ['0005_legacy_token_inventory'] })
      expect((await db.migrate.status()).pending).toEqual(['0005_legacy_token_inventory'])
    } finally {
      await cleanup()
    }
  })
})
