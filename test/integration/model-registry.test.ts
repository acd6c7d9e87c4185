/**
 * The model registry: a host's own models, registered with `createDatabase({ models })`, get what the library's
 * get from everything that lists models: row-level security from their policy, key rotation and usage, and health
 * counts.
 */
import { randomBytes } from 'node:crypto'
import type { JSONSchema } from 'objection'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AuditLog,
  BaseModel,
  ConfigError,
  createDatabase,
  definePolicy,
  Droplet,
  ownedBy,
  User,
  type Database,
  type Policy,
} from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

/** A host model with an owner, a unique column and an encrypted property. */
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
      apiSecret: { type: ['string', 'null'] },
    },
  }
  static override policy: Policy = definePolicy({ owner: ownedBy('userId') })
  static override encrypted = { apiSecret: {} }
  declare userId: string
  declare hostname: string
  declare apiSecret: string | null | undefined
}

/** A host model with no policy: admins and `system` only. */
class Invoice extends BaseModel {
  static override tableName = 'invoices'
  declare total: number
}

const KEYS = { k1: randomBytes(32).toString('base64') }

describe('the model registry', () => {
  it('always holds the library’s models first, then the host’s, each table once', async () => {
    const { db, cleanup } = await openTestDatabase({ models: [Domain, Invoice, Droplet] }, { migrate: false })
    try {
      expect(db.models).toEqual([User, Droplet, AuditLog, Domain, Invoice])
    } finally {
      await cleanup()
    }
  })

  it('refuses what is not a model, a model without a table name, and a second model of a table', async () => {
    class NoTable extends BaseModel {}
    class OtherDroplets extends BaseModel {
      static override tableName = 'droplets'
    }
    const bad: unknown[] = [
      'domains',
      [class {}],
      [{ tableName: 'x' }],
      [NoTable],
      [OtherDroplets],
      [Domain, class extends Domain {}],
    ]
    for (const models of bad) {
      await expect(
        createDatabase({ connection: 'postgres://127.0.0.1:1/none', models } as never),
      ).rejects.toBeInstanceOf(ConfigError)
    }
  })
})

describe.each([false, true])('host models in the registry (rls: %s)', (rls) => {
  let db: Database
  let cleanup: () => Promise<void>
  let alice: User
  let bob: User

  beforeAll(async () => {
    ;({ db, cleanup } = await openTestDatabase({
      rls,
      models: [Domain, Invoice],
      encryption: { keys: KEYS, current: 'k1' },
    }))
    const make = (name: string) =>
      db
        .model(User)
        .query()
        .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x' })
    alice = await make('alice')
    bob = await make('bob')
    // The host's own migration, after the library's.
    await db.knex.raw(`create table domains (
      id uuid primary key, user_id uuid not null references users (id), hostname text not null unique,
      api_secret_ciphertext text, created_at timestamptz not null default now(),
      updated_at timestamptz not null default now())`)
    await db.knex.raw(`create table invoices (
      id uuid primary key, total integer not null default 0, created_at timestamptz not null default now(),
      updated_at timestamptz not null default now())`)
    if (rls) {
      const { installed, missing } = await db.migrate.installRowLevelSecurity()
      expect(installed).toEqual(['users', 'droplets', 'audit_logs', 'domains', 'invoices'])
      expect(missing).toEqual([])
    } else {
      await expect(db.migrate.installRowLevelSecurity()).rejects.toBeInstanceOf(ConfigError)
    }
    await db.scope(alice).repo(Domain).create({ hostname: 'alice.example', apiSecret: 'alice-secret' })
    await db.scope(bob).repo(Domain).create({ hostname: 'bob.example', apiSecret: 'bob-secret' })
    await db.system('seed').repo(Invoice).create({ total: 7 })
  })
  afterAll(async () => {
    await cleanup()
  })

  it('raw SQL in a user’s scoped transaction sees and changes only their own rows of a host table', async () => {
    const result = await db.scope(alice).transaction(async (tx) => {
      const seen = await tx.knex.raw<{ rows: { hostname: string }[] }>('select hostname from domains order by 1')
      const changed = await tx.knex.raw<{ rowCount: number }>(`update domains set hostname = hostname || '.x'`)
      const invoices = await tx.knex.raw<{ rows: unknown[] }>('select * from invoices')
      return { seen: seen.rows.map((r) => r.hostname), changed: changed.rowCount, invoices: invoices.rows.length }
    })
    const { rows } = await db.knex.raw<{ rows: { hostname: string }[] }>('select hostname from domains order by 1')
    if (rls) {
      // The database itself holds the policy: her row only, and no invoice (no policy grants a user any).
      expect(result).toEqual({ seen: ['alice.example'], changed: 1, invoices: 0 })
      expect(rows.map((r) => r.hostname)).toEqual(['alice.example.x', 'bob.example'])
      await db.knex.raw(`update domains set hostname = 'alice.example' where hostname = 'alice.example.x'`)
    } else {
      // Without RLS raw SQL is the host's own: every row (the repositories still scope).
      expect(result.seen).toEqual(['alice.example', 'bob.example'])
      await db.knex.raw(`update domains set hostname = replace(hostname, '.x', '')`)
    }
    expect(await db.scope(alice).repo(Domain).count()).toBe(1)
  })

  it('key usage and rotation walk the host model’s encrypted columns by default', async () => {
    const usage = await db.crypto.keyUsage()
    expect(usage.columns.map((c) => `${c.table}.${c.column}`)).toContain('domains.api_secret_ciphertext')
    expect(usage.columns.find((c) => c.table === 'domains')?.keys).toEqual({ k1: 2 })
    const { rotated } = await db.crypto.rotate()
    expect(rotated).toBe(0)
  })

  it('health counts the host’s tables', async () => {
    const report = await db.health({ timeoutMs: 5_000, exactCounts: true })
    expect(report.tables.domains).toEqual({ rows: 2, exact: true })
    expect(report.tables.invoices).toEqual({ rows: 1, exact: true })
  })
})
