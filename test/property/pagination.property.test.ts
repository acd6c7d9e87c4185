/**
 * Property tests of paged lists against the in-memory oracle (../helpers/oracle.ts).
 *
 * Every run draws a fresh table of droplets full of ties: a handful of names, regions, sizes and statuses, half the
 * IP addresses NULL, and creation times at a few instants of which several lie within one millisecond, 1 µs apart
 * (written as PostgreSQL text, so JavaScript Dates, which stop at milliseconds, cannot tell them apart). For a
 * random actor, a simple random filter, a random sort (1 to 3 keys, either direction, sometimes none) and random
 * page sizes from 1 to 10:
 *
 * 1. Keyset pages: walking forward from the first page along `endCursor` while `hasNextPage`, then backward from
 *    the end along `startCursor` with `before` while `hasPreviousPage` (other sizes), each yields exactly the
 *    oracle's ordered list of visible matching rows, each row once; every page's `pageInfo` is consistent.
 * 2. Offset pages: for random page numbers and sizes, the items are the oracle's slice, `hasNextPage` is exact, and
 *    `totalPages` is ceil(total / size). The total is the oracle's count (and `totalExact`) with `exactTotal`, for
 *    every scope limited to its own rows, and whenever the page proves it (a last or empty page); otherwise (admins,
 *    system) it is an estimate never below the rows the page shows to exist.
 *
 * `ipAddress` (the only nullable column) is not sortable on Droplet; a test-only subclass adds it to `sortable`, so
 * the NULL-aware keyset conditions (ASC NULLS LAST, DESC NULLS FIRST) are exercised too. Its IP addresses are chosen
 * so that their text order is PostgreSQL's inet order (checked), which is how the oracle compares them.
 *
 * Both run on a database without and one with row-level security (`rls: true`, fewer runs).
 * WINCLOUD_TEST_DEEP=1 runs ten times as many cases; WINCLOUD_PROPERTY_SEED replays a fast-check seed.
 */
import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  DROPLET_STATUSES,
  Droplet,
  User,
  type Database,
  type KeysetPage,
  type Scope,
  type ScopedRepository,
} from '../../src/index.js'
import type { Filter } from '../../src/access/filter-compiler.js'
import { openTestDatabase } from '../helpers/database.js'
import { runs } from '../helpers/property.js'
import {
  collationRanks,
  compileFilter,
  compileOrder,
  visibleRows,
  type OracleActor,
  type OracleModel,
  type OracleRow,
} from '../helpers/oracle.js'

const SEED = process.env.WINCLOUD_PROPERTY_SEED ? Number(process.env.WINCLOUD_PROPERTY_SEED) : undefined

/** Droplet with its nullable `ipAddress` sortable too (same table, same policy): pages over NULL sort keys. */
class IpSortedDroplet extends Droplet {
  // Typed as Droplet's declaration: a subclass's static must fit the base's `as const` tuple, which has no ipAddress.
  static override sortable = [...Droplet.sortable, 'ipAddress'] as unknown as typeof Droplet.sortable
}

// ---------------------------------------------------------------------------------------------------------------
// The data: few distinct values, so most sort keys tie.

const NAMES = ['web', 'Web', 'web-1', 'web1', 'db', 'a b'] as const
const REGIONS = ['nyc1', 'nyc3', 'ams3'] as const
const SIZES = ['s-1vcpu-1gb', 's-2vcpu-4gb'] as const
/** Text order equals inet order for these (IPv4 before IPv6, numerically within each): checked in beforeAll. */
const IPS = ['10.0.0.1', '10.0.0.2', '192.168.1.10', '2001:db8::1', '2001:db8::2'] as const
const KNOWN_IPS = new Set<string>(IPS)

/** 2026-01-01T00:00:00Z in microseconds since the epoch (a safe integer). */
const BASE_US = Date.UTC(2026, 0, 1) * 1000
/** Creation instants, µs after BASE_US: 0, 1 and 2 share a millisecond, as do 1000 and 1001. */
const OFFSETS_US = [0, 1, 2, 1_000, 1_001, 1_000_000, 60_000_000] as const

/** An instant in µs since the epoch as an ISO 8601 string with all six fractional digits. */
function stamp(us: number): string {
  const ms = Math.floor(us / 1000)
  return `${new Date(ms).toISOString().slice(0, 23)}${String(us % 1000).padStart(3, '0')}Z`
}

const USER_COUNT = 4 // users[0..3] have role user (users[3] owns nothing), users[4] is the admin, users[5] a ghost
const ADMIN = 4
const GHOST = 5
const userIds = Array.from({ length: USER_COUNT + 2 }, () => randomUUID())

/** A row as the oracle sees it; createdAt and updatedAt in µs since the epoch, which the oracle compares as numbers. */
interface PageRow extends OracleRow {
  readonly userId: string
  readonly name: string
  readonly region: string
  readonly size: string
  readonly status: string
  readonly ipAddress: string | null
  readonly createdAt: number
  readonly updatedAt: number
}

const rowArb: fc.Arbitrary<PageRow> = fc
  .record({
    id: fc.uuid({ version: 4 }),
    owner: fc.constantFrom(0, 0, 0, 1, 1, 2, ADMIN),
    name: fc.constantFrom(...NAMES),
    region: fc.constantFrom(...REGIONS),
    size: fc.constantFrom(...SIZES),
    status: fc.constantFrom('active', 'active', 'stopped', ...DROPLET_STATUSES),
    ipAddress: fc.option(fc.constantFrom(...IPS), { freq: 2, nil: null }),
    created: fc.constantFrom(...OFFSETS_US),
    bump: fc.constantFrom(0, 0, 1, 1_000),
  })
  .map((d) => ({
    id: d.id,
    userId: userIds[d.owner]!,
    name: d.name,
    region: d.region,
    size: d.size,
    status: d.status,
    ipAddress: d.ipAddress,
    createdAt: BASE_US + d.created,
    updatedAt: BASE_US + d.created + d.bump,
  }))

/** Up to 40 rows (any length, none included; shrinks to the fewest rows that still fail). */
const datasetArb: fc.Arbitrary<PageRow[]> = fc.uniqueArray(rowArb, {
  maxLength: 40,
  size: 'max',
  selector: (r) => r.id,
})

let db: Database
let cleanup: () => Promise<void>
let model: OracleModel

/** Replaces the table's rows; timestamps go in as text, so their microseconds survive. */
async function load(data: readonly PageRow[]): Promise<void> {
  await db.knex.raw('delete from droplets')
  if (data.length === 0) return
  const records = data.map((r) => ({
    id: r.id,
    user_id: r.userId,
    name: r.name,
    region: r.region,
    size: r.size,
    status: r.status,
    ip_address: r.ipAddress,
    created_at: stamp(r.createdAt),
    updated_at: stamp(r.updatedAt),
  }))
  await db.knex.raw(
    `insert into droplets (id, user_id, name, region, size, status, ip_address, created_at, updated_at)
     select id, user_id, name, region, size, status, ip_address, created_at, updated_at
     from jsonb_to_recordset(?::jsonb) as r(id uuid, user_id uuid, name text, region text, size text, status text,
       ip_address inet, created_at timestamptz, updated_at timestamptz)`,
    [JSON.stringify(records)],
  )
}

/** Opens a database of its own for the enclosing describe (with or without row-level security). */
function useDatabase(rls: boolean): void {
  beforeAll(async () => {
    ;({ db, cleanup } = await openTestDatabase({ rls }))
    await db
      .model(User)
      .query()
      .insert(
        userIds.slice(0, USER_COUNT + 1).map((id, i) => ({
          id,
          email: `user${i}@example.com`,
          username: `user${i}`,
          passwordHash: 'x',
          role: i === ADMIN ? 'admin' : 'user',
        })),
      )
    const { rows: inetOrder } = await db.knex.raw<{ rows: { v: string }[] }>(
      'select host(v) as v from unnest(?::inet[]) as t(v) order by v',
      [[...IPS].reverse()],
    )
    expect(inetOrder.map((r) => r.v)).toEqual([...IPS].sort())
    model = {
      filterable: Droplet.filterable,
      sortable: IpSortedDroplet.sortable,
      defaultSort: ['-createdAt'],
      ownerProperty: 'userId',
      textRank: await collationRanks(db.knex, [...NAMES, ...REGIONS, ...SIZES, ...DROPLET_STATUSES]),
    }
  })

  afterAll(async () => {
    await cleanup()
  })
}

async function check<T>(property: fc.IAsyncProperty<T>, numRuns: number): Promise<void> {
  await fc.assert(property, { numRuns, ...(SEED === undefined ? {} : { seed: SEED }) })
}

// ---------------------------------------------------------------------------------------------------------------
// Actors, filters, sorts

interface TestActor {
  readonly oracle: OracleActor
  scope(): Scope
  [fc.toStringMethod](): string
}

const userActor = (index: number, label: string, upper = false): TestActor => {
  const id = upper ? userIds[index]!.toUpperCase() : userIds[index]!
  return {
    oracle: { kind: 'user', id, role: 'user' },
    scope: () => db.scope({ id, role: 'user' }),
    [fc.toStringMethod]: () => label,
  }
}

const admin: TestActor = {
  oracle: { kind: 'user', id: userIds[ADMIN]!, role: 'admin' },
  scope: () => db.scope({ id: userIds[ADMIN]!, role: 'admin' }),
  [fc.toStringMethod]: () => 'admin',
}
const system: TestActor = {
  oracle: { kind: 'system' },
  scope: () => db.system('pagination property test'),
  [fc.toStringMethod]: () => 'system',
}

/** Actors who see many rows come up more often. */
const actorArb: fc.Arbitrary<TestActor> = fc.oneof(
  { weight: 4, arbitrary: fc.constant(userActor(0, 'user0 (many rows)')) },
  { weight: 1, arbitrary: fc.constant(userActor(0, 'user0 with an upper-case id', true)) },
  { weight: 1, arbitrary: fc.constant(userActor(1, 'user1')) },
  { weight: 1, arbitrary: fc.constant(userActor(2, 'user2')) },
  { weight: 1, arbitrary: fc.constant(userActor(3, 'user3 (no rows)')) },
  { weight: 1, arbitrary: fc.constant(userActor(GHOST, 'a user with no users row')) },
  { weight: 3, arbitrary: fc.constant(admin) },
  { weight: 2, arbitrary: fc.constant(system) },
)

const fieldArb: fc.Arbitrary<Filter> = fc.oneof(
  fc.constantFrom(...DROPLET_STATUSES).map((s): Filter => ({ status: s })),
  fc.subarray([...DROPLET_STATUSES], { minLength: 1 }).map((s): Filter => ({ status: { in: s } })),
  fc.constantFrom(...DROPLET_STATUSES).map((s): Filter => ({ status: { ne: s } })),
  fc.constantFrom(...REGIONS).map((r): Filter => ({ region: r })),
  fc.constantFrom(...SIZES).map((s): Filter => ({ size: { ne: s } })),
  fc.constantFrom(...NAMES).map((n): Filter => ({ name: n })),
  fc.constantFrom(...NAMES).map((n): Filter => ({ name: { gte: n } })),
  fc.constant<Filter>({ ipAddress: null }),
  fc.constant<Filter>({ ipAddress: { isNull: false } }),
  fc.constantFrom(...IPS).map((ip): Filter => ({ ipAddress: { ne: ip } })),
  fc.constantFrom(...userIds).map((id): Filter => ({ userId: id })),
)

const filterArb: fc.Arbitrary<Filter | undefined> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: fieldArb },
  { weight: 1, arbitrary: fc.tuple(fieldArb, fieldArb).map(([a, b]): Filter => ({ and: [a, b] })) },
)

const SORTABLE = ['createdAt', 'updatedAt', 'name', 'region', 'size', 'status', 'ipAddress'] as const
const withDirections = (keys: readonly string[], down: readonly boolean[]): string[] =>
  keys.map((k, i) => (down[i] ? `-${k}` : k))
const directionsArb = fc.array(fc.boolean(), { minLength: 3, maxLength: 3 })

const sortArb: fc.Arbitrary<string[] | undefined> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .tuple(fc.shuffledSubarray([...SORTABLE], { minLength: 1, maxLength: 3 }), directionsArb)
      .map(([keys, down]) => withDirections(keys, down)),
  },
  // The nullable key first, so ties on it (NULL or not) decide the order more often.
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.shuffledSubarray(
          SORTABLE.filter((k) => k !== 'ipAddress'),
          { maxLength: 2 },
        ),
        directionsArb,
      )
      .map(([keys, down]) => withDirections(['ipAddress', ...keys], down)),
  },
  { weight: 1, arbitrary: fc.constantFrom<string[] | undefined>(undefined, []) },
)

const sizesArb = fc.array(fc.integer({ min: 1, max: 10 }), { minLength: 1, maxLength: 4 })

const offsetRequestArb = fc.record({
  number: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 45 })),
  size: fc.integer({ min: 1, max: 10 }),
  exactTotal: fc.constantFrom(true, false, undefined),
})

// ---------------------------------------------------------------------------------------------------------------

/** The oracle: the visible rows matching the filter, in the sort's order, as ids. */
function expectedIds(
  data: readonly PageRow[],
  actor: OracleActor,
  filter: Filter | undefined,
  sort: string[] | undefined,
): string[] {
  return visibleRows(model, data, actor)
    .filter(compileFilter(model, filter, KNOWN_IPS))
    .sort(compileOrder(model, sort))
    .map((r) => r.id)
}

/** The repository to page with: the test subclass when the sort names ipAddress, else Droplet itself. */
function repoFor(scope: Scope, sort: string[] | undefined): ScopedRepository<Droplet> {
  const byIp = sort?.some((k) => k.replace(/^-/, '') === 'ipAddress') === true
  return byIp ? scope.repo(IpSortedDroplet) : scope.repo(Droplet)
}

const projection = (row: PageRow | Droplet): Record<string, unknown> => ({
  id: row.id,
  userId: row.userId,
  name: row.name,
  region: row.region,
  size: row.size,
  status: row.status,
  ipAddress: row.ipAddress,
})

interface Query {
  readonly filter: Filter | undefined
  readonly sort: string[] | undefined
}

/** Walks every page forward; checks each page's shape. Returns the pages. */
async function walkForward(
  repo: ScopedRepository<Droplet>,
  query: Query,
  sizes: readonly number[],
  total: number,
): Promise<KeysetPage<Droplet>[]> {
  const pages: KeysetPage<Droplet>[] = []
  let after: string | undefined
  for (let i = 0; ; i += 1) {
    if (i > total + 1) throw new Error('the forward walk does not end')
    const size = sizes[i % sizes.length]!
    const page = await repo.list({ ...query, page: after === undefined ? { size } : { size, after } })
    const info = page.pageInfo
    const at = `forward page ${i} (size ${size})`
    expect(info.hasPreviousPage, `${at}: hasPreviousPage`).toBe(i > 0)
    expect(page.items.length, `${at}: at most size items`).toBeLessThanOrEqual(size)
    if (info.hasNextPage) expect(page.items.length, `${at}: full when there is more`).toBe(size)
    if (i > 0) expect(page.items.length, `${at}: a page after a cursor that had more`).toBeGreaterThan(0)
    expect(info.startCursor === null, `${at}: startCursor null iff empty`).toBe(page.items.length === 0)
    expect(info.endCursor === null, `${at}: endCursor null iff empty`).toBe(page.items.length === 0)
    if (page.items.length === 1) expect(info.endCursor, `${at}: one item, one cursor`).toBe(info.startCursor)
    pages.push(page)
    if (!info.hasNextPage) return pages
    after = info.endCursor!
  }
}

/**
 * Walks backward to the first row, from the last page of a forward walk: either from its start cursor (its items
 * already known), or from its end cursor (only its last item known, so the first backward page overlaps it).
 */
async function walkBackward(
  repo: ScopedRepository<Droplet>,
  query: Query,
  last: KeysetPage<Droplet>,
  fromEnd: boolean,
  sizes: readonly number[],
  total: number,
): Promise<string[]> {
  let collected = fromEnd ? [last.items.at(-1)!.id] : last.items.map((r) => r.id)
  let before = fromEnd ? last.pageInfo.endCursor! : last.pageInfo.startCursor!
  let more = fromEnd ? true : last.pageInfo.hasPreviousPage
  for (let j = 0; more; j += 1) {
    if (j > total + 1) throw new Error('the backward walk does not end')
    const size = sizes[j % sizes.length]!
    const page = await repo.list({ ...query, page: { size, before } })
    const info = page.pageInfo
    const at = `backward page ${j} (size ${size})`
    expect(info.hasNextPage, `${at}: hasNextPage`).toBe(true)
    expect(page.items.length, `${at}: at most size items`).toBeLessThanOrEqual(size)
    if (info.hasPreviousPage) expect(page.items.length, `${at}: full when there is more`).toBe(size)
    expect(info.startCursor === null, `${at}: startCursor null iff empty`).toBe(page.items.length === 0)
    expect(info.endCursor === null, `${at}: endCursor null iff empty`).toBe(page.items.length === 0)
    collected = [...page.items.map((r) => r.id), ...collected]
    more = info.hasPreviousPage
    if (page.items.length === 0) break
    before = info.startCursor!
  }
  return collected
}

/** Property runs for one suite: the RLS suite runs fewer (each RLS read is a transaction of its own). */
let scale = 1

function pageTests(): void {
  it('keyset pages, walked forward and then backward, give exactly the oracle’s ordered rows, each once', async () => {
    await check(
      fc.asyncProperty(
        datasetArb,
        actorArb,
        filterArb,
        sortArb,
        sizesArb,
        sizesArb,
        fc.boolean(),
        fc.boolean(),
        async (data, actor, filter, sort, forwardSizes, backwardSizes, fromEnd, inTransaction) => {
          await load(data)
          const expected = expectedIds(data, actor.oracle, filter, sort)
          const query: Query = { filter, sort }
          const byId = new Map(data.map((r) => [r.id, r]))
          // Directly, or inside a scope transaction (another runner; with RLS, the transaction's own settings).
          const walk = async (scope: Scope): Promise<void> => {
            const repo = repoFor(scope, sort)
            const pages = await walkForward(repo, query, forwardSizes, expected.length)
            const forward = pages.flatMap((p) => p.items.map((r) => r.id))
            expect(new Set(forward).size, 'no row twice going forward').toBe(forward.length)
            expect(forward).toEqual(expected)
            expect(pages.flatMap((p) => p.items.map(projection))).toEqual(
              expected.map((id) => projection(byId.get(id)!)),
            )
            if (expected.length === 0) return
            const backward = await walkBackward(repo, query, pages.at(-1)!, fromEnd, backwardSizes, expected.length)
            expect(new Set(backward).size, 'no row twice going backward').toBe(backward.length)
            expect(backward).toEqual(expected)
          }
          await (inTransaction ? actor.scope().transaction(walk) : walk(actor.scope()))
        },
      ),
      runs(1_000 * scale),
    )
  })

  it('offset pages are the oracle’s slices, with an exact hasNextPage, and an exact total unless the scope sees the whole table', async () => {
    await check(
      fc.asyncProperty(
        datasetArb,
        actorArb,
        filterArb,
        sortArb,
        fc.array(offsetRequestArb, { minLength: 1, maxLength: 4 }),
        async (data, actor, filter, sort, requests) => {
          await load(data)
          const expected = expectedIds(data, actor.oracle, filter, sort)
          const repo = repoFor(actor.scope(), sort)
          for (const { number, size, exactTotal } of requests) {
            const request = exactTotal === undefined ? { number, size } : { number, size, exactTotal }
            const page = await repo.list({ filter, sort, page: request })
            const at = JSON.stringify(request)
            const start = (number - 1) * size
            expect(
              page.items.map((r) => r.id),
              at,
            ).toEqual(expected.slice(start, start + size))
            expect(page.hasNextPage, `${at}: hasNextPage`).toBe(start + size < expected.length)
            expect(page.page, at).toBe(number)
            expect(page.size, at).toBe(size)
            // Own-row scopes never get an estimate (it would come from other tenants' rows); the others get one
            // unless they ask for a count or the page itself proves the total.
            const ownRows = actor.oracle.kind === 'user' && actor.oracle.role === 'user'
            const proven = page.items.length === 0 || !page.hasNextPage
            // Datasets here stay far below the 10,000 rows at which an own-row count is capped.
            expect(page.totalCapped, `${at}: totalCapped`).toBe(false)
            if (exactTotal === true || ownRows || proven) {
              expect(page.totalExact, `${at}: totalExact`).toBe(true)
              expect(page.total, `${at}: total`).toBe(expected.length)
            } else {
              // An estimate, but never below the rows this page shows to exist.
              expect(page.totalExact, `${at}: totalExact`).toBe(false)
              expect(page.total, `${at}: estimated total`).toBeGreaterThanOrEqual(start + page.items.length + 1)
            }
            expect(page.totalPages, `${at}: totalPages`).toBe(Math.ceil(page.total / size))
          }
        },
      ),
      runs(400 * scale),
    )
  })
}

for (const rls of [false, true]) {
  describe(`paged lists agree with the oracle (rls: ${rls})`, () => {
    useDatabase(rls)
    beforeAll(() => {
      scale = rls ? 0.34 : 1
    })

    it('keeps microseconds the dataset needs (rows within one millisecond stay distinct instants)', async () => {
      await load(
        OFFSETS_US.map((offset, i) => ({
          id: randomUUID(),
          userId: userIds[0]!,
          name: NAMES[i % NAMES.length]!,
          region: 'nyc1',
          size: 's-1vcpu-1gb',
          status: 'active',
          ipAddress: null,
          createdAt: BASE_US + offset,
          updatedAt: BASE_US + offset,
        })),
      )
      const { rows } = await db.knex.raw<{ rows: { instants: number; millis: number }[] }>(
        `select count(distinct created_at)::int as instants,
                count(distinct date_trunc('milliseconds', created_at))::int as millis from droplets`,
      )
      expect(rows[0]).toEqual({ instants: OFFSETS_US.length, millis: 4 })
      const listed = await db
        .system('test')
        .repo(Droplet)
        .list({ sort: ['createdAt'], limit: 3 })
      expect(new Set(listed.map((r) => r.createdAt.getTime())).size, 'JavaScript Dates cannot tell them apart').toBe(1)
    })

    describe('pages', pageTests)
  })
}
