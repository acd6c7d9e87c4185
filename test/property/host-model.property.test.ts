/**
 * A host's own model is first-class: the oracle property suites of scoped repositories
 * (../helpers/scoped-oracle-suite.ts, which access.property.test.ts runs on `Droplet`) run on `Domain`, a model the
 * library has never heard of until it is registered with `createDatabase({ models: [Domain] })`:
 *
 * 1. list/count: for random actors, filters (and/or/not nested up to depth 3), sorts and limits, `list` returns
 *    exactly the oracle's rows in order and `count` its count.
 * 2. findById/getById agree with visibility for own, others', missing, re-cased and malformed ids.
 * 3. Writes (repo.update/delete, query() patch/delete with where/orWhere naming anyone's ids, and, this file's own,
 *    query().insert(…).onConflict('hostname').merge(…) naming anyone's hostname) by a random user never touch a row
 *    outside the scope, and do exactly what the oracle says to the user's own rows; a write that would give two rows
 *    one hostname is a conflict.
 * 4. With row-level security on, raw SQL in a user's scoped transaction sees exactly the oracle's rows.
 * 5. Integer filter values beyond the column's int4 range are compared, as documented, not refused.
 *
 * `Domain` has columns of the types Droplet lacks: an integer (with values at the ends of int4), a boolean, a
 * nullable text and a unique text. All of it runs on a database without and one with row-level security
 * (`rls: true`, installed with `db.migrate.installRowLevelSecurity()` after the host created its table; half the
 * runs there). The dataset is random, drawn once per file from WINCLOUD_PROPERTY_SEED (or a random seed, named in
 * failures). WINCLOUD_TEST_DEEP=1 runs ten times as many cases.
 */
import fc from 'fast-check'
import type { JSONSchema } from 'objection'
import { describe, expect, it } from 'vitest'
import {
  BaseModel,
  definePolicy,
  isDataError,
  ownedBy,
  type ColumnType,
  type Filter,
  type Policy,
} from '../../src/index.js'
import { runs } from '../helpers/property.js'
import { oracleCount, visibleRows, type OracleRow } from '../helpers/oracle.js'
import {
  INSTANTS,
  nameArb,
  pick,
  scopedOracleSuite,
  sometimes,
  timestampValue,
  uniquePickArb,
  type Mutable,
  type UniquePick,
} from '../helpers/scoped-oracle-suite.js'

/** The default of `expires_at` in the host's table, for rows inserted without one. */
const DEFAULT_EXPIRY = Date.UTC(2027, 0, 1)

/** The host's model: an owner, a unique hostname, and filterable columns of several types. */
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
      priority: { type: 'integer', minimum: -2_147_483_648, maximum: 2_147_483_647 },
      verified: { type: 'boolean' },
      note: { type: ['string', 'null'], maxLength: 200 },
      expiresAt: {},
    },
  }
  static override policy: Policy = definePolicy({ owner: ownedBy('userId') })
  static override filterable: Readonly<Record<string, ColumnType>> = {
    id: 'uuid',
    userId: 'uuid',
    hostname: 'string',
    note: 'string',
    priority: 'integer',
    verified: 'boolean',
    expiresAt: 'timestamp',
    createdAt: 'timestamp',
  }
  // No defaultSort: the documented default (newest first, createdAt being sortable) applies.
  static override sortable: readonly string[] = ['hostname', 'note', 'priority', 'verified', 'expiresAt', 'createdAt']
  declare userId: string
  declare hostname: string
  declare priority: number
  declare verified: boolean
  declare note: string | null
  declare expiresAt: Date
}

const CREATE_TABLE = `create table domains (
  id uuid primary key, user_id uuid not null references users (id), hostname text not null unique,
  priority integer not null default 0, verified boolean not null default false, note text,
  expires_at timestamptz not null default '${new Date(DEFAULT_EXPIRY).toISOString()}',
  created_at timestamptz not null default now(), updated_at timestamptz not null default now())`

const INT4_MIN = -2_147_483_648
const INT4_MAX = 2_147_483_647
const PRIORITIES = [INT4_MIN, -1, 0, 0, 1, 10, 100, INT4_MAX] as const
/** Safe integers the int4 column cannot hold; the documentation accepts any safe integer for an 'integer' property. */
const BEYOND_INT4 = [INT4_MAX + 1, INT4_MIN - 1, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]

interface DomainRow extends OracleRow {
  readonly userId: string
  readonly hostname: string
  readonly priority: number
  readonly verified: boolean
  readonly note: string | null
  readonly expiresAt: Date
  readonly createdAt: Date
  readonly updatedAt: Date
}

// ---------------------------------------------------------------------------------------------------------------
// Upserts on the unique hostname, mixed into the write sequences of the shared suite

interface UpsertSpec {
  hostname: UniquePick
  priority: number
  verified: boolean
  note: string | null
  /** merge() with no columns (every inserted column but the id, creation time and owner), or merge([priority, note]). */
  mergeAll: boolean
}

const upsertArb: fc.Arbitrary<{ kind: 'upsert'; upsert: UpsertSpec }> = fc.record({
  kind: fc.constant('upsert' as const),
  upsert: fc.record({
    hostname: uniquePickArb(0),
    priority: pick(PRIORITIES),
    verified: fc.boolean(),
    note: fc.option(nameArb, { nil: null }),
    mergeAll: fc.boolean(),
  }),
})

// ---------------------------------------------------------------------------------------------------------------

const suite = scopedOracleSuite({
  model: Domain,
  config: { models: [Domain] },
  // The host's own migration, after the library's; then the policies for its table.
  prepare: async (db, rls) => {
    await db.knex.raw(CREATE_TABLE)
    if (rls) {
      const { installed, missing } = await db.migrate.installRowLevelSecurity()
      expect(installed).toContain('domains')
      expect(missing).toEqual([])
    }
  },
  ownerProperty: 'userId',
  ownerColumn: 'user_id',
  row: (owner): fc.Arbitrary<DomainRow> =>
    fc
      .record({
        id: fc.uuid({ version: 4 }),
        userId: owner,
        hostname: nameArb,
        priority: fc.constantFrom(...PRIORITIES),
        verified: fc.boolean(),
        note: fc.option(nameArb, { freq: 3, nil: null }),
        expires: fc.constantFrom(...INSTANTS),
        created: fc.constantFrom(...INSTANTS),
        bump: fc.constantFrom(0, 0, 1, 1_000),
      })
      .map(({ expires, created, bump, ...d }) => ({
        ...d,
        expiresAt: new Date(expires),
        createdAt: new Date(created),
        updatedAt: new Date(created + bump),
      })),
  unique: { property: 'hostname', fresh: (n) => `fresh-${n}.example` },
  projection: (row) => ({
    id: row.id,
    userId: row.userId,
    hostname: row.hostname,
    priority: row.priority,
    verified: row.verified,
    note: row.note,
    expiresAt: row.expiresAt.getTime(),
    createdAt: row.createdAt.getTime(),
    updatedAt: row.updatedAt.getTime(),
  }),
  filterValues: ({ rows, extraNames }) => {
    const hostnames = [...new Set([...rows.map((r) => r.hostname), ...extraNames])]
    const notes = [...new Set([...rows.flatMap((r) => (r.note === null ? [] : [r.note])), ...extraNames])]
    const priorities = [...PRIORITIES, -2, 2, 99, 101]
    const instants = [...new Set(rows.flatMap((r) => [r.createdAt.getTime(), r.expiresAt.getTime()]))]
    return {
      values: {
        hostname: pick(hostnames),
        note: pick(notes),
        priority: fc.oneof({ weight: 4, arbitrary: pick(PRIORITIES) }, { weight: 1, arbitrary: pick(priorities) }),
        verified: fc.boolean(),
        expiresAt: timestampValue(instants),
        createdAt: timestampValue(instants),
      },
      likeTexts: { hostname: hostnames, note: notes },
      collated: [...hostnames, ...notes],
    }
  },
  // note is the nullable column, where ne/notIn/not semantics differ from naive negation: pick it more often.
  fieldWeights: { note: 4, hostname: 3, priority: 2, verified: 2 },
  patch: {
    priority: sometimes(pick(PRIORITIES), 1),
    verified: sometimes(fc.boolean(), 1),
    note: sometimes(fc.option(nameArb, { nil: null }), 1),
  },
  invalidPatch: { property: 'priority', value: 'high' },
  where: [
    { column: 'verified', property: 'verified', values: fc.boolean() },
    { column: 'priority', property: 'priority', values: pick(PRIORITIES) },
  ],
  extraWrite: {
    op: upsertArb,
    run: async ({ upsert: u }, step) => {
      const { db, repo, actorId, state } = step
      const hostname = step.resolveUnique(u.hostname)!
      const holder = step.holderOf(hostname)
      const got = await step.outcome(async () => {
        const insert = repo
          .query()
          .insert({ hostname, priority: u.priority, verified: u.verified, note: u.note })
          .onConflict('hostname')
        return u.mergeAll ? await insert.merge() : await insert.merge(['priority', 'note'])
      })
      // Someone else's hostname, or a new row for a user with no users row (its foreign key): a conflict.
      const expected =
        (holder !== undefined && holder.userId !== actorId) || (holder === undefined && !step.actorExists)
          ? { code: 'CONFLICT' }
          : { ok: true }
      const stored = await db.model(Domain).query().findOne({ hostname })
      const context = `${step.label} hostname ${JSON.stringify(hostname)}`
      expect('ok' in got ? { ok: true } : got, context).toEqual(expected)
      if ('code' in got) return
      if (holder !== undefined) {
        holder.priority = u.priority
        holder.note = u.note
        if (u.mergeAll) holder.verified = u.verified
      } else {
        // A new row, the actor's: its id and creation time are the library's to choose.
        expect(stored?.userId, context).toBe(actorId)
        expect(state.has(stored!.id), context).toBe(false)
        const created: Mutable<DomainRow> = {
          id: stored!.id,
          userId: actorId,
          hostname,
          priority: u.priority,
          verified: u.verified,
          note: u.note,
          expiresAt: new Date(DEFAULT_EXPIRY),
          createdAt: stored!.createdAt,
          updatedAt: stored!.updatedAt,
        }
        state.set(created.id, created)
      }
    },
  },
})

/**
 * An 'integer' property takes any safe integer (docs/access-control.md, "Values per type"), whatever the column's
 * width: a value the int4 column cannot hold is compared like any other (equal to no row, above or below every
 * row), as `in`/`notIn` already do. Kept out of the suite's random pools, so that a failure here does not stop the
 * properties there from exploring everything else.
 */
function integerRangeTests(): void {
  it('integer filter values beyond the int4 column are compared like any other, not refused', async () => {
    const actor = suite.readers[0]!
    const mismatches: string[] = []
    for (const v of BEYOND_INT4) {
      const filters: Filter[] = [
        { priority: v },
        { priority: { eq: v } },
        { priority: { ne: v } },
        { priority: { lt: v } },
        { priority: { gte: v } },
        { priority: { between: [Math.min(v, 0), Math.max(v, 0)] } },
        { priority: { in: [v, 0] } },
        { priority: { notIn: [v, 0] } },
      ]
      for (const filter of filters) {
        const expected = oracleCount(suite.oracle, suite.dataset.rows, actor.oracle, filter)
        const got = await actor
          .scope()
          .repo(Domain)
          .count(filter)
          .catch((e: unknown) => (isDataError(e) ? e.code : String(e)))
        if (got !== expected) mismatches.push(`${JSON.stringify(filter)}: expected ${expected}, got ${got}`)
      }
    }
    expect(mismatches).toEqual([])
  })
}

/** With RLS on, the database itself holds the host model's policy: raw SQL in a scoped transaction. */
function rawSqlTests(): void {
  it('raw SQL in a scoped transaction sees exactly the oracle’s visible rows of the host table', async () => {
    await suite.check(
      fc.asyncProperty(
        suite.actorArb(suite.readers),
        pick(PRIORITIES),
        fc.boolean(),
        async (actor, threshold, filtered) => {
          const found = await actor.scope().transaction(async (tx) => {
            const sql = filtered
              ? 'select id::text as id from domains where priority >= ? order by id'
              : 'select id::text as id from domains order by id'
            const { rows: got } = await tx.knex.raw<{ rows: { id: string }[] }>(sql, filtered ? [threshold] : [])
            return got.map((r) => r.id)
          })
          const expected = visibleRows(suite.oracle, suite.dataset.rows, actor.oracle)
            .filter((r) => !filtered || (r.priority as number) >= threshold)
            .map((r) => r.id)
            .sort()
          expect(found).toEqual(expected)
        },
      ),
      runs(40),
    )
  })
}

suite.register('a host model’s scoped repositories', (rls) => {
  if (!rls) describe('integer values', integerRangeTests)
  if (rls) describe('raw SQL is held by the host model’s policies', rawSqlTests)
})
