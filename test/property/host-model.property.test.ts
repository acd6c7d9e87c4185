/**
 * A host's own model is first-class: the property suites of access.property.test.ts, run against the same in-memory
 * oracle (../helpers/oracle.ts) on `Domain`, a model the library has never heard of until it is registered with
 * `createDatabase({ models: [Domain] })`:
 *
 * 1. list/count: for random actors, filters (and/or/not nested up to depth 3), sorts and limits, `list` returns
 *    exactly the oracle's rows in order and `count` its count.
 * 2. findById/getById agree with visibility for own, others', missing, re-cased and malformed ids.
 * 3. Writes (repo.update/delete, query() patch/delete with where/orWhere naming anyone's ids, and
 *    query().insert(…).onConflict('hostname').merge(…) naming anyone's hostname) by a random user never touch a row
 *    outside the scope, and do exactly what the oracle says to the user's own rows.
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
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  BaseModel,
  definePolicy,
  isDataError,
  ownedBy,
  type ColumnType,
  type Database,
  type Filter,
  type Policy,
  type Scope,
} from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'
import { checkProperty, datasetSeed, insertUsers, runs } from '../helpers/property.js'
import {
  OracleInvalid,
  collationRanks,
  oracleCount,
  oracleFindById,
  oracleList,
  visibleRows,
  type OracleActor,
  type OracleModel,
  type OracleRow,
} from '../helpers/oracle.js'

const SEED = datasetSeed()

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

// ---------------------------------------------------------------------------------------------------------------
// The dataset: drawn once, synchronously, so the arbitraries below can pick from its values.

const INT4_MIN = -2_147_483_648
const INT4_MAX = 2_147_483_647
const PRIORITIES = [INT4_MIN, -1, 0, 0, 1, 10, 100, INT4_MAX] as const
const NAME_CHARS = [...'abcAB019-_%\\ .']
const BASE = Date.UTC(2026, 0, 1)
// Instants 1 ms, 1 s, 1 min… apart; few of them, so many rows share a createdAt or an expiresAt.
const INSTANTS = [0, 1, 1_000, 60_000, 3_600_000, 86_400_000].map((d) => BASE + d)

const USER_COUNT = 4 // users[0..3] are role user (users[3] owns nothing), users[4] the admin, users[5] a ghost
const ADMIN = 4
const GHOST = 5

// Random names, and near-collisions that only literal like/ilike matching tells apart.
const TRICKY_NAMES = ['a_b', 'axb', 'a%b', 'aab', 'a\\b', 'ab', 'AB', 'Ab', '100%', '1000', '_', '%']
const nameArb = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: fc.constantFrom(...NAME_CHARS), minLength: 1, maxLength: 5 }) },
  { weight: 1, arbitrary: fc.constantFrom(...TRICKY_NAMES) },
)

interface Dataset {
  readonly userIds: readonly string[]
  readonly rows: readonly DomainRow[]
  readonly extraNames: readonly string[]
}

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

const datasetArb: fc.Arbitrary<Dataset> = fc
  .record({
    userIds: fc.uniqueArray(fc.uuid({ version: 4 }), { minLength: USER_COUNT + 2, maxLength: USER_COUNT + 2 }),
    domains: fc.uniqueArray(
      fc.record({
        id: fc.uuid({ version: 4 }),
        owner: fc.constantFrom(0, 0, 0, 1, 1, 2, ADMIN),
        hostname: nameArb,
        priority: fc.constantFrom(...PRIORITIES),
        verified: fc.boolean(),
        note: fc.option(nameArb, { freq: 3, nil: null }),
        expires: fc.constantFrom(...INSTANTS),
        created: fc.constantFrom(...INSTANTS),
        bump: fc.constantFrom(0, 0, 1, 1_000),
      }),
      // Hostnames are unique (the table says so); ids are v4 UUIDs, unique in practice (the insert would fail).
      { minLength: 50, maxLength: 70, selector: (d) => d.hostname },
    ),
    extraNames: fc.array(nameArb, { minLength: 20, maxLength: 20 }),
  })
  .map(({ userIds, domains, extraNames }) => ({
    userIds,
    extraNames,
    rows: domains.map((d) => ({
      id: d.id,
      userId: userIds[d.owner]!,
      hostname: d.hostname,
      priority: d.priority,
      verified: d.verified,
      note: d.note,
      expiresAt: new Date(d.expires),
      createdAt: new Date(d.created),
      updatedAt: new Date(d.created + d.bump),
    })),
  }))

const dataset = fc.sample(datasetArb, { seed: SEED, numRuns: 1 })[0]!
const userIds = dataset.userIds
const rows = dataset.rows
const domainIds = rows.map((r) => r.id)
const hostnamePool = [...new Set([...rows.map((r) => r.hostname), ...dataset.extraNames])]
const notePool = [...new Set([...rows.flatMap((r) => (r.note === null ? [] : [r.note])), ...dataset.extraNames])]
const priorityPool = [...PRIORITIES, -2, 2, 99, 101]
/** Safe integers the int4 column cannot hold; the documentation accepts any safe integer for an 'integer' property. */
const BEYOND_INT4 = [INT4_MAX + 1, INT4_MIN - 1, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]
const instantPool = [...new Set(rows.flatMap((r) => [r.createdAt.getTime(), r.expiresAt.getTime()]))]

let db: Database
let cleanup: () => Promise<void>
let model: OracleModel

/** Opens a database of its own for the enclosing describe (with or without row-level security) and seeds it. */
function useDatabase(rls: boolean): void {
  beforeAll(async () => {
    ;({ db, cleanup } = await openTestDatabase({ rls, models: [Domain] }))
    await insertUsers(db, userIds.slice(0, USER_COUNT + 1), ADMIN)
    // The host's own migration, after the library's; then the policies for its table.
    await db.knex.raw(CREATE_TABLE)
    if (rls) {
      const { installed, missing } = await db.migrate.installRowLevelSecurity()
      expect(installed).toContain('domains')
      expect(missing).toEqual([])
    }
    await db
      .model(Domain)
      .query()
      .insert(rows.map((r) => ({ ...r })) as never)
    await db.knex.raw('create table pristine_domains as select * from domains')
    model = {
      filterable: Domain.filterable,
      sortable: Domain.sortable,
      defaultSort: ['-createdAt'],
      ownerProperty: 'userId',
      textRank: await collationRanks(db.knex, [...hostnamePool, ...notePool]),
    }
  })

  afterAll(async () => {
    await cleanup()
  })
}

const check = <T>(property: fc.IAsyncProperty<T>, numRuns: number): Promise<void> =>
  checkProperty(property, numRuns, SEED)

// ---------------------------------------------------------------------------------------------------------------
// Actors

interface TestActor {
  readonly label: string
  readonly oracle: OracleActor
  readonly weight: number
  scope(): Scope
  [fc.toStringMethod](): string
}

const userActor = (index: number, label: string, upper = false, weight = 1): TestActor => {
  const id = upper ? userIds[index]!.toUpperCase() : userIds[index]!
  return {
    label,
    oracle: { kind: 'user', id, role: 'user' },
    weight,
    scope: () => db.scope({ id, role: 'user' }),
    [fc.toStringMethod]: () => label,
  }
}

const readers: TestActor[] = [
  userActor(0, 'user0 (many rows)', false, 4),
  userActor(0, 'user0 with an upper-case id', true),
  userActor(1, 'user1'),
  userActor(2, 'user2'),
  userActor(3, 'user3 (no rows)'),
  userActor(GHOST, 'a user with no users row'),
  {
    label: 'admin',
    oracle: { kind: 'user', id: userIds[ADMIN]!, role: 'admin' },
    weight: 3,
    scope: () => db.scope({ id: userIds[ADMIN]!, role: 'admin' }),
    [fc.toStringMethod]: () => 'admin',
  },
  {
    label: 'system',
    oracle: { kind: 'system' },
    weight: 2,
    scope: () => db.system('property test'),
    [fc.toStringMethod]: () => 'system',
  },
]
const writers = readers.filter((a) => a.oracle.kind === 'user' && a.oracle.role === 'user')

/** Actors who see many rows are picked more often: small visible sets make most filters trivially empty. */
const actorArb = (actors: readonly TestActor[]): fc.Arbitrary<TestActor> =>
  fc.oneof(...actors.map((a) => ({ weight: a.weight, arbitrary: fc.constant(a) })))

// ---------------------------------------------------------------------------------------------------------------
// Filters

const pick = <T>(values: readonly T[]): fc.Arbitrary<T> => fc.constantFrom(...values)
const sometimes = <T>(arb: fc.Arbitrary<T>, weight = 3): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb })

const uuidValue = (ids: readonly string[]): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 4, arbitrary: pick(ids) },
    { weight: 1, arbitrary: pick(ids).map((id) => id.toUpperCase()) },
    { weight: 1, arbitrary: fc.uuid() },
  )

/** A timestamp as a Date, an ISO string in UTC, or an ISO string at +02:00; at a known instant or 1 ms off. */
const timestampValue: fc.Arbitrary<Date | string> = fc
  .tuple(pick(instantPool), fc.constantFrom(-1, 0, 0, 0, 1), fc.constantFrom('date', 'utc', 'offset'))
  .map(([t, d, form]) => {
    const ms = t + d
    if (form === 'date') return new Date(ms)
    if (form === 'utc') return new Date(ms).toISOString()
    return new Date(ms + 2 * 3_600_000).toISOString().replace('Z', '+02:00')
  })

const VALUES: Readonly<Record<string, fc.Arbitrary<unknown>>> = {
  id: uuidValue(domainIds),
  userId: uuidValue(userIds),
  hostname: pick(hostnamePool),
  note: pick(notePool),
  priority: fc.oneof({ weight: 4, arbitrary: pick(PRIORITIES) }, { weight: 1, arbitrary: pick(priorityPool) }),
  verified: fc.boolean(),
  expiresAt: timestampValue,
  createdAt: timestampValue,
}

const POOLS: Readonly<Record<string, readonly string[]>> = { hostname: hostnamePool, note: notePool }

/** like/ilike text: a piece of a known value (so it matches something) or a few random characters. */
const likeText = (property: string): fc.Arbitrary<string> =>
  fc.oneof(
    fc.tuple(pick(POOLS[property]!), fc.nat(6), fc.nat(6)).map(([s, a, b]) => s.slice(Math.min(a, b), Math.max(a, b))),
    fc.string({ unit: pick(NAME_CHARS), maxLength: 3 }),
    fc.string({ unit: pick(['a', 'b', 'A', '_', '%', '\\']), maxLength: 3 }),
  )

const swapCase = (text: string): string =>
  text.replace(/[a-z]/gi, (c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()))

const likePattern = (property: string, ilike: boolean): fc.Arbitrary<Record<string, string>> =>
  fc
    .tuple(pick(['startsWith', 'contains', 'endsWith']), likeText(property), fc.constantFrom(0, 1, 2))
    .map(([form, text, casing]) => ({
      [form]: !ilike || casing === 0 ? text : casing === 1 ? swapCase(text) : text.toUpperCase(),
    }))

const typeName = (type: ColumnType): string => (typeof type === 'string' ? type : 'enum')

function operatorsArb(property: string): fc.Arbitrary<Record<string, unknown>> {
  const type = typeName(Domain.filterable[property]!)
  const v = VALUES[property]!
  const list = fc.array(v, { maxLength: 4 })
  const entries: fc.Arbitrary<[string, unknown]>[] = [
    v.map((x) => ['eq', x]),
    v.map((x) => ['ne', x]),
    fc.boolean().map((b) => ['isNull', b]),
  ]
  if (type !== 'boolean') {
    entries.push(list.map((xs) => ['in', xs]))
    entries.push(list.map((xs) => ['notIn', xs]))
  }
  if (type === 'string' || type === 'timestamp' || type === 'integer') {
    for (const op of ['lt', 'lte', 'gt', 'gte']) entries.push(v.map((x) => [op, x]))
    entries.push(fc.tuple(v, v).map((pair) => ['between', pair]))
  }
  const weighted: fc.WeightedArbitrary<[string, unknown]>[] = entries.map((arbitrary) => ({ weight: 1, arbitrary }))
  if (type === 'string') {
    weighted.push({ weight: 4, arbitrary: likePattern(property, false).map((p) => ['like', p]) })
    weighted.push({ weight: 4, arbitrary: likePattern(property, true).map((p) => ['ilike', p]) })
  }
  return fc
    .uniqueArray(fc.oneof(...weighted), { selector: (e) => e[0], minLength: 1, maxLength: 2 })
    .map((e) => Object.fromEntries(e))
}

// note is the nullable column, where ne/notIn/not semantics differ from naive negation: pick it more often.
const FIELD_WEIGHTS: Readonly<Record<string, number>> = { note: 4, hostname: 3, priority: 2, verified: 2 }
const fieldArb: fc.Arbitrary<[string, unknown]> = fc.oneof(
  ...Object.keys(Domain.filterable).map((property) => ({
    weight: FIELD_WEIGHTS[property] ?? 1,
    arbitrary: fc
      .oneof(
        { weight: 3, arbitrary: VALUES[property]! },
        { weight: 1, arbitrary: fc.constant(null) },
        { weight: 5, arbitrary: operatorsArb(property) },
      )
      .map((spec): [string, unknown] => [property, spec]),
  })),
)

function groupArb(depth: number, minFields = 0): fc.Arbitrary<Filter> {
  const fields = fc.uniqueArray(fieldArb, { selector: (e) => e[0], minLength: minFields, maxLength: 2 })
  if (depth === 0) return fields.map((e) => Object.fromEntries(e) as Filter)
  const sub = groupArb(depth - 1)
  return fc
    .record({
      fields,
      and: sometimes(fc.array(sub, { maxLength: 2 })),
      or: sometimes(fc.array(sub, { maxLength: 3 })),
      not: sometimes(sub),
    })
    .map(({ fields: f, and, or, not }) => {
      const filter: Record<string, unknown> = Object.fromEntries(f)
      if (and !== undefined) filter.and = and
      if (or !== undefined) filter.or = or
      if (not !== undefined) filter.not = not
      return filter as Filter
    })
}

// Mostly shallow filters (deep ones are usually all-false or all-true), and sometimes none at all.
const filterArb: fc.Arbitrary<Filter | undefined> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 5, arbitrary: fieldArb.map(([k, v]) => ({ [k]: v }) as Filter) },
  { weight: 3, arbitrary: groupArb(0, 1) },
  { weight: 3, arbitrary: groupArb(1, 1) },
  { weight: 2, arbitrary: groupArb(3) },
)

const SORTABLE = [...Domain.sortable]
const sortArb: fc.Arbitrary<string[] | undefined> = sometimes(
  fc
    .tuple(fc.shuffledSubarray(SORTABLE, { maxLength: 3 }), fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }))
    .map(([keys, down]) => keys.map((k, i) => (down[i] ? `-${k}` : k))),
  1,
)

const limitArb: fc.Arbitrary<number | undefined> = fc.oneof(
  fc.constant(undefined),
  fc.integer({ min: 1, max: 5 }),
  fc.integer({ min: 1, max: 100 }),
)

async function expectValidationError(promise: Promise<unknown>): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(
    isDataError(error) && error.code === 'VALIDATION_FAILED',
    `expected a ValidationError, got ${String(error)}`,
  ).toBe(true)
}

const projection = (row: DomainRow | Domain): Record<string, unknown> => ({
  id: row.id,
  userId: row.userId,
  hostname: row.hostname,
  priority: row.priority,
  verified: row.verified,
  note: row.note,
  expiresAt: row.expiresAt.getTime(),
  createdAt: row.createdAt.getTime(),
  updatedAt: row.updatedAt.getTime(),
})
const byId = new Map(rows.map((r) => [r.id, r]))

// ---------------------------------------------------------------------------------------------------------------

/** Property runs for one suite: the RLS suite runs fewer (each RLS read is a transaction of its own). */
let scale = 1

function readTests(): void {
  it('list returns exactly the oracle’s first `limit` visible matching rows, in order; count its count', async () => {
    await check(
      fc.asyncProperty(
        actorArb(readers),
        filterArb,
        sortArb,
        limitArb,
        fc.boolean(),
        fc.boolean(),
        async (actor, filter, sort, limit, spellUndefined, inTransaction) => {
          const options: Record<string, unknown> = {}
          if (filter !== undefined || spellUndefined) options.filter = filter
          if (sort !== undefined || spellUndefined) options.sort = sort
          if (limit !== undefined || spellUndefined) options.limit = limit
          // Directly, or inside a scope transaction (another runner; with RLS, the transaction's own settings).
          const read = async (): Promise<[Domain[], number]> => {
            const both = async (scope: Scope): Promise<[Domain[], number]> => [
              await scope.repo(Domain).list(options),
              await scope.repo(Domain).count(filter),
            ]
            return inTransaction ? actor.scope().transaction(both) : both(actor.scope())
          }
          let expected: string[]
          try {
            expected = oracleList(model, rows, actor.oracle, options)
          } catch (error) {
            if (!(error instanceof OracleInvalid)) throw error
            // Only the condition limit can make a generated filter invalid.
            await expectValidationError(read())
            await expectValidationError(actor.scope().repo(Domain).count(filter))
            return
          }
          const [listed, counted] = await read()
          expect(listed.map((r) => r.id)).toEqual(expected)
          expect(listed.map(projection)).toEqual(expected.map((id) => projection(byId.get(id)!)))
          expect(counted).toBe(oracleCount(model, rows, actor.oracle, filter))
        },
      ),
      runs(1000 * scale),
    )
  })

  it('findById and getById see exactly the visible rows', async () => {
    const malformed = fc.oneof(
      fc.string({ maxLength: 40 }),
      pick(domainIds).map((id) => `{${id}}`),
      pick(domainIds).map((id) => id.replace(/-/g, '')),
      pick(domainIds).map((id) => ` ${id}`),
      pick(domainIds).map((id) => `${id}'--`),
    )
    const idArb = fc.oneof(
      { weight: 4, arbitrary: pick(domainIds) },
      { weight: 2, arbitrary: pick(domainIds).map((id) => id.toUpperCase()) },
      { weight: 1, arbitrary: fc.uuid() },
      { weight: 1, arbitrary: pick(userIds) },
      { weight: 2, arbitrary: malformed },
    )
    await check(
      fc.asyncProperty(actorArb(readers), idArb, async (actor, id) => {
        const repo = actor.scope().repo(Domain)
        const expected = oracleFindById(model, rows, actor.oracle, id)
        const found = await repo.findById(id)
        expect(found?.id).toBe(expected)
        if (found !== undefined) expect(projection(found)).toEqual(projection(byId.get(found.id)!))
        const got = await repo.getById(id).then(
          (row) => row,
          (e: unknown) => e,
        )
        if (expected === undefined) {
          expect(isDataError(got) && got.code === 'NOT_FOUND', `expected NotFoundError, got ${String(got)}`).toBe(true)
          // Someone else's row is answered exactly like a missing one: same error, same message.
          const missing = await repo.getById('00000000-0000-4000-8000-000000000000').then(
            () => undefined,
            (e: unknown) => e,
          )
          expect(isDataError(got) && isDataError(missing) && got.toJSON()).toEqual(
            isDataError(missing) && missing.toJSON(),
          )
        } else {
          expect((got as Domain).id).toBe(expected)
        }
      }),
      runs(200 * scale),
    )
  })
}

/**
 * An 'integer' property takes any safe integer (docs/access-control.md, "Values per type"), whatever the column's
 * width: a value the int4 column cannot hold is compared like any other (equal to no row, above or below every
 * row), as `in`/`notIn` already do. Kept out of the random pools above, so that a failure here does not stop the
 * properties there from exploring everything else.
 */
function integerRangeTests(): void {
  it('integer filter values beyond the int4 column are compared like any other, not refused', async () => {
    const actor = readers[0]!
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
        const expected = oracleCount(model, rows, actor.oracle, filter)
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
    await check(
      fc.asyncProperty(actorArb(readers), pick(PRIORITIES), fc.boolean(), async (actor, threshold, filtered) => {
        const found = await actor.scope().transaction(async (tx) => {
          const sql = filtered
            ? 'select id::text as id from domains where priority >= ? order by id'
            : 'select id::text as id from domains order by id'
          const { rows: got } = await tx.knex.raw<{ rows: { id: string }[] }>(sql, filtered ? [threshold] : [])
          return got.map((r) => r.id)
        })
        const expected = visibleRows(model, rows, actor.oracle)
          .filter((r) => !filtered || (r.priority as number) >= threshold)
          .map((r) => r.id)
          .sort()
        expect(found).toEqual(expected)
      }),
      runs(40),
    )
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Writes

type IdPick = { from: 'own' | 'other' | 'missing' | 'malformed'; index: number; upper: boolean }
type PatchOwner = 'none' | 'self' | 'other'
/** A hostname to write: none, a new one, one of the actor's own rows' or someone else's. */
type HostPick = { from: 'none' | 'fresh' | 'own' | 'other'; index: number }
interface PatchSpec {
  priority?: number
  verified?: boolean
  note?: string | null
  hostname: HostPick
  owner: PatchOwner
  badPriority: boolean
}
type Connector = 'and' | 'or'
type Cond =
  | { connector: Connector; kind: 'eq' | 'not'; column: 'id'; value: IdPick }
  | { connector: Connector; kind: 'eq' | 'not'; column: 'user_id'; value: number }
  | { connector: Connector; kind: 'eq' | 'not'; column: 'verified'; value: boolean }
  | { connector: Connector; kind: 'eq' | 'not'; column: 'priority'; value: number }
  | { connector: Connector; kind: 'in'; column: 'id'; value: IdPick[] }
  | { connector: Connector; kind: 'in'; column: 'user_id'; value: number[] }
  | { connector: Connector; kind: 'true' }
interface UpsertSpec {
  hostname: HostPick
  priority: number
  verified: boolean
  note: string | null
  /** merge() with no columns (every inserted column but the id, creation time and owner), or merge([priority, note]). */
  mergeAll: boolean
}
type WriteOp =
  | { kind: 'update'; id: IdPick; patch: PatchSpec }
  | { kind: 'delete'; id: IdPick }
  | { kind: 'patchAndFetchById'; id: IdPick; patch: PatchSpec }
  | { kind: 'deleteById'; id: IdPick }
  | { kind: 'queryPatch'; conds: Cond[]; patch: PatchSpec }
  | { kind: 'queryDelete'; conds: Cond[] }
  | { kind: 'read'; conds: Cond[] }
  | { kind: 'upsert'; upsert: UpsertSpec }

const MALFORMED = ['not-a-uuid', "' or '1'='1", '', '00000000-0000-0000-0000-00000000000g']

const idPickArb: fc.Arbitrary<IdPick> = fc.record({
  from: fc.constantFrom('own', 'own', 'other', 'other', 'missing', 'malformed'),
  index: fc.nat(),
  upper: fc.boolean(),
})

const hostPickArb = (none: number): fc.Arbitrary<HostPick> =>
  fc.record({
    from: fc.oneof(
      { weight: none, arbitrary: fc.constant('none' as const) },
      { weight: 1, arbitrary: fc.constantFrom('fresh' as const, 'own' as const, 'other' as const) },
    ),
    index: fc.nat(),
  })

const patchArb: fc.Arbitrary<PatchSpec> = fc.record({
  priority: sometimes(pick(PRIORITIES), 1),
  verified: sometimes(fc.boolean(), 1),
  note: sometimes(fc.option(nameArb, { nil: null }), 1),
  hostname: hostPickArb(3),
  owner: fc.constantFrom<PatchOwner>('none', 'none', 'none', 'none', 'self', 'other'),
  badPriority: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
})

const upsertArb: fc.Arbitrary<UpsertSpec> = fc.record({
  hostname: hostPickArb(0),
  priority: pick(PRIORITIES),
  verified: fc.boolean(),
  note: fc.option(nameArb, { nil: null }),
  mergeAll: fc.boolean(),
})

const connectorArb = fc.constantFrom<Connector>('and', 'or', 'or')
const condArb: fc.Arbitrary<Cond> = fc.oneof(
  fc.record({
    connector: connectorArb,
    kind: fc.constantFrom('eq', 'not'),
    column: fc.constant('id'),
    value: idPickArb,
  }),
  fc.record({
    connector: connectorArb,
    kind: fc.constantFrom('eq', 'not'),
    column: fc.constant('user_id'),
    value: fc.nat(USER_COUNT + 1),
  }),
  fc.record({
    connector: connectorArb,
    kind: fc.constantFrom('eq', 'not'),
    column: fc.constant('verified'),
    value: fc.boolean(),
  }),
  fc.record({
    connector: connectorArb,
    kind: fc.constantFrom('eq', 'not'),
    column: fc.constant('priority'),
    value: pick(PRIORITIES),
  }),
  fc.record({
    connector: connectorArb,
    kind: fc.constant('in'),
    column: fc.constant('id'),
    value: fc.array(idPickArb, { maxLength: 4 }),
  }),
  fc.record({
    connector: connectorArb,
    kind: fc.constant('in'),
    column: fc.constant('user_id'),
    value: fc.array(fc.nat(USER_COUNT + 1), { maxLength: 3 }),
  }),
  fc.record({ connector: connectorArb, kind: fc.constant('true') }),
)
const condsArb = fc.array(condArb, { minLength: 1, maxLength: 4 })

const writeOpArb: fc.Arbitrary<WriteOp> = fc.oneof(
  fc.record({ kind: fc.constant('update'), id: idPickArb, patch: patchArb }),
  fc.record({ kind: fc.constant('delete'), id: idPickArb }),
  fc.record({ kind: fc.constant('patchAndFetchById'), id: idPickArb, patch: patchArb }),
  fc.record({ kind: fc.constant('deleteById'), id: idPickArb }),
  fc.record({ kind: fc.constant('queryPatch'), conds: condsArb, patch: patchArb }),
  fc.record({ kind: fc.constant('queryDelete'), conds: condsArb }),
  fc.record({ kind: fc.constant('read'), conds: condsArb }),
  fc.record({ kind: fc.constant('upsert'), upsert: upsertArb }),
)

/** The oracle's copy of the table during one write sequence. */
type ModelRow = { -readonly [K in keyof DomainRow]: DomainRow[K] }

/** Outcomes: a value, or an error code. */
type Outcome = { ok: unknown } | { code: string }

function writeTests(): void {
  it('never change, create or remove a row outside the scope, and do exactly what they should inside it', async () => {
    const otherRowsText = async (actorId: string): Promise<string[]> => {
      const { rows: found } = await db.knex.raw<{ rows: { t: string }[] }>(
        'select d::text as t from domains d where user_id <> ? order by id',
        [actorId],
      )
      return found.map((r) => r.t)
    }
    const reset = async (): Promise<void> => {
      await db.knex.raw('delete from domains')
      await db.knex.raw('insert into domains select * from pristine_domains')
    }

    await check(
      fc.asyncProperty(actorArb(writers), fc.array(writeOpArb, { minLength: 1, maxLength: 6 }), async (actor, ops) => {
        await reset()
        const actorId = (actor.oracle as { id: string }).id.toLowerCase()
        const actorExists = userIds.slice(0, USER_COUNT + 1).includes(actorId)
        const ownIds = rows.filter((r) => r.userId === actorId).map((r) => r.id)
        const otherIds = rows.filter((r) => r.userId !== actorId).map((r) => r.id)
        const otherHostnames = rows.filter((r) => r.userId !== actorId).map((r) => r.hostname)
        const state = new Map<string, ModelRow>(rows.map((r) => [r.id, { ...r }]))
        const before = await otherRowsText(actorId)
        const repo = actor.scope().repo(Domain)
        let freshCount = 0

        const resolveId = (p: IdPick): string => {
          const from = p.from === 'own' ? ownIds : p.from === 'other' ? otherIds : []
          if (p.from === 'malformed') return MALFORMED[p.index % MALFORMED.length]!
          const id =
            from.length > 0
              ? from[p.index % from.length]!
              : `00000000-0000-4000-8000-${String(p.index % 1e12).padStart(12, '0')}`
          return p.upper ? id.toUpperCase() : id
        }
        const resolveHost = (p: HostPick): string | undefined => {
          if (p.from === 'none') return undefined
          const ownNow = [...state.values()].filter((r) => r.userId === actorId).map((r) => r.hostname)
          const from = p.from === 'own' ? ownNow : p.from === 'other' ? otherHostnames : []
          if (from.length > 0) return from[p.index % from.length]!
          freshCount += 1
          return `fresh-${freshCount}.example`
        }
        /** The row holding a hostname now, if any. */
        const holderOf = (hostname: string): ModelRow | undefined =>
          [...state.values()].find((r) => r.hostname === hostname)
        const resolveUser = (i: number): string => (i === 0 ? actorId : userIds[i % userIds.length]!)
        const isMalformed = (id: string): boolean => MALFORMED.includes(id)
        const ownAlive = (id: string): ModelRow | undefined => {
          const row = state.get(id.toLowerCase())
          return row !== undefined && row.userId === actorId ? row : undefined
        }
        const patchOf = (p: PatchSpec): Record<string, unknown> => {
          const patch: Record<string, unknown> = {}
          if (p.priority !== undefined) patch.priority = p.priority
          if (p.verified !== undefined) patch.verified = p.verified
          if (p.note !== undefined) patch.note = p.note
          const hostname = resolveHost(p.hostname)
          if (hostname !== undefined) patch.hostname = hostname
          if (p.owner === 'self') patch.userId = actorId
          if (p.owner === 'other') patch.userId = userIds.find((id) => id !== actorId)
          if (p.badPriority) patch.priority = 'high'
          return patch
        }
        /** The error a patch must get regardless of which rows it targets, if any. */
        const patchError = (patch: Record<string, unknown>): string | undefined => {
          if (patch.priority === 'high') return 'VALIDATION_FAILED'
          if (patch.userId !== undefined && patch.userId !== actorId) return 'FORBIDDEN'
          return undefined
        }
        /** Whether writing the patch to exactly `targets` breaks the unique hostname. */
        const conflicts = (patch: Record<string, unknown>, targets: readonly ModelRow[]): boolean => {
          if (patch.hostname === undefined || targets.length === 0) return false
          if (targets.length > 1) return true
          const holder = holderOf(patch.hostname as string)
          return holder !== undefined && holder.id !== targets[0]!.id
        }
        const applyPatch = (row: ModelRow, patch: Record<string, unknown>): void => {
          for (const key of ['priority', 'verified', 'note', 'hostname'] as const) {
            if (key in patch) (row as Record<string, unknown>)[key] = patch[key]
          }
        }
        // knex writes where-clauses flat, so SQL precedence applies: `a or b and c` is `a or (b and c)`.
        const resolved = (conds: Cond[]) =>
          conds.map((c) => {
            switch (c.kind) {
              case 'true':
                return { c, test: () => true }
              case 'in':
                if (c.column === 'id') {
                  const ids = c.value.map(resolveId)
                  return { c, ids, test: (r: ModelRow) => ids.some((id) => id.toLowerCase() === r.id) }
                } else {
                  const ids = c.value.map(resolveUser)
                  return { c, ids, test: (r: ModelRow) => ids.includes(r.userId) }
                }
              default: {
                const v: string | number | boolean =
                  c.column === 'id' ? resolveId(c.value) : c.column === 'user_id' ? resolveUser(c.value) : c.value
                const get = (r: ModelRow): unknown =>
                  c.column === 'id'
                    ? r.id
                    : c.column === 'user_id'
                      ? r.userId
                      : c.column === 'verified'
                        ? r.verified
                        : r.priority
                const eq = (r: ModelRow): boolean => get(r) === (c.column === 'id' ? (v as string).toLowerCase() : v)
                return { c, v, test: c.kind === 'eq' ? eq : (r: ModelRow) => !eq(r) }
              }
            }
          })
        const matches = (conds: ReturnType<typeof resolved>, row: ModelRow): boolean => {
          let any = false
          let all = true
          conds.forEach(({ c, test }, i) => {
            if (i > 0 && c.connector === 'or') {
              any ||= all
              all = true
            }
            all &&= test(row)
          })
          return any || all
        }
        const usesMalformed = (conds: ReturnType<typeof resolved>): boolean =>
          conds.some(
            (r) =>
              ('ids' in r && r.ids!.some(isMalformed)) || ('v' in r && typeof r.v === 'string' && isMalformed(r.v)),
          )
        const build = <Q>(query: Q, conds: ReturnType<typeof resolved>): Q => {
          type Chain = Record<string, (...args: unknown[]) => Chain>
          let q = query as unknown as Chain
          conds.forEach((r, i) => {
            const or = i > 0 && r.c.connector === 'or'
            const c = r.c
            if (c.kind === 'true') q = q[or ? 'orWhereRaw' : 'whereRaw']!('1 = 1')
            else if (c.kind === 'in') q = q[or ? 'orWhereIn' : 'whereIn']!(c.column, r.ids)
            else if (c.kind === 'eq') q = q[or ? 'orWhere' : 'where']!(c.column, r.v)
            else q = q[or ? 'orWhereNot' : 'whereNot']!(c.column, r.v)
          })
          return q as unknown as Q
        }
        const outcome = async (work: () => Promise<unknown>): Promise<Outcome> => {
          try {
            return { ok: await work() }
          } catch (error) {
            if (isDataError(error)) return { code: error.code }
            throw error
          }
        }

        for (const op of ops) {
          const label = JSON.stringify(op)
          switch (op.kind) {
            case 'update':
            case 'patchAndFetchById': {
              const id = resolveId(op.id)
              const target = ownAlive(id)
              const patch = patchOf(op.patch)
              const got = await outcome(async () =>
                op.kind === 'update' ? await repo.update(id, patch) : await repo.query().patchAndFetchById(id, patch),
              )
              let expected: Outcome
              if (op.kind === 'update' && isMalformed(id)) expected = { code: 'NOT_FOUND' }
              else if (patchError(patch) !== undefined) expected = { code: patchError(patch)! }
              else if (isMalformed(id))
                expected = { code: 'VALIDATION_FAILED' } // the database refuses the text
              else if (target === undefined) expected = op.kind === 'update' ? { code: 'NOT_FOUND' } : { ok: undefined }
              else if (conflicts(patch, [target])) expected = { code: 'CONFLICT' }
              else {
                applyPatch(target, patch)
                expected = { ok: target.id }
              }
              const actual = 'ok' in got ? { ok: (got.ok as Domain | undefined)?.id } : got
              expect(actual, `${label} ${JSON.stringify(patch)}`).toEqual(expected)
              if ('ok' in got && got.ok !== undefined && target !== undefined) {
                const returned = projection(got.ok as Domain)
                expect({ ...returned, updatedAt: 0 }, label).toEqual({ ...projection(target), updatedAt: 0 })
              }
              break
            }
            case 'delete':
            case 'deleteById': {
              const id = resolveId(op.id)
              const target = ownAlive(id)
              const got = await outcome(() =>
                op.kind === 'delete' ? repo.delete(id) : (repo.query().deleteById(id) as unknown as Promise<number>),
              )
              let expected: Outcome
              if (isMalformed(id))
                expected = op.kind === 'delete' ? { code: 'NOT_FOUND' } : { code: 'VALIDATION_FAILED' }
              else if (target === undefined) expected = op.kind === 'delete' ? { code: 'NOT_FOUND' } : { ok: 0 }
              else {
                state.delete(target.id)
                expected = { ok: op.kind === 'delete' ? undefined : 1 }
              }
              expect(got, label).toEqual(expected)
              break
            }
            case 'queryPatch':
            case 'queryDelete':
            case 'read': {
              const conds = resolved(op.conds)
              const patch = op.kind === 'queryPatch' ? patchOf(op.patch) : {}
              const hits = [...state.values()].filter((r) => r.userId === actorId && matches(conds, r))
              let expected: Outcome
              if (op.kind === 'queryPatch' && patchError(patch) !== undefined) {
                expected = { code: patchError(patch)! }
              } else if (usesMalformed(conds)) {
                expected = { code: 'VALIDATION_FAILED' }
              } else if (op.kind === 'read') {
                expected = { ok: hits.map((r) => r.id).sort() }
              } else if (op.kind === 'queryPatch' && conflicts(patch, hits)) {
                expected = { code: 'CONFLICT' }
              } else {
                expected = { ok: hits.length }
              }
              let got: Outcome
              if (op.kind === 'queryPatch') {
                got = await outcome(() => build(repo.query().patch(patch), conds) as unknown as Promise<number>)
              } else if (op.kind === 'queryDelete') {
                got = await outcome(() => build(repo.query().delete(), conds) as unknown as Promise<number>)
              } else {
                got = await outcome(async () => {
                  const found = await build(repo.query(), conds)
                  const size = await build(repo.query(), conds).resultSize()
                  expect(size, `${label} resultSize`).toBe(found.length)
                  return found.map((r) => r.id).sort()
                })
              }
              expect(got, `${label} ${JSON.stringify(patch)}`).toEqual(expected)
              if ('ok' in got && op.kind === 'queryPatch') for (const row of hits) applyPatch(row, patch)
              if ('ok' in got && op.kind === 'queryDelete') for (const row of hits) state.delete(row.id)
              break
            }
            case 'upsert': {
              const u = op.upsert
              const hostname = resolveHost(u.hostname)!
              const holder = holderOf(hostname)
              const got = await outcome(async () => {
                const insert = repo
                  .query()
                  .insert({ hostname, priority: u.priority, verified: u.verified, note: u.note })
                  .onConflict('hostname')
                return u.mergeAll ? await insert.merge() : await insert.merge(['priority', 'note'])
              })
              // Someone else's hostname, or a new row for a user with no users row (its foreign key): a conflict.
              let expected: Outcome
              if ((holder !== undefined && holder.userId !== actorId) || (holder === undefined && !actorExists)) {
                expected = { code: 'CONFLICT' }
              } else {
                expected = { ok: true }
              }
              const stored = await db.model(Domain).query().findOne({ hostname })
              const context = `${label} hostname ${JSON.stringify(hostname)}`
              expect('ok' in got ? { ok: true } : got, context).toEqual(expected)
              if ('code' in got) break
              if (holder !== undefined) {
                holder.priority = u.priority
                holder.note = u.note
                if (u.mergeAll) holder.verified = u.verified
              } else {
                // A new row, the actor's: its id and creation time are the library's to choose.
                expect(stored?.userId, context).toBe(actorId)
                expect(state.has(stored!.id), context).toBe(false)
                const created: ModelRow = {
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
              break
            }
          }
        }

        // Outside the scope: byte for byte what it was (the row text includes every column, updated_at too).
        expect(await otherRowsText(actorId)).toEqual(before)
        // Inside: exactly the oracle's rows and values (updated_at aside).
        const mine = await db.model(Domain).query().where('user_id', actorId).orderBy('id')
        const expectedMine = [...state.values()]
          .filter((r) => r.userId === actorId)
          .sort((a, b) => (a.id < b.id ? -1 : 1))
        expect(mine.map((r) => ({ ...projection(r), updatedAt: 0 }))).toEqual(
          expectedMine.map((r) => ({ ...projection(r), updatedAt: 0 })),
        )
      }),
      runs(150 * scale),
    )
    await reset()
  })
}

for (const rls of [false, true]) {
  describe(`a host model’s scoped repositories (rls: ${rls})`, () => {
    useDatabase(rls)
    beforeAll(() => {
      scale = rls ? 0.5 : 1
    })
    describe('reads agree with the oracle', readTests)
    if (!rls) describe('integer values', integerRangeTests)
    if (rls) describe('raw SQL is held by the host model’s policies', rawSqlTests)
    describe('writes stay in the scope', writeTests)
  })
}
