/**
 * The oracle property suites of scoped repositories (./oracle.ts), written once for any model with an owner: the
 * library's `Droplet` (test/property/access.property.test.ts) and a model the host defines
 * (test/property/host-model.property.test.ts) go through the same properties, with RLS off and on.
 *
 * 1. list/count: for random actors, filters (and/or/not nested up to depth 3), sorts and limits, `list` returns
 *    exactly the oracle's rows in order and `count` its count.
 * 2. findById/getById agree with visibility for own, others', missing, re-cased and malformed ids; someone else's
 *    row is answered exactly like a missing one.
 * 3. Writes (repo.update/delete, query() patch/delete with where/orWhere naming anyone's ids, and the writes a
 *    model's file adds) by a random user never touch a row outside the scope, and do exactly what the oracle says to
 *    the user's own rows. With a unique column, a write that would give two rows one value is a conflict.
 *
 * A file describes its model once ({@link ScopedModelDescription}: how to draw rows, the values of its filters,
 * patches and where-clauses, its owner, its unique column) and calls {@link scopedOracleSuite}. Each RLS setting
 * gets a database of its own (`rls: true`: half the runs, each RLS read being a transaction of its own). The dataset
 * is drawn once per file from WINCLOUD_PROPERTY_SEED (or a random seed, named in failures); WINCLOUD_TEST_DEEP=1 runs
 * ten times as many cases.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  isDataError,
  type BaseModel,
  type ColumnType,
  type Database,
  type DatabaseConfig,
  type Filter,
  type Scope,
  type ScopedRepository,
} from '../../src/index.js'
import { openTestDatabase } from './database.js'
import {
  OracleInvalid,
  collationRanks,
  oracleCount,
  oracleFindById,
  oracleList,
  type OracleActor,
  type OracleModel,
  type OracleRow,
} from './oracle.js'
import { checkProperty, datasetSeed, insertUsers, runs } from './property.js'

// ---------------------------------------------------------------------------------------------------------------
// What model descriptions draw their values from

export const pick = <T>(values: readonly T[]): fc.Arbitrary<T> => fc.constantFrom(...values)

/** `undefined` `weight` times out of `weight + 1`, else a value of `arb`. */
export const sometimes = <T>(arb: fc.Arbitrary<T>, weight = 3): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb })

const NAME_CHARS = [...'abcAB019-_%\\ .']
const TRICKY_NAMES = ['a_b', 'axb', 'a%b', 'aab', 'a\\b', 'ab', 'AB', 'Ab', '100%', '1000', '_', '%']

/** Random names, and near-collisions that only literal like/ilike matching tells apart. */
export const nameArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: fc.constantFrom(...NAME_CHARS), minLength: 1, maxLength: 5 }) },
  { weight: 1, arbitrary: fc.constantFrom(...TRICKY_NAMES) },
)

const BASE = Date.UTC(2026, 0, 1)
/** Instants 1 ms, 1 s, 1 min… apart; few of them, so many rows share one. */
export const INSTANTS: readonly number[] = [0, 1, 1_000, 60_000, 3_600_000, 86_400_000].map((d) => BASE + d)

/** A timestamp as a Date, an ISO string in UTC, or an ISO string at +02:00; at a known instant or 1 ms off. */
export const timestampValue = (instants: readonly number[]): fc.Arbitrary<Date | string> =>
  fc
    .tuple(pick(instants), fc.constantFrom(-1, 0, 0, 0, 1), fc.constantFrom('date', 'utc', 'offset'))
    .map(([t, d, form]) => {
      const ms = t + d
      if (form === 'date') return new Date(ms)
      if (form === 'utc') return new Date(ms).toISOString()
      return new Date(ms + 2 * 3_600_000).toISOString().replace('Z', '+02:00')
    })

const uuidValue = (ids: readonly string[]): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 4, arbitrary: pick(ids) },
    { weight: 1, arbitrary: pick(ids).map((id) => id.toUpperCase()) },
    { weight: 1, arbitrary: fc.uuid() },
  )

// ---------------------------------------------------------------------------------------------------------------
// The description of a model

/** users[0..3] are role user (users[3] owns nothing), users[4] the admin, users[5] a ghost (no users row). */
const USER_COUNT = 4
const ADMIN = 4
const GHOST = 5
/** Who owns a drawn row: user0 most often. */
const OWNERS = [0, 0, 0, 1, 1, 2, ADMIN]

/** The rows of a suite, drawn once per file. */
export interface Dataset<R extends OracleRow> {
  /** USER_COUNT + 2 ids: the users, the admin, and a ghost with no users row. */
  readonly userIds: readonly string[]
  readonly rows: readonly R[]
  /** Twenty more names ({@link nameArb}), for filter values next to the rows' own. */
  readonly extraNames: readonly string[]
}

/** What the read properties' filters take, drawn from the dataset. */
export interface FilterValues {
  /** Values per filterable property, the id and the owner aside (the suite draws those). */
  readonly values: Readonly<Record<string, fc.Arbitrary<unknown>>>
  /** Per string property: the texts like/ilike patterns are cut from. */
  readonly likeTexts: Readonly<Record<string, readonly string[]>>
  /** Every text the oracle may have to order or compare with `<` (their collation order comes from PostgreSQL). */
  readonly collated: readonly string[]
  /** IP addresses the oracle compares in the form given (see compileFilter). */
  readonly knownIps?: ReadonlySet<string>
}

/** A `where(column, value)` of the write properties' queries, beside those on the id and the owner. */
export interface WhereColumn {
  readonly column: string
  readonly property: string
  readonly values: fc.Arbitrary<string | number | boolean>
}

/** A unique column: patches set it to a new value, an own row's or someone else's (a conflict). */
export interface UniqueColumn {
  readonly property: string
  /** The `n`th new value of one write sequence, held by no row. */
  fresh(n: number): string
}

/** Which value of a unique column to write: none, a new one, one of the actor's rows' or someone else's. */
export type UniquePick = { from: 'none' | 'fresh' | 'own' | 'other'; index: number }

/** A unique value to write; `none` weighs `none` against 1 for each of the others together. */
export const uniquePickArb = (none: number): fc.Arbitrary<UniquePick> =>
  fc.record({
    from: fc.oneof(
      { weight: none, arbitrary: fc.constant('none' as const) },
      { weight: 1, arbitrary: fc.constantFrom('fresh' as const, 'own' as const, 'other' as const) },
    ),
    index: fc.nat(),
  })

/** The result of one write: a value, or the code of a library error. */
export type Outcome = { ok: unknown } | { code: string }

/** A row of the oracle's copy of the table during one write sequence. */
export type Mutable<R> = { -readonly [K in keyof R]: R[K] }

/** What a model's own write kind gets for one step of a write sequence. */
export interface WriteStep<C extends typeof BaseModel, R extends OracleRow> {
  readonly db: Database
  /** The actor's repository. */
  readonly repo: ScopedRepository<InstanceType<C>>
  /** The actor's id, lower-case. */
  readonly actorId: string
  /** Whether the actor has a users row (a new row of the ghost's breaks the foreign key). */
  readonly actorExists: boolean
  /** The oracle's copy of the table, by id: what the step does to the table, it does here. */
  readonly state: Map<string, Mutable<R>>
  /** The op, for assertion messages. */
  readonly label: string
  resolveUnique(pick: UniquePick): string | undefined
  /** The row that holds a value of the unique column now, if any. */
  holderOf(value: unknown): Mutable<R> | undefined
  /** Runs `work`: its value, or the code of the library error it throws (any other error is rethrown). */
  outcome(work: () => Promise<unknown>): Promise<Outcome>
}

/** A kind of write only one model has (an upsert on its unique column, say), mixed into the write sequences. */
export interface ExtraWrite<C extends typeof BaseModel, R extends OracleRow, E extends { readonly kind: string }> {
  readonly op: fc.Arbitrary<E>
  /** Runs the op, checks its outcome against the oracle, and keeps `step.state` the oracle's copy of the table. */
  run(op: E, step: WriteStep<C, R>): Promise<void>
}

export interface ScopedModelDescription<
  C extends typeof BaseModel,
  R extends OracleRow,
  E extends { readonly kind: string } = never,
> {
  readonly model: C
  /** What `createDatabase` needs beside the connection and `rls` (a host registers its models). */
  readonly config?: Omit<DatabaseConfig, 'connection' | 'rls'>
  /** Runs after the users are inserted and before the rows are (a host creates its table here). */
  prepare?(db: Database, rls: boolean): Promise<void>
  /** The property holding the owner's id, and its column. */
  readonly ownerProperty: string
  readonly ownerColumn: string
  /** A random row (id included) owned by `owner`. */
  row(owner: fc.Arbitrary<string>): fc.Arbitrary<R>
  /** The unique column, if any: the dataset's rows differ in it, and the writes check its conflicts. */
  readonly unique?: UniqueColumn
  /** What a row and a model instance are compared by (timestamps as milliseconds). */
  readonly projection: (row: R | InstanceType<C>) => Record<string, unknown>
  filterValues(dataset: Dataset<R>): FilterValues
  /** How often a filter names each property, against 1 for those not listed. */
  readonly fieldWeights?: Readonly<Record<string, number>>
  /** What a patch may set: a value per property, or undefined to leave it out (see {@link sometimes}). */
  readonly patch: Readonly<Record<string, fc.Arbitrary<unknown>>>
  /** A value the model's schema refuses, which one patch in ten sets. */
  readonly invalidPatch: { readonly property: string; readonly value: unknown }
  /** The columns the query writes' where-clauses name, beside the id and the owner. */
  readonly where: readonly WhereColumn[]
  /** A kind of write of this model's own. */
  readonly extraWrite?: ExtraWrite<C, R, E>
}

/** Who reads or writes in a property: a user of some role, the admin, or `db.system()`. */
export interface TestActor {
  readonly label: string
  readonly oracle: OracleActor
  /** Actors who see many rows are picked more often: small visible sets make most filters trivially empty. */
  readonly weight: number
  scope(): Scope
  [fc.toStringMethod](): string
}

export interface ScopedOracleSuite<R extends OracleRow> {
  readonly dataset: Dataset<R>
  /** user0 (many rows; also with an upper-case id), user1, user2, user3 (no rows), the ghost, admin, system. */
  readonly readers: readonly TestActor[]
  /** The oracle's model, once the database of the describe being run is open. */
  readonly oracle: OracleModel
  actorArb(actors: readonly TestActor[]): fc.Arbitrary<TestActor>
  /** Runs a property; a failure names the dataset seed. */
  check<T>(property: fc.IAsyncProperty<T>, numRuns: number): Promise<void>
  /**
   * Registers `${title} (rls: false)` and `(rls: true)`, each on a database of its own: the reads, then `more(rls)`
   * (the model's own properties), then the writes.
   */
  register(title: string, more?: (rls: boolean) => void): void
}

// ---------------------------------------------------------------------------------------------------------------
// The writes' vocabulary

type IdPick = { from: 'own' | 'other' | 'missing' | 'malformed'; index: number; upper: boolean }
type PatchOwner = 'none' | 'self' | 'other'
interface PatchSpec {
  values: Record<string, unknown>
  unique: UniquePick | undefined
  owner: PatchOwner
  invalid: boolean
}
type Connector = 'and' | 'or'
type Scalar = string | number | boolean
/** A where-clause on the id, on the owner (by user index; 0 is the actor) or on a {@link WhereColumn}. */
type Cond =
  | { connector: Connector; kind: 'eq' | 'not'; of: 'id'; value: IdPick }
  | { connector: Connector; kind: 'eq' | 'not'; of: 'owner'; value: number }
  | { connector: Connector; kind: 'eq' | 'not'; of: 'column'; column: string; value: Scalar }
  | { connector: Connector; kind: 'in'; of: 'id'; value: IdPick[] }
  | { connector: Connector; kind: 'in'; of: 'owner'; value: number[] }
  | { connector: Connector; kind: 'true' }
type CommonOp =
  | { kind: 'update'; id: IdPick; patch: PatchSpec }
  | { kind: 'delete'; id: IdPick }
  | { kind: 'patchAndFetchById'; id: IdPick; patch: PatchSpec }
  | { kind: 'deleteById'; id: IdPick }
  | { kind: 'queryPatch'; conds: Cond[]; patch: PatchSpec }
  | { kind: 'queryDelete'; conds: Cond[] }
  | { kind: 'read'; conds: Cond[] }

const COMMON_KINDS: ReadonlySet<string> = new Set([
  'update',
  'delete',
  'patchAndFetchById',
  'deleteById',
  'queryPatch',
  'queryDelete',
  'read',
])

const MALFORMED = ['not-a-uuid', "' or '1'='1", '', '00000000-0000-0000-0000-00000000000g']

const idPickArb: fc.Arbitrary<IdPick> = fc.record({
  from: fc.constantFrom('own', 'own', 'other', 'other', 'missing', 'malformed'),
  index: fc.nat(),
  upper: fc.boolean(),
})

const typeName = (type: ColumnType): string => (typeof type === 'string' ? type : 'enum')

const swapCase = (text: string): string =>
  text.replace(/[a-z]/gi, (c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()))

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

async function outcome(work: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: await work() }
  } catch (error) {
    if (isDataError(error)) return { code: error.code }
    throw error
  }
}

// ---------------------------------------------------------------------------------------------------------------

/** Draws the dataset of `description` and builds its properties; `register` puts them in describes. */
export function scopedOracleSuite<
  C extends typeof BaseModel,
  R extends OracleRow,
  E extends { readonly kind: string } = never,
>(description: ScopedModelDescription<C, R, E>): ScopedOracleSuite<R> {
  const { model: Model, ownerProperty, ownerColumn, unique, projection } = description
  const seed = datasetSeed()
  const table = Model.tableName
  if (Model.filterable === undefined || Model.sortable === undefined)
    throw new Error(`${Model.name}: nothing to filter`)
  const filterable = Model.filterable
  const sortable = Model.sortable
  const ownerOf = (row: OracleRow): unknown => row[ownerProperty]

  // -------------------------------------------------------------------------------------------------------------
  // The dataset: drawn once, synchronously, so the arbitraries below can pick from its values.

  const datasetArb: fc.Arbitrary<Dataset<R>> = fc
    .uniqueArray(fc.uuid({ version: 4 }), { minLength: USER_COUNT + 2, maxLength: USER_COUNT + 2 })
    .chain((userIds) =>
      fc.record({
        userIds: fc.constant(userIds),
        // With a unique column the rows differ in it (the table says so); ids are v4 UUIDs, unique in practice.
        rows: fc.uniqueArray(description.row(pick(OWNERS).map((i) => userIds[i]!)), {
          minLength: 50,
          maxLength: 70,
          selector: unique === undefined ? (r) => r.id : (r) => r[unique.property],
        }),
        extraNames: fc.array(nameArb, { minLength: 20, maxLength: 20 }),
      }),
    )
  const dataset = fc.sample(datasetArb, { seed, numRuns: 1 })[0]!
  const { userIds, rows } = dataset
  const ids = rows.map((r) => r.id)
  const byId = new Map(rows.map((r) => [r.id, r]))
  const filterValues = description.filterValues(dataset)
  const knownIps = filterValues.knownIps ?? new Set<string>()

  let db: Database
  let cleanup: () => Promise<void>
  let oracle: OracleModel
  /** Property runs for one describe: the RLS one runs fewer (each RLS read is a transaction of its own). */
  let scale = 1

  /** Opens a database of its own for the enclosing describe (with or without row-level security) and seeds it. */
  function useDatabase(rls: boolean): void {
    beforeAll(async () => {
      ;({ db, cleanup } = await openTestDatabase({ ...description.config, rls }))
      await insertUsers(db, userIds.slice(0, USER_COUNT + 1), ADMIN)
      await description.prepare?.(db, rls)
      await db
        .model(Model)
        .query()
        .insert(rows.map((r) => ({ ...r })) as never)
      await db.knex.raw('create table ?? as select * from ??', [`pristine_${table}`, table])
      oracle = {
        filterable,
        sortable,
        defaultSort: ['-createdAt'],
        ownerProperty,
        textRank: await collationRanks(db.knex, filterValues.collated),
      }
      scale = rls ? 0.5 : 1
    })

    afterAll(async () => {
      await cleanup()
    })
  }

  const check = <T>(property: fc.IAsyncProperty<T>, numRuns: number): Promise<void> =>
    checkProperty(property, numRuns, seed)

  // -------------------------------------------------------------------------------------------------------------
  // Actors

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

  const actorArb = (actors: readonly TestActor[]): fc.Arbitrary<TestActor> =>
    fc.oneof(...actors.map((a) => ({ weight: a.weight, arbitrary: fc.constant(a) })))

  // -------------------------------------------------------------------------------------------------------------
  // Filters, sorts, limits

  const VALUES: Readonly<Record<string, fc.Arbitrary<unknown>>> = {
    id: uuidValue(ids),
    [ownerProperty]: uuidValue(userIds),
    ...filterValues.values,
  }

  /** like/ilike text: a piece of a known value (so it matches something) or a few random characters. */
  const likeText = (property: string): fc.Arbitrary<string> =>
    fc.oneof(
      fc
        .tuple(pick(filterValues.likeTexts[property]!), fc.nat(6), fc.nat(6))
        .map(([s, a, b]) => s.slice(Math.min(a, b), Math.max(a, b))),
      fc.string({ unit: pick(NAME_CHARS), maxLength: 3 }),
      fc.string({ unit: pick(['a', 'b', 'A', '_', '%', '\\']), maxLength: 3 }),
    )

  const likePattern = (property: string, ilike: boolean): fc.Arbitrary<Record<string, string>> =>
    fc
      .tuple(pick(['startsWith', 'contains', 'endsWith']), likeText(property), fc.constantFrom(0, 1, 2))
      .map(([form, text, casing]) => ({
        [form]: !ilike || casing === 0 ? text : casing === 1 ? swapCase(text) : text.toUpperCase(),
      }))

  /** One or two operators the property's type takes (docs/access-control.md, "Operators per type"). */
  function operatorsArb(property: string): fc.Arbitrary<Record<string, unknown>> {
    const type = typeName(filterable[property]!)
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

  const fieldArb: fc.Arbitrary<[string, unknown]> = fc.oneof(
    ...Object.keys(filterable).map((property) => ({
      weight: description.fieldWeights?.[property] ?? 1,
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

  const sortArb: fc.Arbitrary<string[] | undefined> = sometimes(
    fc
      .tuple(
        fc.shuffledSubarray([...sortable], { maxLength: 3 }),
        fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
      )
      .map(([keys, down]) => keys.map((k, i) => (down[i] ? `-${k}` : k))),
    1,
  )

  const limitArb: fc.Arbitrary<number | undefined> = fc.oneof(
    fc.constant(undefined),
    fc.integer({ min: 1, max: 5 }),
    fc.integer({ min: 1, max: 100 }),
  )

  // -------------------------------------------------------------------------------------------------------------
  // Reads

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
            const read = async (): Promise<[InstanceType<C>[], number]> => {
              const both = async (scope: Scope): Promise<[InstanceType<C>[], number]> => [
                await scope.repo(Model).list(options),
                await scope.repo(Model).count(filter as never),
              ]
              return inTransaction ? actor.scope().transaction(both) : both(actor.scope())
            }
            let expected: string[]
            try {
              expected = oracleList(oracle, rows, actor.oracle, options, knownIps)
            } catch (error) {
              if (!(error instanceof OracleInvalid)) throw error
              // Only the condition limit can make a generated filter invalid.
              await expectValidationError(read())
              await expectValidationError(
                actor
                  .scope()
                  .repo(Model)
                  .count(filter as never),
              )
              return
            }
            const [listed, counted] = await read()
            expect(listed.map((r) => r.id)).toEqual(expected)
            expect(listed.map(projection)).toEqual(expected.map((id) => projection(byId.get(id)!)))
            expect(counted).toBe(oracleCount(oracle, rows, actor.oracle, filter, knownIps))
          },
        ),
        runs(1000 * scale),
      )
    })

    it('findById and getById see exactly the visible rows', async () => {
      const malformed = fc.oneof(
        fc.string({ maxLength: 40 }),
        pick(ids).map((id) => `{${id}}`),
        pick(ids).map((id) => id.replace(/-/g, '')),
        pick(ids).map((id) => ` ${id}`),
        pick(ids).map((id) => `${id}'--`),
      )
      const idArb = fc.oneof(
        { weight: 4, arbitrary: pick(ids) },
        { weight: 2, arbitrary: pick(ids).map((id) => id.toUpperCase()) },
        { weight: 1, arbitrary: fc.uuid() },
        { weight: 1, arbitrary: pick(userIds) },
        { weight: 2, arbitrary: malformed },
      )
      await check(
        fc.asyncProperty(actorArb(readers), idArb, async (actor, id) => {
          const repo = actor.scope().repo(Model)
          const expected = oracleFindById(oracle, rows, actor.oracle, id)
          const found = await repo.findById(id)
          expect(found?.id).toBe(expected)
          if (found !== undefined) expect(projection(found)).toEqual(projection(byId.get(found.id)!))
          const got = await repo.getById(id).then(
            (row) => row,
            (e: unknown) => e,
          )
          if (expected === undefined) {
            expect(isDataError(got) && got.code === 'NOT_FOUND', `expected NotFoundError, got ${String(got)}`).toBe(
              true,
            )
            // Someone else's row is answered exactly like a missing one: same error, same message.
            const missing = await repo.getById('00000000-0000-4000-8000-000000000000').then(
              () => undefined,
              (e: unknown) => e,
            )
            expect(isDataError(got) && isDataError(missing) && got.toJSON()).toEqual(
              isDataError(missing) && missing.toJSON(),
            )
          } else {
            expect((got as InstanceType<C>).id).toBe(expected)
          }
        }),
        runs(200 * scale),
      )
    })
  }

  // -------------------------------------------------------------------------------------------------------------
  // Writes

  const patchArb: fc.Arbitrary<PatchSpec> = fc.record({
    values: fc.record(description.patch),
    unique: unique === undefined ? fc.constant(undefined) : uniquePickArb(3),
    owner: fc.constantFrom<PatchOwner>('none', 'none', 'none', 'none', 'self', 'other'),
    invalid: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
  })
  /** The properties a patch may change (the owner aside: a patch naming another owner is refused). */
  const patchable = [...Object.keys(description.patch), ...(unique === undefined ? [] : [unique.property])]
  const whereProperty = new Map(description.where.map((w) => [w.column, w.property]))

  const connectorArb = fc.constantFrom<Connector>('and', 'or', 'or')
  const condArb: fc.Arbitrary<Cond> = fc.oneof(
    fc.record({
      connector: connectorArb,
      kind: fc.constantFrom('eq', 'not'),
      of: fc.constant('id'),
      value: idPickArb,
    }),
    fc.record({
      connector: connectorArb,
      kind: fc.constantFrom('eq', 'not'),
      of: fc.constant('owner'),
      value: fc.nat(USER_COUNT + 1),
    }),
    ...description.where.map((w) =>
      fc.record({
        connector: connectorArb,
        kind: fc.constantFrom('eq', 'not'),
        of: fc.constant('column'),
        column: fc.constant(w.column),
        value: w.values,
      }),
    ),
    fc.record({
      connector: connectorArb,
      kind: fc.constant('in'),
      of: fc.constant('id'),
      value: fc.array(idPickArb, { maxLength: 4 }),
    }),
    fc.record({
      connector: connectorArb,
      kind: fc.constant('in'),
      of: fc.constant('owner'),
      value: fc.array(fc.nat(USER_COUNT + 1), { maxLength: 3 }),
    }),
    fc.record({ connector: connectorArb, kind: fc.constant('true') }),
  )
  const condsArb = fc.array(condArb, { minLength: 1, maxLength: 4 })

  const writeOpArb: fc.Arbitrary<CommonOp | E> = fc.oneof(
    fc.record({ kind: fc.constant('update'), id: idPickArb, patch: patchArb }),
    fc.record({ kind: fc.constant('delete'), id: idPickArb }),
    fc.record({ kind: fc.constant('patchAndFetchById'), id: idPickArb, patch: patchArb }),
    fc.record({ kind: fc.constant('deleteById'), id: idPickArb }),
    fc.record({ kind: fc.constant('queryPatch'), conds: condsArb, patch: patchArb }),
    fc.record({ kind: fc.constant('queryDelete'), conds: condsArb }),
    fc.record({ kind: fc.constant('read'), conds: condsArb }),
    ...(description.extraWrite === undefined ? [] : [description.extraWrite.op]),
  )
  const isCommon = (op: CommonOp | E): op is CommonOp => COMMON_KINDS.has(op.kind)

  const otherRowsText = async (actorId: string): Promise<string[]> => {
    const { rows: found } = await db.knex.raw<{ rows: { t: string }[] }>(
      'select d::text as t from ?? d where ?? <> ? order by id',
      [table, ownerColumn, actorId],
    )
    return found.map((r) => r.t)
  }
  const reset = async (): Promise<void> => {
    await db.knex.raw('delete from ??', [table])
    await db.knex.raw('insert into ?? select * from ??', [table, `pristine_${table}`])
  }

  /** One write sequence by a user, each step checked against the oracle's copy of the table, then the table. */
  async function writeSequence(actor: TestActor, ops: readonly (CommonOp | E)[]): Promise<void> {
    await reset()
    const actorId = (actor.oracle as { id: string }).id.toLowerCase()
    const actorExists = userIds.slice(0, USER_COUNT + 1).includes(actorId)
    const ownIds = rows.filter((r) => ownerOf(r) === actorId).map((r) => r.id)
    const otherIds = rows.filter((r) => ownerOf(r) !== actorId).map((r) => r.id)
    const otherUniques =
      unique === undefined ? [] : rows.filter((r) => ownerOf(r) !== actorId).map((r) => r[unique.property])
    const state = new Map<string, Mutable<R>>(rows.map((r) => [r.id, { ...r }]))
    const before = await otherRowsText(actorId)
    const repo = actor.scope().repo(Model)
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
    const resolveUnique = (p: UniquePick): string | undefined => {
      if (unique === undefined || p.from === 'none') return undefined
      const ownNow = [...state.values()].filter((r) => ownerOf(r) === actorId).map((r) => r[unique.property] as string)
      const from = p.from === 'own' ? ownNow : p.from === 'other' ? (otherUniques as string[]) : []
      if (from.length > 0) return from[p.index % from.length]!
      freshCount += 1
      return unique.fresh(freshCount)
    }
    const holderOf = (value: unknown): Mutable<R> | undefined =>
      unique === undefined ? undefined : [...state.values()].find((r) => r[unique.property] === value)
    const resolveUser = (i: number): string => (i === 0 ? actorId : userIds[i % userIds.length]!)
    const isMalformed = (id: string): boolean => MALFORMED.includes(id)
    const ownAlive = (id: string): Mutable<R> | undefined => {
      const row = state.get(id.toLowerCase())
      return row !== undefined && ownerOf(row) === actorId ? row : undefined
    }
    const patchOf = (p: PatchSpec): Record<string, unknown> => {
      const patch: Record<string, unknown> = {}
      for (const [property, value] of Object.entries(p.values)) if (value !== undefined) patch[property] = value
      const uniqueValue = p.unique === undefined ? undefined : resolveUnique(p.unique)
      if (uniqueValue !== undefined) patch[unique!.property] = uniqueValue
      if (p.owner === 'self') patch[ownerProperty] = actorId
      if (p.owner === 'other') patch[ownerProperty] = userIds.find((id) => id !== actorId)
      if (p.invalid) patch[description.invalidPatch.property] = description.invalidPatch.value
      return patch
    }
    /** The error a patch must get regardless of which rows it targets, if any. */
    const patchError = (p: PatchSpec, patch: Record<string, unknown>): string | undefined => {
      if (p.invalid) return 'VALIDATION_FAILED'
      if (patch[ownerProperty] !== undefined && patch[ownerProperty] !== actorId) return 'FORBIDDEN'
      return undefined
    }
    /** Whether writing the patch to exactly `targets` breaks the unique column. */
    const conflicts = (patch: Record<string, unknown>, targets: readonly Mutable<R>[]): boolean => {
      if (unique === undefined || patch[unique.property] === undefined || targets.length === 0) return false
      if (targets.length > 1) return true
      const holder = holderOf(patch[unique.property])
      return holder !== undefined && holder.id !== targets[0]!.id
    }
    const applyPatch = (row: Mutable<R>, patch: Record<string, unknown>): void => {
      for (const key of patchable) {
        if (key in patch) (row as Record<string, unknown>)[key] = patch[key]
      }
    }
    // knex writes where-clauses flat, so SQL precedence applies: `a or b and c` is `a or (b and c)`.
    const resolved = (conds: Cond[]) =>
      conds.map((c) => {
        switch (c.kind) {
          case 'true':
            return { c, column: '', test: () => true }
          case 'in':
            if (c.of === 'id') {
              const ids = c.value.map(resolveId)
              return {
                c,
                column: 'id',
                ids,
                test: (r: Mutable<R>) => ids.some((id) => id.toLowerCase() === r.id),
              }
            } else {
              const ids = c.value.map(resolveUser)
              return {
                c,
                column: ownerColumn,
                ids,
                test: (r: Mutable<R>) => ids.includes(ownerOf(r) as string),
              }
            }
          default: {
            const v: Scalar = c.of === 'id' ? resolveId(c.value) : c.of === 'owner' ? resolveUser(c.value) : c.value
            const column = c.of === 'id' ? 'id' : c.of === 'owner' ? ownerColumn : c.column
            const property = c.of === 'id' ? 'id' : c.of === 'owner' ? ownerProperty : whereProperty.get(c.column)!
            const eq = (r: Mutable<R>): boolean =>
              (r as Record<string, unknown>)[property] === (c.of === 'id' ? (v as string).toLowerCase() : v)
            return { c, column, v, test: c.kind === 'eq' ? eq : (r: Mutable<R>) => !eq(r) }
          }
        }
      })
    const matches = (conds: ReturnType<typeof resolved>, row: Mutable<R>): boolean => {
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
        (r) => ('ids' in r && r.ids!.some(isMalformed)) || ('v' in r && typeof r.v === 'string' && isMalformed(r.v)),
      )
    const build = <Q>(query: Q, conds: ReturnType<typeof resolved>): Q => {
      type Chain = Record<string, (...args: unknown[]) => Chain>
      let q = query as unknown as Chain
      conds.forEach((r, i) => {
        const or = i > 0 && r.c.connector === 'or'
        const c = r.c
        if (c.kind === 'true') q = q[or ? 'orWhereRaw' : 'whereRaw']!('1 = 1')
        else if (c.kind === 'in') q = q[or ? 'orWhereIn' : 'whereIn']!(r.column, r.ids)
        else if (c.kind === 'eq') q = q[or ? 'orWhere' : 'where']!(r.column, r.v)
        else q = q[or ? 'orWhereNot' : 'whereNot']!(r.column, r.v)
      })
      return q as unknown as Q
    }

    for (const op of ops) {
      const label = JSON.stringify(op)
      if (!isCommon(op)) {
        const step = { db, repo, actorId, actorExists, state, label, resolveUnique, holderOf, outcome }
        await description.extraWrite!.run(op, step)
        continue
      }
      switch (op.kind) {
        case 'update':
        case 'patchAndFetchById': {
          const id = resolveId(op.id)
          const target = ownAlive(id)
          const patch = patchOf(op.patch)
          const got = await outcome(async () =>
            op.kind === 'update'
              ? await repo.update(id, patch as never)
              : await repo.query().patchAndFetchById(id, patch),
          )
          let expected: Outcome
          if (op.kind === 'update' && isMalformed(id)) expected = { code: 'NOT_FOUND' }
          else if (patchError(op.patch, patch) !== undefined) expected = { code: patchError(op.patch, patch)! }
          else if (isMalformed(id))
            expected = { code: 'VALIDATION_FAILED' } // the database refuses the text
          else if (target === undefined) expected = op.kind === 'update' ? { code: 'NOT_FOUND' } : { ok: undefined }
          else if (conflicts(patch, [target])) expected = { code: 'CONFLICT' }
          else {
            applyPatch(target, patch)
            expected = { ok: target.id }
          }
          const actual = 'ok' in got ? { ok: (got.ok as InstanceType<C> | undefined)?.id } : got
          expect(actual, `${label} ${JSON.stringify(patch)}`).toEqual(expected)
          if ('ok' in got && got.ok !== undefined && target !== undefined) {
            const returned = projection(got.ok as InstanceType<C>)
            expect({ ...returned, updatedAt: 0 }, label).toEqual({ ...projection(target as R), updatedAt: 0 })
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
          if (isMalformed(id)) expected = op.kind === 'delete' ? { code: 'NOT_FOUND' } : { code: 'VALIDATION_FAILED' }
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
          const hits = [...state.values()].filter((r) => ownerOf(r) === actorId && matches(conds, r))
          let expected: Outcome
          if (op.kind === 'queryPatch' && patchError(op.patch, patch) !== undefined) {
            expected = { code: patchError(op.patch, patch)! }
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
            got = await outcome(() => build(repo.query().patch(patch as never), conds) as unknown as Promise<number>)
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
      }
    }

    // Outside the scope: byte for byte what it was (the row text includes every column, updated_at too).
    expect(await otherRowsText(actorId)).toEqual(before)
    // Inside: exactly the oracle's rows and values (updated_at aside).
    const mine = await db.model(Model).query().where(ownerColumn, actorId).orderBy('id')
    const expectedMine = [...state.values()]
      .filter((r) => ownerOf(r) === actorId)
      .sort((a, b) => (a.id < b.id ? -1 : 1))
    expect(mine.map((r) => ({ ...projection(r as InstanceType<C>), updatedAt: 0 }))).toEqual(
      expectedMine.map((r) => ({ ...projection(r as R), updatedAt: 0 })),
    )
  }

  function writeTests(): void {
    it('never change, create or remove a row outside the scope, and do exactly what they should inside it', async () => {
      await check(
        fc.asyncProperty(actorArb(writers), fc.array(writeOpArb, { minLength: 1, maxLength: 6 }), writeSequence),
        runs(150 * scale),
      )
      await reset()
    })
  }

  return {
    dataset,
    readers,
    get oracle() {
      return oracle
    },
    actorArb,
    check,
    register(title, more) {
      for (const rls of [false, true]) {
        describe(`${title} (rls: ${rls})`, () => {
          useDatabase(rls)
          describe('reads agree with the oracle', readTests)
          more?.(rls)
          describe('writes stay in the scope', writeTests)
        })
      }
    },
  }
}
