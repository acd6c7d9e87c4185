import { knex as createKnex } from 'knex'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDatabase, migrationSource, MIGRATIONS_TABLE, type Database } from '../../src/index.js'
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
