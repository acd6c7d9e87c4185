/**
 * Property tests of the bulk operations of scoped repositories (src/bulk/*), against a small in-memory oracle of
 * visibility (a user sees their own droplets; admin and system see all):
 *
 * 1. bulkUpdate(ids): `updated` is exactly the visible requested ids (deduplicated, lower-case, sorted), `notFound`
 *    every other requested id (malformed ones as given); updated rows carry the patch and a new updatedAt; every
 *    other row is unchanged to the byte; onProgress counts chunks 1, 2, … with non-decreasing `done`.
 * 2. bulkUpdate({ filter }): `updated` is the oracle's count of visible matching rows; exactly those change.
 * 3. bulkUpdateEach: per-row patches of different shapes; updated/notFound as in 1, each row gets its own patch.
 * 4. Bad input (patches, options, selectors, rows) is refused with a ValidationError or ForbiddenError and the table
 *    checksum does not move; a failure in chunk k rolls back everything with transaction 'all', and exactly chunk
 *    k onwards with transaction 'chunk'.
 * 5. bulkCreate: a user's rows are their own; a row for another owner fails the call before anything is written
 *    (every row is checked first), with 'all' and with 'chunk'.
 *
 * Each describe runs on a database of its own, without and with row-level security (`rls: true`, fewer runs).
 * The dataset is drawn once from WINCLOUD_PROPERTY_SEED (or a random seed, named in failures), and restored before
 * every run. WINCLOUD_TEST_DEEP=1 runs ten times as many cases.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  DROPLET_STATUSES,
  Droplet,
  isDataError,
  type BulkOptions,
  type BulkProgress,
  type Database,
  type Filter,
  type ScopedRepository,
  type Scope,
} from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'
import { checkProperty, datasetSeed, insertUsers, runs } from '../helpers/property.js'

const SEED = datasetSeed()

// ---------------------------------------------------------------------------------------------------------------
// The dataset

const REGIONS = ['nyc1', 'nyc3', 'ams3', 'sfo2'] as const
const SIZES = ['s-1vcpu-1gb', 's-2vcpu-4gb', 'm-4vcpu-8gb'] as const
const IPS = ['10.0.0.1', '192.168.1.10', '2001:db8::1', 'fe80::1'] as const
const BASE = Date.UTC(2026, 0, 1)

const USERS = 4 // users[0..3] have role user (users[3] owns nothing); users[4] is the admin; users[5] has no row
const ADMIN = 4
const GHOST = 5

interface Dataset {
  readonly userIds: readonly string[]
  readonly droplets: readonly {
    id: string
    userId: string
    name: string
    region: string
    size: string
    status: string
    ipAddress: string | null
    createdAt: Date
    updatedAt: Date
  }[]
}

const datasetArb: fc.Arbitrary<Dataset> = fc
  .record({
    userIds: fc.uniqueArray(fc.uuid({ version: 4 }), { minLength: USERS + 2, maxLength: USERS + 2 }),
    droplets: fc.uniqueArray(
      fc.record({
        id: fc.uuid({ version: 4 }),
        owner: fc.constantFrom(0, 0, 0, 1, 1, 2, ADMIN),
        name: fc.string({ minLength: 1, maxLength: 8 }),
        region: fc.constantFrom(...REGIONS),
        size: fc.constantFrom(...SIZES),
        status: fc.constantFrom(...DROPLET_STATUSES),
        ipAddress: fc.option(fc.constantFrom(...IPS), { nil: null }),
        offset: fc.integer({ min: 0, max: 1_000_000 }),
      }),
      { minLength: 25, maxLength: 35, selector: (d) => d.id },
    ),
  })
  .map(({ userIds, droplets }) => ({
    userIds,
    droplets: droplets.map((d) => ({
      id: d.id,
      userId: userIds[d.owner]!,
      name: d.name,
      region: d.region,
      size: d.size,
      status: d.status,
      ipAddress: d.ipAddress,
      createdAt: new Date(BASE + d.offset),
      updatedAt: new Date(BASE + d.offset + 7),
    })),
  }))

const dataset = fc.sample(datasetArb, { seed: SEED, numRuns: 1 })[0]!
const userIds = dataset.userIds
const dropletIds = dataset.droplets.map((d) => d.id)
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

let db: Database
let cleanup: () => Promise<void>

function useDatabase(rls: boolean): void {
  beforeAll(async () => {
    ;({ db, cleanup } = await openTestDatabase({ rls }))
    await insertUsers(db, userIds.slice(0, USERS + 1), ADMIN)
    await db
      .model(Droplet)
      .query()
      .insert(dataset.droplets.map((d) => ({ ...d })) as never)
    await db.knex.raw('create table pristine_droplets as select * from droplets')
  })
  afterAll(async () => {
    await cleanup()
  })
}

const check = <T>(property: fc.IAsyncProperty<T>, numRuns: number): Promise<void> =>
  checkProperty(property, numRuns, SEED)

async function reset(): Promise<void> {
  await db.knex.raw('delete from droplets; insert into droplets select * from pristine_droplets')
}

interface Row {
  id: string
  userId: string
  name: string
  region: string
  size: string
  status: string
  ipAddress: string | null
  createdAt: Date
  updatedAt: Date
  text: string
}

/** Every droplet, by id, with its `d::text` for byte-for-byte comparisons. */
async function table(): Promise<Map<string, Row>> {
  const { rows } = await db.knex.raw<{ rows: Row[] }>(
    `select id::text as id, user_id::text as "userId", name, region, size, status, host(ip_address) as "ipAddress",
            created_at as "createdAt", updated_at as "updatedAt", d::text as text
     from droplets d order by id`,
  )
  return new Map(rows.map((r) => [r.id, r]))
}

async function checksum(): Promise<string> {
  const { rows } = await db.knex.raw<{ rows: { sum: string }[] }>(
    `select md5(coalesce(string_agg(d::text, ',' order by id), '')) as sum from droplets d`,
  )
  return rows[0]!.sum
}

// ---------------------------------------------------------------------------------------------------------------
// Actors

interface TestActor {
  readonly label: string
  /** The lower-case id of a user actor; undefined for actors who see every row. */
  readonly owner: string | undefined
  readonly isUser: boolean
  scope(): Scope
  [fc.toStringMethod](): string
}

const userActor = (index: number, label: string, upper = false): TestActor => {
  const id = upper ? userIds[index]!.toUpperCase() : userIds[index]!
  return {
    label,
    owner: userIds[index]!,
    isUser: true,
    scope: () => db.scope({ id, role: 'user' }),
    [fc.toStringMethod]: () => label,
  }
}
const admin: TestActor = {
  label: 'admin',
  owner: undefined,
  isUser: false,
  scope: () => db.scope({ id: userIds[ADMIN]!, role: 'admin' }),
  [fc.toStringMethod]: () => 'admin',
}
const system: TestActor = {
  label: 'system',
  owner: undefined,
  isUser: false,
  scope: () => db.system('bulk property test'),
  [fc.toStringMethod]: () => 'system',
}
const user0 = userActor(0, 'user0')
const actorArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant(user0) },
  { weight: 1, arbitrary: fc.constant(userActor(0, 'user0 with an upper-case id', true)) },
  { weight: 2, arbitrary: fc.constant(userActor(1, 'user1')) },
  { weight: 1, arbitrary: fc.constant(userActor(2, 'user2')) },
  { weight: 1, arbitrary: fc.constant(userActor(3, 'user3 (no rows)')) },
  { weight: 1, arbitrary: fc.constant(userActor(GHOST, 'a user with no users row')) },
  { weight: 2, arbitrary: fc.constant(admin) },
  { weight: 2, arbitrary: fc.constant(system) },
)
const userArb = fc.constantFrom(user0, userActor(1, 'user1'), userActor(3, 'user3 (no rows)'))

const visible = (actor: TestActor, row: Row | undefined): boolean =>
  row !== undefined && (actor.owner === undefined || row.userId === actor.owner)

const repoOf = (actor: TestActor): ScopedRepository<Droplet> => actor.scope().repo(Droplet)

// ---------------------------------------------------------------------------------------------------------------
// Inputs

const MALFORMED = ['not-an-id', '', '42', `{${dropletIds[0]}}`, dropletIds[0]!.replace(/-/g, ''), ` ${dropletIds[1]}`]
const idArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...dropletIds) },
  { weight: 1, arbitrary: fc.constantFrom(...dropletIds).map((id) => id.toUpperCase()) },
  { weight: 1, arbitrary: fc.uuid() },
  { weight: 1, arbitrary: fc.constantFrom(...MALFORMED) },
)

type Patch = Partial<Pick<Droplet, 'status' | 'name' | 'region' | 'size' | 'ipAddress'>>
const patchArb: fc.Arbitrary<Patch> = fc
  .record(
    {
      status: fc.constantFrom(...DROPLET_STATUSES),
      name: fc.string({ minLength: 1, maxLength: 12 }),
      region: fc.constantFrom(...REGIONS),
      size: fc.constantFrom(...SIZES),
      ipAddress: fc.option(fc.constantFrom(...IPS), { nil: null }),
    },
    { requiredKeys: [] },
  )
  .filter((p) => Object.keys(p).length > 0)

const optionsArb = fc.record({
  chunkSize: fc.integer({ min: 1, max: 7 }),
  transaction: fc.constantFrom('all', 'chunk'),
})

const FIELDS = ['userId', 'name', 'region', 'size', 'status', 'ipAddress', 'createdAt'] as const

/** The row after a patch: the patched fields changed, updatedAt at or after `since`, the rest as before. */
function expectPatched(after: Row | undefined, before: Row, patch: Patch, since: number): void {
  expect(after).toBeDefined()
  const expected = { ...before, ...patch } as Record<string, unknown>
  for (const field of FIELDS) expect((after as unknown as Record<string, unknown>)[field]).toEqual(expected[field])
  expect(after!.updatedAt.getTime()).toBeGreaterThanOrEqual(since)
  expect(after!.updatedAt.getTime()).toBeGreaterThan(before.updatedAt.getTime())
}

function expectProgress(progress: BulkProgress[], updated: number, total: number | undefined): void {
  progress.forEach((p, i) => {
    expect(p.chunk).toBe(i + 1)
    expect(p.total).toBe(total)
    if (i > 0) expect(p.done).toBeGreaterThanOrEqual(progress[i - 1]!.done)
  })
  expect(progress.at(-1)?.done ?? 0).toBe(updated)
}

const sortStrings = (values: Iterable<string>): string[] => [...values].sort()

// Simple filters and what they mean.
interface SimpleFilter {
  readonly filter: Filter
  readonly matches: (row: Row) => boolean
  [fc.toStringMethod](): string
}
const simple = (filter: Filter, matches: (row: Row) => boolean): SimpleFilter => ({
  filter,
  matches,
  [fc.toStringMethod]: () => JSON.stringify(filter),
})
const atomArb: fc.Arbitrary<SimpleFilter> = fc.oneof(
  fc.constantFrom(...DROPLET_STATUSES).map((s) => simple({ status: s }, (r) => r.status === s)),
  fc
    .subarray([...DROPLET_STATUSES], { minLength: 1 })
    .map((ss) => simple({ status: { in: ss } }, (r) => ss.includes(r.status as never))),
  fc.constantFrom(...DROPLET_STATUSES).map((s) => simple({ status: { ne: s } }, (r) => r.status !== s)),
  fc.constantFrom(...REGIONS).map((g) => simple({ region: g }, (r) => r.region === g)),
  fc.constantFrom(...SIZES).map((s) => simple({ size: s }, (r) => r.size === s)),
  fc.constantFrom(...userIds).map((u) => simple({ userId: u }, (r) => r.userId === u)),
  fc.constant(simple({ ipAddress: null }, (r) => r.ipAddress === null)),
)
const filterArb: fc.Arbitrary<SimpleFilter> = fc.oneof(
  { weight: 3, arbitrary: atomArb },
  {
    weight: 1,
    arbitrary: fc
      .tuple(atomArb, atomArb)
      .map(([a, b]) => simple({ or: [a.filter, b.filter] }, (r) => a.matches(r) || b.matches(r))),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(atomArb, atomArb)
      .map(([a, b]) => simple({ and: [a.filter, b.filter] }, (r) => a.matches(r) && b.matches(r))),
  },
)

/** Expects a refusal by the library: a ValidationError or a ForbiddenError. */
async function expectRefused(call: () => Promise<unknown>): Promise<void> {
  let caught: unknown
  try {
    await call()
  } catch (error) {
    caught = error
  }
  expect(caught, 'the call should have been refused').toBeDefined()
  expect(isDataError(caught), String(caught)).toBe(true)
  expect(['ValidationError', 'ForbiddenError']).toContain((caught as Error).name)
}

// ---------------------------------------------------------------------------------------------------------------
// Properties

function properties(rls: boolean): void {
  const scale = rls ? 0.5 : 1

  it('bulkUpdate(ids) updates exactly the visible requested ids and nothing else', async () => {
    await check(
      fc.asyncProperty(
        actorArb,
        fc.array(idArb, { maxLength: 16 }),
        patchArb,
        optionsArb,
        async (actor, ids, patch, options) => {
          await reset()
          const before = await table()
          const wanted = new Set(ids.filter((id) => UUID.test(id)).map((id) => id.toLowerCase()))
          const expected = sortStrings([...wanted].filter((id) => visible(actor, before.get(id))))
          const expectedNotFound = [
            ...ids.filter((id) => !UUID.test(id)),
            ...[...wanted].filter((id) => !expected.includes(id)),
          ]
          const progress: BulkProgress[] = []
          const since = Date.now()
          const result = await repoOf(actor).bulkUpdate(ids, patch, {
            ...options,
            onProgress: (p) => progress.push(p),
          })
          expect(result.updated).toEqual(expected)
          expect(sortStrings(result.notFound)).toEqual(sortStrings(expectedNotFound))
          const after = await table()
          expect(sortStrings(after.keys())).toEqual(sortStrings(before.keys()))
          for (const [id, row] of before) {
            if (expected.includes(id)) expectPatched(after.get(id), row, patch, since)
            else expect(after.get(id)?.text).toBe(row.text)
          }
          expectProgress(progress, expected.length, wanted.size)
          expect(progress).toHaveLength(Math.ceil(wanted.size / options.chunkSize))
        },
      ),
      runs(60 * scale),
    )
  })

  it('bulkUpdate({ filter }) updates exactly the visible matching rows', async () => {
    await check(
      fc.asyncProperty(
        actorArb,
        filterArb,
        patchArb,
        optionsArb,
        async (actor, { filter, matches }, patch, options) => {
          await reset()
          const before = await table()
          const expected = new Set([...before.values()].filter((r) => visible(actor, r) && matches(r)).map((r) => r.id))
          const progress: BulkProgress[] = []
          const since = Date.now()
          const result = await repoOf(actor).bulkUpdate({ filter }, patch, {
            ...options,
            onProgress: (p) => progress.push(p),
          })
          expect(result).toEqual({ updated: expected.size })
          const after = await table()
          for (const [id, row] of before) {
            if (expected.has(id)) expectPatched(after.get(id), row, patch, since)
            else expect(after.get(id)?.text).toBe(row.text)
          }
          expectProgress(progress, expected.size, undefined)
        },
      ),
      runs(50 * scale),
    )
  })

  it('bulkUpdateEach applies each row’s own patch to the visible rows only', async () => {
    await check(
      fc.asyncProperty(
        actorArb,
        fc.uniqueArray(fc.tuple(idArb, patchArb), {
          maxLength: 14,
          selector: ([id]) => (UUID.test(id) ? id.toLowerCase() : `malformed:${Math.random()}`),
        }),
        optionsArb,
        async (actor, pairs, options) => {
          await reset()
          const before = await table()
          const wanted = new Map(pairs.filter(([id]) => UUID.test(id)).map(([id, patch]) => [id.toLowerCase(), patch]))
          const expected = sortStrings([...wanted.keys()].filter((id) => visible(actor, before.get(id))))
          const expectedNotFound = [
            ...pairs.filter(([id]) => !UUID.test(id)).map(([id]) => id),
            ...[...wanted.keys()].filter((id) => !expected.includes(id)),
          ]
          const progress: BulkProgress[] = []
          const since = Date.now()
          const result = await repoOf(actor).bulkUpdateEach(
            pairs.map(([id, patch]) => ({ id, ...patch })),
            { ...options, onProgress: (p) => progress.push(p) },
          )
          expect(result.updated).toEqual(expected)
          expect(sortStrings(result.notFound)).toEqual(sortStrings(expectedNotFound))
          const after = await table()
          for (const [id, row] of before) {
            if (expected.includes(id)) expectPatched(after.get(id), row, wanted.get(id)!, since)
            else expect(after.get(id)?.text).toBe(row.text)
          }
          expectProgress(progress, expected.length, wanted.size)
        },
      ),
      runs(50 * scale),
    )
  })

  it('refuses bad input with a ValidationError or ForbiddenError and changes nothing', async () => {
    type Case = (actor: TestActor, repo: ScopedRepository<Droplet>, ids: string[]) => Promise<unknown>
    const other = (actor: TestActor) => userIds.find((id) => id !== actor.owner && id !== userIds[GHOST])!
    const bad = (value: unknown) => value as never
    const patches: [string, (actor: TestActor) => unknown, boolean][] = [
      ['unknown field', () => ({ color: 'red' }), false],
      ['bad enum', () => ({ status: 'melting' }), false],
      ['empty name', () => ({ name: '' }), false],
      ['too long name', () => ({ name: 'x'.repeat(256) }), false],
      ['bad region', () => ({ region: 'NYC 3' }), false],
      ['bad ip', () => ({ ipAddress: '10.0.0.300' }), false],
      ['empty patch', () => ({}), false],
      ['null patch', () => null, false],
      ['array patch', () => [{ status: 'active' }], false],
      ['id', () => ({ id: dropletIds[0] }), false],
      ['owner change', (actor) => ({ userId: other(actor) }), true],
      ['createdAt', () => ({ createdAt: new Date() }), true],
      ['updatedAt', () => ({ updatedAt: new Date() }), true],
    ]
    const optionSets: unknown[] = [
      { chunkSize: 0 },
      { chunkSize: 10_001 },
      { chunkSize: 1.5 },
      { chunkSize: '5' },
      { chunkSize: Number.NaN },
      { transaction: 'none' },
      { onProgress: 'x' },
      { chunk: 5 },
      'x',
      null,
      [],
    ]
    const cases: [string, Case, boolean][] = [
      ...patches.flatMap(([label, patch, userOnly]): [string, Case, boolean][] => [
        [`bulkUpdate(ids) with ${label}`, (a, repo, ids) => repo.bulkUpdate(ids, bad(patch(a))), userOnly],
        [
          `bulkUpdate(filter) with ${label}`,
          (a, repo) => repo.bulkUpdate({ filter: { status: { ne: 'deleted' } } }, bad(patch(a))),
          userOnly,
        ],
        [
          `bulkUpdateEach with ${label} in a late row`,
          (a, repo, ids) =>
            repo.bulkUpdateEach(
              bad([
                ...ids.map((id) => ({ id, status: 'stopped' })),
                { id: dropletIds.at(-1), ...(patch(a) as object) },
              ]),
              { chunkSize: 1 },
            ),
          userOnly,
        ],
      ]),
      ...optionSets.flatMap((options): [string, Case, boolean][] => [
        [
          `bulkUpdate(ids) with options ${String(JSON.stringify(options))}`,
          (_, repo, ids) => repo.bulkUpdate(ids, { status: 'stopped' }, bad(options)),
          false,
        ],
        [
          `bulkUpdate(filter) with options ${String(JSON.stringify(options))}`,
          (_, repo) => repo.bulkUpdate({ filter: {} }, { status: 'stopped' }, bad(options)),
          false,
        ],
        [
          `bulkUpdateEach with options ${String(JSON.stringify(options))}`,
          (_, repo, ids) =>
            repo.bulkUpdateEach(
              ids.map((id) => ({ id, status: 'stopped' as const })),
              bad(options),
            ),
          false,
        ],
        [
          `bulkCreate with options ${String(JSON.stringify(options))}`,
          (_, repo) => repo.bulkCreate([{ name: 'n', region: 'nyc3', size: 's' }], bad(options)),
          false,
        ],
      ]),
      ...[
        'abc',
        5,
        null,
        {},
        { filter: { status: 'active' }, extra: 1 },
        { filter: { nope: 1 } },
        { filter: 'x' },
        { where: {} },
      ].map((selector): [string, Case, boolean] => [
        `bulkUpdate with selector ${JSON.stringify(selector)}`,
        (_, repo) => repo.bulkUpdate(bad(selector), { status: 'stopped' }),
        false,
      ]),
      ...[1, null, 'x', [dropletIds[0]]].map((row): [string, Case, boolean] => [
        `bulkUpdateEach with a late row ${JSON.stringify(row)}`,
        (_, repo, ids) => repo.bulkUpdateEach(bad([...ids.map((id) => ({ id, status: 'stopped' })), row])),
        false,
      ]),
      ['bulkUpdateEach with rows not a list', (_, repo) => repo.bulkUpdateEach(bad('x')), false],
      [
        'bulkUpdateEach repeating an id (re-cased)',
        (_, repo, ids) =>
          repo.bulkUpdateEach(
            bad([
              ...ids.map((id) => ({ id, status: 'stopped' })),
              { id: dropletIds[0]!.toUpperCase(), name: 'a' },
              { id: dropletIds[0], name: 'b' },
            ]),
          ),
        false,
      ],
      ['bulkCreate with rows not a list', (_, repo) => repo.bulkCreate(bad('x')), false],
      [
        'bulkCreate with a late row that is not an object',
        (_, repo) => repo.bulkCreate(bad([{ name: 'n', region: 'nyc3', size: 's' }, 7]), { chunkSize: 1 }),
        false,
      ],
      [
        'bulkCreate with a late invalid row',
        (_, repo) =>
          repo.bulkCreate(
            bad([
              { name: 'n', region: 'nyc3', size: 's' },
              { name: '', region: 'nyc3', size: 's' },
            ]),
            {
              chunkSize: 1,
            },
          ),
        false,
      ],
    ]
    const caseArb = fc.constantFrom(...cases).map(([label, call, userOnly]) => ({
      label,
      call,
      userOnly,
      [fc.toStringMethod]: () => label,
    }))
    await check(
      fc.asyncProperty(
        actorArb.filter((a) => a.owner !== userIds[GHOST]),
        caseArb,
        fc.subarray(dropletIds, { maxLength: 6 }),
        async (actor, { call, userOnly }, ids) => {
          fc.pre(!userOnly || actor.isUser)
          await reset()
          const sum = await checksum()
          await expectRefused(() => call(actor, repoOf(actor), ids))
          expect(await checksum()).toBe(sum)
        },
      ),
      runs(120 * scale),
    )
  })

  it('a failure in chunk k: rolls back everything with transaction all, keeps exactly chunks 1..k-1 with chunk', async () => {
    class Stop extends Error {}
    await check(
      fc.asyncProperty(
        actorArb,
        fc.uniqueArray(idArb, { minLength: 2, maxLength: 14, selector: (id) => id.toLowerCase() }),
        fc.integer({ min: 1, max: 4 }),
        fc.nat(),
        fc.constantFrom<'all' | 'chunk'>('all', 'chunk'),
        fc.constantFrom('onProgress throws (ids)', 'onProgress throws (each)', 'NUL in a name (each)'),
        async (actor, ids, chunkSize, k0, transaction, kind) => {
          const wanted = sortStrings(new Set(ids.filter((id) => UUID.test(id)).map((id) => id.toLowerCase())))
          const chunkCount = Math.ceil(wanted.length / chunkSize)
          fc.pre(chunkCount > 0)
          const k = (k0 % chunkCount) + 1
          await reset()
          const before = await table()
          const sum = await checksum()
          const nul = kind.startsWith('NUL')
          const options: BulkOptions = {
            chunkSize,
            transaction,
            onProgress: (p) => {
              if (!nul && p.chunk === k) throw new Stop(`chunk ${k}`)
            },
          }
          // The NUL passes the JSON schema; PostgreSQL refuses it when chunk k (the chunk of that row) runs.
          const bad = wanted[(k - 1) * chunkSize]!
          const repo = repoOf(actor)
          const call = kind.endsWith('(each)')
            ? repo.bulkUpdateEach(
                ids.map((id) => ({
                  id,
                  status: 'error' as const,
                  name: nul && id.toLowerCase() === bad ? 'a\u0000b' : 'changed',
                })),
                options,
              )
            : repo.bulkUpdate(ids, { status: 'error', name: 'changed' }, options)
          if (nul) await expectRefused(() => call)
          else await expect(call).rejects.toBeInstanceOf(Stop)
          if (transaction === 'all') {
            expect(await checksum()).toBe(sum)
            return
          }
          const applied = new Set(wanted.slice(0, (k - 1) * chunkSize).filter((id) => visible(actor, before.get(id))))
          const after = await table()
          for (const [id, row] of before) {
            if (applied.has(id)) expectPatched(after.get(id), row, { status: 'error', name: 'changed' }, 0)
            else expect(after.get(id)?.text).toBe(row.text)
          }
        },
      ),
      runs(50 * scale),
    )
  })

  it('bulkCreate: a user’s rows are their own; a row for another owner fails the call', async () => {
    let serial = 0
    await check(
      fc.asyncProperty(
        fc.oneof(userArb, fc.constant(userActor(0, 'user0 with an upper-case id', true))),
        fc.array(
          fc.record({
            name: fc.string({ minLength: 1, maxLength: 8 }),
            region: fc.constantFrom(...REGIONS),
            size: fc.constantFrom(...SIZES),
            status: fc.option(fc.constantFrom(...DROPLET_STATUSES), { nil: undefined }),
            ownIdGiven: fc.boolean(),
          }),
          { minLength: 1, maxLength: 10 },
        ),
        fc.option(fc.nat(), { nil: undefined }),
        optionsArb,
        async (actor, specs, badAt, options) => {
          await reset()
          const sum = await checksum()
          const prefix = `bc${(serial += 1)}:`
          const input = specs.map((s, i) => ({
            name: `${prefix}${i}-${s.name}`,
            region: s.region,
            size: s.size,
            ...(s.status === undefined ? {} : { status: s.status }),
            ...(s.ownIdGiven ? { userId: actor.owner } : {}),
          }))
          const repo = repoOf(actor)
          if (badAt === undefined) {
            const created = await repo.bulkCreate(input, options)
            expect(created.map((d) => d.name)).toEqual(input.map((r) => r.name))
            const { rows } = await db.knex.raw<{ rows: { user_id: string }[] }>(
              `select user_id::text from droplets where name like ?`,
              [`${prefix}%`],
            )
            expect(rows).toHaveLength(input.length)
            expect(rows.every((r) => r.user_id === actor.owner)).toBe(true)
            expect(created.every((d) => d.userId.toLowerCase() === actor.owner)).toBe(true)
            return
          }
          const at = badAt % input.length
          const owner = userIds.find((id) => id !== actor.owner && id !== userIds[GHOST])!
          input[at] = { ...input[at]!, userId: owner }
          await expectRefused(() => repo.bulkCreate(input, options))
          // Every row is checked before the first chunk is written: nothing is created, whatever the mode.
          expect(await checksum()).toBe(sum)
        },
      ),
      runs(50 * scale),
    )
  })
}

describe('bulk operations (no RLS)', () => {
  useDatabase(false)
  properties(false)
})

describe('bulk operations (rls: true)', () => {
  useDatabase(true)
  properties(true)
})
