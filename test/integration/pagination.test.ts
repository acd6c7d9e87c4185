/**
 * Paged lists: what a bad page request gets (a ValidationError before any SQL), what a cursor is bound to (its
 * sort, its filter's shape and values, its actor's role and id), what a tampered or foreign cursor gets (an
 * InvalidCursorError that does not repeat it), how signing secrets rotate, what a cursor reveals, and the edges of
 * `pageInfo` and of microsecond timestamps.
 *
 * What a cursor reveals (checked below): it is `base64url(JSON).base64url(MAC)`, and its JSON is
 * `{ v: 1, b: <16-character digest of sort, filter and actor>, k: [<sort-key values of its row as PostgreSQL text,
 * the id last>] }`. So anyone holding a cursor can read the row's id and its sort-key values (a timestamp to the
 * microsecond, or a name when sorting by name); filter values appear only inside the digest.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createDatabase,
  Droplet,
  InvalidCursorError,
  User,
  ValidationError,
  type Database,
  type Filter,
  type KeysetPage,
  type ListOptions,
  type Scope,
  type SortKey,
} from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

const SECRET_A = randomBytes(32).toString('base64')
const SECRET_B = randomBytes(48).toString('base64')

let db: Database
let url: string
let cleanup: () => Promise<void>
let alice: User
let bob: User
let carol: User
let admin: User

interface Seed {
  readonly id?: string
  readonly name: string
  readonly status: string
  readonly region?: string
  readonly createdAt: string
  readonly updatedAt?: string
}

async function makeUser(name: string, role = 'user'): Promise<User> {
  return db
    .model(User)
    .query()
    .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x', role })
}

/** Inserts droplets with explicit timestamps (PostgreSQL text, microseconds kept); returns their ids in order. */
async function seed(owner: User, rows: readonly Seed[]): Promise<string[]> {
  const records = rows.map((r) => ({
    id: r.id ?? randomUUID(),
    user_id: owner.id,
    name: r.name,
    region: r.region ?? 'nyc3',
    size: 's-1vcpu-1gb',
    status: r.status,
    created_at: r.createdAt,
    updated_at: r.updatedAt ?? r.createdAt,
  }))
  await db.knex.raw(
    `insert into droplets (id, user_id, name, region, size, status, created_at, updated_at)
     select id, user_id, name, region, size, status, created_at, updated_at
     from jsonb_to_recordset(?::jsonb) as r(id uuid, user_id uuid, name text, region text, size text, status text,
       created_at timestamptz, updated_at timestamptz)`,
    [JSON.stringify(records)],
  )
  return records.map((r) => r.id)
}

let aliceIds: string[]
let carolIds: string[]

beforeAll(async () => {
  ;({ db, url, cleanup } = await openTestDatabase({ pagination: { cursorSecrets: [SECRET_A] } }))
  alice = await makeUser('alice')
  bob = await makeUser('bob')
  carol = await makeUser('carol')
  admin = await makeUser('root', 'admin')
  // Alice: eight droplets within one millisecond, 1 µs apart.
  aliceIds = await seed(alice, [
    { name: 'web-0', status: 'active', createdAt: '2026-01-01 00:00:00.000001+00' },
    { name: 'web-1', status: 'stopped', createdAt: '2026-01-01 00:00:00.000002+00' },
    { name: 'web-2', status: 'active', createdAt: '2026-01-01 00:00:00.000003+00' },
    { name: 'secret-name-123', status: 'active', createdAt: '2026-01-01 00:00:00.000004+00' },
    { name: 'web-3', status: 'stopped', createdAt: '2026-01-01 00:00:00.000005+00' },
    { name: 'secret-name-123', status: 'active', createdAt: '2026-01-01 00:00:00.000006+00' },
    { name: 'web-4', status: 'active', region: 'ams3', createdAt: '2026-01-01 00:00:00.000007+00' },
    { name: 'secret-name-456', status: 'building', createdAt: '2026-01-01 00:00:00.000008+00' },
  ])
  await seed(bob, [
    { name: 'b-0', status: 'active', createdAt: '2026-01-02 00:00:00+00' },
    { name: 'b-1', status: 'active', createdAt: '2026-01-02 00:00:01+00' },
    { name: 'b-2', status: 'stopped', createdAt: '2026-01-02 00:00:02+00' },
  ])
  // Carol: two droplets 1 µs apart, ids in the opposite order, updated_at the other way round.
  carolIds = await seed(carol, [
    {
      id: 'ffffffff-ffff-4fff-bfff-ffffffffffff',
      name: 'tick',
      status: 'active',
      createdAt: '2026-03-01 12:00:00.123456+00',
      updatedAt: '2026-03-01 12:00:00.123457+00',
    },
    {
      id: '00000000-0000-4000-8000-000000000000',
      name: 'tock',
      status: 'active',
      createdAt: '2026-03-01 12:00:00.123457+00',
      updatedAt: '2026-03-01 12:00:00.123456+00',
    },
  ])
})

afterAll(async () => {
  await cleanup()
})

// ---------------------------------------------------------------------------------------------------------------
// Helpers

const aliceScope = (): Scope => db.scope(alice)
const ids = (page: { items: { id: string }[] }): string[] => page.items.map((r) => r.id)
/** A list call, typed loosely: the requests below are deliberately wrong. */
const listWith = (scope: Scope, options: unknown): Promise<unknown> =>
  scope.repo(Droplet).list(options as ListOptions<typeof Droplet>)

/** Runs `work` and returns what it threw (undefined when it did not) and how many SQL statements it sent. */
async function outcome(work: () => Promise<unknown>, on: Database = db): Promise<{ error: unknown; queries: number }> {
  let queries = 0
  const count = (): void => {
    queries += 1
  }
  on.knex.on('query', count)
  try {
    const error = await work().then(
      () => undefined,
      (e: unknown) => e,
    )
    return { error, queries }
  } finally {
    on.knex.removeListener('query', count)
  }
}

async function expectValidationError(work: () => Promise<unknown>): Promise<void> {
  const { error, queries } = await outcome(work)
  expect(error, 'a ValidationError').toBeInstanceOf(ValidationError)
  expect((error as ValidationError).code).toBe('VALIDATION_FAILED')
  expect(queries, 'no SQL was sent').toBe(0)
}

async function expectInvalidCursor(work: () => Promise<unknown>, cursor: unknown, on: Database = db): Promise<void> {
  const { error, queries } = await outcome(work, on)
  expect(
    error,
    `an InvalidCursorError for ${typeof cursor === 'string' ? cursor.slice(0, 200) : String(cursor)}`,
  ).toBeInstanceOf(InvalidCursorError)
  const e = error as InvalidCursorError
  expect(e.code).toBe('INVALID_CURSOR')
  expect(e.httpStatus).toBe(400)
  expect(queries, 'no SQL was sent').toBe(0)
  if (typeof cursor === 'string') {
    // Neither the cursor nor a recognisable piece of it (its payload or MAC part).
    const pieces = [cursor, ...cursor.split('.')].filter((piece) => piece.length >= 8)
    for (const text of [e.message, JSON.stringify(e), String(e.stack)]) {
      for (const piece of pieces) expect(text).not.toContain(piece)
    }
  }
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** The cursor with the character at `at` replaced by the base64url digit whose value differs by `xor`. */
function flip(cursor: string, at: number, xor: number): string {
  const digit = ALPHABET.indexOf(cursor[at]!)
  if (digit < 0) throw new Error(`not a base64url character at ${at}`)
  return `${cursor.slice(0, at)}${ALPHABET[digit ^ xor]!}${cursor.slice(at + 1)}`
}

/** The payload of a cursor, decoded. */
function payloadOf(cursor: string): { v: unknown; b: unknown; k: unknown[] } {
  const text = Buffer.from(cursor.split('.')[0]!, 'base64url').toString('utf8')
  return JSON.parse(text) as { v: unknown; b: unknown; k: unknown[] }
}

/** A column of one row as PostgreSQL prints it. */
async function columnText(id: string, column: 'created_at' | 'updated_at'): Promise<string> {
  const { rows } = await db.knex.raw<{ rows: { t: string }[] }>(
    `select ${column}::text as t from droplets where id = ?`,
    [id],
  )
  return rows[0]!.t
}

const ACTIVE = { status: 'active' } as const satisfies Filter<typeof Droplet>
const NEWEST_FIRST: readonly SortKey<typeof Droplet>[] = ['-createdAt']

/** A cursor of alice's active droplets, newest first, one per page: the end cursor of the first page. */
async function aliceCursor(): Promise<{ first: KeysetPage<Droplet>; cursor: string }> {
  const first = await aliceScope()
    .repo(Droplet)
    .list({ filter: ACTIVE, sort: NEWEST_FIRST, page: { size: 1 } })
  expect(first.pageInfo.hasNextPage).toBe(true)
  return { first, cursor: first.pageInfo.endCursor! }
}

// ---------------------------------------------------------------------------------------------------------------

describe('page requests that break the rules are ValidationErrors, before any SQL', () => {
  it('counts SQL statements (so "no SQL was sent" means something)', async () => {
    const { error, queries } = await outcome(() =>
      aliceScope()
        .repo(Droplet)
        .list({ page: { size: 1 } }),
    )
    expect(error).toBeUndefined()
    expect(queries).toBeGreaterThan(0)
  })

  const BAD_SIZES: { label: string; value: unknown }[] = [
    { label: '0', value: 0 },
    { label: '-1', value: -1 },
    { label: '1.5', value: 1.5 },
    { label: '101', value: 101 },
    { label: "'10' (a string)", value: '10' },
    { label: 'NaN', value: NaN },
    { label: 'Infinity', value: Infinity },
    { label: 'null', value: null },
    { label: 'true', value: true },
    { label: '2^53', value: 2 ** 53 },
  ]
  it.each(BAD_SIZES)('page.size $label, by cursor and by number', async ({ value }) => {
    await expectValidationError(() => listWith(aliceScope(), { page: { size: value } }))
    await expectValidationError(() => listWith(aliceScope(), { page: { number: 1, size: value } }))
  })

  it('takes sizes 1 to 100, and 20 by default', async () => {
    const repo = aliceScope().repo(Droplet)
    for (const size of [1, 100]) {
      expect((await repo.list({ page: { number: 1, size } })).size).toBe(size)
      expect((await repo.list({ page: { size } })).items.length).toBeLessThanOrEqual(size)
    }
    expect((await repo.list({ page: { number: 1 } })).size).toBe(20)
  })

  const BAD_NUMBERS: { label: string; page: Record<string, unknown> }[] = [
    { label: '0', page: { number: 0 } },
    { label: '-1', page: { number: -1 } },
    { label: '1.5', page: { number: 1.5 } },
    { label: 'NaN', page: { number: NaN } },
    { label: "'1' (a string)", page: { number: '1' } },
    { label: 'null', page: { number: null } },
    { label: 'undefined (the key present)', page: { number: undefined } },
    { label: 'Infinity', page: { number: Infinity } },
    { label: '1e300', page: { number: 1e300 } },
    { label: 'MAX_SAFE_INTEGER', page: { number: Number.MAX_SAFE_INTEGER } },
    { label: '10,000,002 at size 1 (offset past 10,000,000)', page: { number: 10_000_002, size: 1 } },
    { label: '100,002 at size 100', page: { number: 100_002, size: 100 } },
    { label: '500,002 at the default size', page: { number: 500_002 } },
  ]
  it.each(BAD_NUMBERS)('page.number $label', async ({ page }) => {
    await expectValidationError(() => listWith(aliceScope(), { page }))
  })

  it('answers the deepest allowed offset (10,000,000) with an empty page', async () => {
    for (const page of [{ number: 10_000_001, size: 1 }, { number: 100_001, size: 100 }, { number: 500_001 }]) {
      const result = await aliceScope().repo(Droplet).list({ page })
      expect(result.items).toEqual([])
      expect(result.hasNextPage).toBe(false)
    }
  })

  const BAD_KEYS: { label: string; page: unknown }[] = [
    { label: 'an unknown key beside size', page: { size: 10, cursor: 'x' } },
    { label: 'offset', page: { size: 10, offset: 5 } },
    { label: 'a mis-cased key', page: { Size: 10 } },
    { label: 'after with number', page: { number: 1, after: 'x' } },
    { label: 'before with number', page: { number: 1, before: 'x' } },
    { label: 'exactTotal with a cursor page', page: { size: 5, exactTotal: true } },
    { label: 'limit inside page', page: { number: 1, limit: 5 } },
    { label: 'an own __proto__ key', page: JSON.parse('{"__proto__": 1, "size": 1}') as unknown },
    { label: 'exactTotal not a boolean', page: { number: 1, exactTotal: 'true' } },
    { label: 'exactTotal 1', page: { number: 1, exactTotal: 1 } },
    { label: 'page null', page: null },
    { label: 'page a string', page: '2' },
    { label: 'page a number', page: 2 },
    { label: 'page an array', page: [1, 20] },
  ]
  it.each(BAD_KEYS)('$label', async ({ page }) => {
    await expectValidationError(() => listWith(aliceScope(), { page }))
  })

  it('refuses after and before together, even when one of them is garbage', async () => {
    const { cursor } = await aliceCursor()
    const options = (page: unknown) => ({ filter: ACTIVE, sort: NEWEST_FIRST, page })
    await expectValidationError(() => listWith(aliceScope(), options({ size: 1, after: cursor, before: cursor })))
    await expectValidationError(() => listWith(aliceScope(), options({ after: cursor, before: 'garbage' })))
    await expectValidationError(() => listWith(aliceScope(), options({ after: 'garbage', before: cursor })))
  })

  it('refuses limit together with page', async () => {
    const { cursor } = await aliceCursor()
    await expectValidationError(() => listWith(aliceScope(), { limit: 10, page: { size: 10 } }))
    await expectValidationError(() => listWith(aliceScope(), { limit: 10, page: { number: 1 } }))
    await expectValidationError(() => listWith(aliceScope(), { limit: 1, page: {} }))
    await expectValidationError(() =>
      listWith(aliceScope(), { filter: ACTIVE, sort: NEWEST_FIRST, limit: 1, page: { after: cursor } }),
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------

describe('a cursor is bound to its sort, filter and actor', () => {
  it('works with the same sort, filter and actor (and the actor’s id in upper case)', async () => {
    const { first, cursor } = await aliceCursor()
    const active = [aliceIds[6]!, aliceIds[5]!, aliceIds[3]!, aliceIds[2]!, aliceIds[0]!]
    expect(ids(first)).toEqual(active.slice(0, 1))
    for (const scope of [aliceScope(), db.scope({ id: alice.id.toUpperCase(), role: 'user' })]) {
      const next = await scope
        .repo(Droplet)
        .list({ filter: ACTIVE, sort: NEWEST_FIRST, page: { size: 2, after: cursor } })
      expect(ids(next)).toEqual(active.slice(1, 3))
    }
    const back = await aliceScope()
      .repo(Droplet)
      .list({ filter: { status: 'active' }, sort: ['-createdAt'], page: { before: first.pageInfo.endCursor! } })
    expect(ids(back)).toEqual([])
  })

  const OTHER_SORTS: (SortKey<typeof Droplet>[] | undefined)[] = [
    ['createdAt'],
    ['-updatedAt'],
    ['-createdAt', 'name'],
    ['-createdAt', '-name'],
    ['name'],
    [],
  ]
  it.each(OTHER_SORTS.map((sort) => ({ sort, label: JSON.stringify(sort) })))(
    'refuses it with sort $label',
    async ({ sort }) => {
      const { cursor } = await aliceCursor()
      for (const direction of ['after', 'before']) {
        await expectInvalidCursor(
          () => listWith(aliceScope(), { filter: ACTIVE, sort, page: { [direction]: cursor } }),
          cursor,
        )
      }
    },
  )

  const OTHER_FILTERS: { label: string; filter: Filter<typeof Droplet> | undefined }[] = [
    { label: 'the same shape, another value', filter: { status: 'stopped' } },
    { label: 'another property', filter: { region: 'nyc3' } },
    { label: 'one more condition', filter: { status: 'active', region: 'nyc3' } },
    { label: 'the same rows by in', filter: { status: { in: ['active'] } } },
    { label: 'no filter', filter: undefined },
  ]
  it.each(OTHER_FILTERS)('refuses it with $label', async ({ filter }) => {
    const { cursor } = await aliceCursor()
    for (const direction of ['after', 'before']) {
      await expectInvalidCursor(
        () => listWith(aliceScope(), { filter, sort: NEWEST_FIRST, page: { [direction]: cursor } }),
        cursor,
      )
    }
  })

  it('refuses it for another actor: same role other id, other role same id, admin, system', async () => {
    const { cursor } = await aliceCursor()
    const others: Scope[] = [
      db.scope(bob),
      db.scope({ id: alice.id, role: 'admin' }),
      db.scope(admin),
      db.system('pagination test'),
    ]
    for (const scope of others) {
      for (const direction of ['after', 'before']) {
        await expectInvalidCursor(
          () => listWith(scope, { filter: ACTIVE, sort: NEWEST_FIRST, page: { [direction]: cursor } }),
          cursor,
        )
      }
    }
  })
})

// ---------------------------------------------------------------------------------------------------------------

describe('a tampered cursor is an InvalidCursorError that does not repeat it', () => {
  const next = (after: unknown): Promise<unknown> =>
    listWith(aliceScope(), { filter: ACTIVE, sort: NEWEST_FIRST, page: { size: 1, after } })
  const previous = (before: unknown): Promise<unknown> =>
    listWith(aliceScope(), { filter: ACTIVE, sort: NEWEST_FIRST, page: { size: 1, before } })

  it('refuses every one-character change of the payload', async () => {
    const { cursor } = await aliceCursor()
    const dot = cursor.indexOf('.')
    expect(dot).toBeGreaterThan(0)
    for (let at = 0; at < dot; at += 1) {
      for (const xor of [1, 32]) {
        const tampered = flip(cursor, at, xor)
        await expectInvalidCursor(() => next(tampered), tampered)
      }
    }
  })

  it('refuses every one-character change of the MAC that changes its bytes', async () => {
    const { cursor } = await aliceCursor()
    const dot = cursor.indexOf('.')
    for (let at = dot + 1; at < cursor.length; at += 1) {
      // The top bit of a base64url digit is always a data bit (the last digit's low bits may be padding).
      const tampered = flip(cursor, at, 32)
      await expectInvalidCursor(() => next(tampered), tampered)
      await expectInvalidCursor(() => previous(tampered), tampered)
    }
  })

  it('refuses truncated cursors, extra dots, the empty string, long garbage, and non-strings', async () => {
    const { cursor } = await aliceCursor()
    const dot = cursor.indexOf('.')
    const payload = cursor.slice(0, dot)
    const mac = cursor.slice(dot + 1)
    // The end cursor of the first two rows: another row, same binding.
    const other = (
      await aliceScope()
        .repo(Droplet)
        .list({ filter: ACTIVE, sort: NEWEST_FIRST, page: { size: 2 } })
    ).pageInfo.endCursor!
    const forged = Buffer.from(JSON.stringify({ ...payloadOf(cursor), k: payloadOf(other).k }), 'utf8').toString(
      'base64url',
    )
    const strings = [
      cursor.slice(0, -1),
      cursor.slice(1),
      cursor.slice(0, Math.floor(cursor.length / 2)),
      payload,
      `${payload}.`,
      `.${mac}`,
      mac,
      `${cursor}.`,
      `.${cursor}`,
      `${payload}..${mac}`,
      `${cursor}.${mac}`,
      `${payload}.${mac}A`,
      `${payload}.${mac.slice(0, -2)}`,
      '',
      '.',
      ' ',
      'x'.repeat(5_000),
      `${'a'.repeat(2_500)}.${'b'.repeat(2_499)}`,
      `${cursor}${'A'.repeat(5_000)}`,
      `${other.split('.')[0]!}.${mac}`, // another cursor's payload with this one's MAC
      `${forged}.${mac}`, // this cursor's binding with another row's values
      `${Buffer.from('{"v":1,"b":"x","k":[]}').toString('base64url')}.${mac}`,
    ]
    for (const tampered of strings) {
      await expectInvalidCursor(() => next(tampered), tampered)
      await expectInvalidCursor(() => previous(tampered), tampered)
    }
    for (const value of [12345, 0, true, null, {}, { toString: () => cursor }, [cursor], Buffer.from(cursor)]) {
      await expectInvalidCursor(() => next(value), value)
      await expectInvalidCursor(() => previous(value), value)
    }
  })

  // Regression: base64url has other spellings of the same MAC bytes; only the encoder's own is accepted.
  it('refuses other spellings of the same MAC bytes', async () => {
    const { cursor } = await aliceCursor()
    const dot = cursor.indexOf('.')
    const payload = cursor.slice(0, dot)
    const mac = cursor.slice(dot + 1)
    expect(mac).toHaveLength(22) // 16 bytes: the last digit carries 2 data bits and 4 padding bits
    const variants = [
      flip(cursor, cursor.length - 1, 1),
      flip(cursor, cursor.length - 1, 15),
      `${cursor}==`,
      `${payload}.${mac.slice(0, 10)} ${mac.slice(10)}`,
      `${payload}.${mac.slice(0, 10)}!${mac.slice(10)}`,
      `${cursor}\n`,
      ...(/[-_]/.test(mac) ? [`${payload}.${mac.replace(/-/g, '+').replace(/_/g, '/')}`] : []),
    ]
    const accepted: string[] = []
    for (const variant of variants) {
      expect(variant).not.toBe(cursor)
      const { error } = await outcome(() => next(variant))
      if (!(error instanceof InvalidCursorError)) accepted.push(JSON.stringify(variant.slice(dot)))
    }
    expect(accepted, 'MAC spellings accepted').toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------------------------

describe('signing secrets rotate: the first signs, all verify', () => {
  let dbBA: Database
  let dbB: Database
  let dbRandom: Database

  beforeAll(async () => {
    dbBA = await createDatabase({ connection: url, pagination: { cursorSecrets: [SECRET_B, SECRET_A] } })
    dbB = await createDatabase({ connection: url, pagination: { cursorSecrets: [SECRET_B] } })
    dbRandom = await createDatabase({ connection: url })
  })
  afterAll(async () => {
    await Promise.all([dbBA.close(), dbB.close(), dbRandom.close()])
  })

  const page = (on: Database, after?: string): Promise<KeysetPage<Droplet>> =>
    on
      .scope(alice)
      .repo(Droplet)
      .list({ filter: ACTIVE, sort: NEWEST_FIRST, page: after === undefined ? { size: 2 } : { size: 2, after } })

  it('accepts a cursor signed with [A] where the secrets are [B, A], and refuses it where they are [B]', async () => {
    const first = await page(db)
    const cursor = first.pageInfo.endCursor!
    const expected = ids(await page(db, cursor))
    expect(expected).toHaveLength(2)
    expect(ids(await page(dbBA, cursor))).toEqual(expected)
    await expectInvalidCursor(() => page(dbB, cursor), cursor, dbB)
    await expectInvalidCursor(() => page(dbRandom, cursor), cursor, dbRandom)
  })

  it('signs with the first secret: a cursor from [B, A] is accepted by [B] and refused by [A]', async () => {
    const cursor = (await page(dbBA)).pageInfo.endCursor!
    const expected = ids(await page(dbBA, cursor))
    expect(ids(await page(dbB, cursor))).toEqual(expected)
    await expectInvalidCursor(() => page(db, cursor), cursor)
  })

  it('without cursorSecrets, cursors work within one database object', async () => {
    const cursor = (await page(dbRandom)).pageInfo.endCursor!
    expect(ids(await page(dbRandom, cursor))).toEqual(ids(await page(db, (await page(db)).pageInfo.endCursor!)))
    await expectInvalidCursor(() => page(db, cursor), cursor)
  })
})

// ---------------------------------------------------------------------------------------------------------------

describe('what a cursor reveals', () => {
  const SECRET_FILTERS: { label: string; filter: Filter<typeof Droplet>; secrets: string[] }[] = [
    { label: 'name equals', filter: { name: 'secret-name-123' }, secrets: ['secret-name-123'] },
    {
      label: 'name in',
      filter: { name: { in: ['secret-name-123', 'secret-name-456'] } },
      secrets: ['secret-name-123', 'secret-name-456'],
    },
    { label: 'name ilike', filter: { name: { ilike: { contains: 'SECRET-NAME' } } }, secrets: ['SECRET-NAME'] },
    {
      label: 'name and ipAddress',
      filter: { or: [{ name: 'secret-name-123' }, { ipAddress: '10.98.76.54' }] },
      secrets: ['secret-name-123', '10.98.76.54'],
    },
  ]
  const SORTS: SortKey<typeof Droplet>[][] = [['-createdAt'], ['status', 'createdAt'], ['-updatedAt', 'region']]

  it.each(SECRET_FILTERS)(
    'holds no filter value ($label), in the cursor or its decoded payload',
    async ({ filter, secrets }) => {
      for (const sort of SORTS) {
        const repo = aliceScope().repo(Droplet)
        const first = await repo.list({ filter, sort, page: { size: 1 } })
        expect(first.pageInfo.hasNextPage).toBe(true)
        const second = await repo.list({ filter, sort, page: { size: 1, after: first.pageInfo.endCursor! } })
        const cursors = [first.pageInfo.startCursor!, first.pageInfo.endCursor!, second.pageInfo.startCursor!]
        for (const cursor of cursors) {
          const decoded = Buffer.from(cursor.split('.')[0]!, 'base64url').toString('utf8')
          for (const secret of secrets) {
            for (const text of [cursor, decoded]) {
              expect(text.toLowerCase()).not.toContain(secret.toLowerCase())
            }
          }
        }
      }
    },
  )

  it('holds a version, a digest of the binding, and its row’s sort-key values as PostgreSQL text, id last', async () => {
    const repo = aliceScope().repo(Droplet)
    const first = await repo.list({
      filter: { name: 'secret-name-123' },
      sort: ['-updatedAt', 'region'],
      page: { size: 1 },
    })
    const row = first.items[0]!
    expect(payloadOf(first.pageInfo.endCursor!)).toEqual({
      v: 1,
      k: [await columnText(row.id, 'updated_at'), 'nyc3', row.id],
    })
    // Sorted by name, the cursor does carry the name: a cursor is signed, not encrypted.
    const byName = await repo.list({ filter: { status: 'active' }, sort: ['name'], page: { size: 1 } })
    expect(payloadOf(byName.pageInfo.endCursor!).k).toEqual([byName.items[0]!.name, byName.items[0]!.id])
  })

  // Regression: the binding is signed, not digested into the payload, so a cursor holds nothing to test guesses against.
  it('does not let a cursor holder confirm a guessed filter value offline', async () => {
    const first = await aliceScope()
      .repo(Droplet)
      .list({ filter: { name: 'secret-name-123' }, sort: ['-createdAt'], page: { size: 1 } })
    const { b } = payloadOf(first.pageInfo.endCursor!)
    const guesses = Array.from({ length: 1_000 }, (_, i) => `secret-name-${String(i).padStart(3, '0')}`)
    const digest = (guess: string): string =>
      createHash('sha256')
        .update(`-createdAt\u0000{name:eq}|${JSON.stringify([guess])}\u0000user:${alice.id}`)
        .digest('base64url')
        .slice(0, 16)
    expect(guesses.filter((guess) => digest(guess) === b)).toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------------------------

describe('pageInfo at the edges', () => {
  it('says the first page has no previous page, and the last no next page', async () => {
    const repo = aliceScope().repo(Droplet)
    const first = await repo.list({ sort: ['createdAt'], page: { size: 3 } })
    expect(first.pageInfo).toMatchObject({ hasPreviousPage: false, hasNextPage: true })
    expect(ids(first)).toEqual(aliceIds.slice(0, 3))
    const second = await repo.list({ sort: ['createdAt'], page: { size: 5, after: first.pageInfo.endCursor! } })
    expect(ids(second)).toEqual(aliceIds.slice(3))
    expect(second.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false })
    // After the last row: an empty page with null cursors.
    const beyond = await repo.list({ sort: ['createdAt'], page: { size: 5, after: second.pageInfo.endCursor! } })
    expect(beyond).toEqual({
      items: [],
      pageInfo: { hasPreviousPage: true, hasNextPage: false, startCursor: null, endCursor: null },
    })
    // Before the first row: an empty page with null cursors.
    const before = await repo.list({ sort: ['createdAt'], page: { size: 5, before: first.pageInfo.startCursor! } })
    expect(before).toEqual({
      items: [],
      pageInfo: { hasPreviousPage: false, hasNextPage: true, startCursor: null, endCursor: null },
    })
    // Back from the last page to the first.
    const back = await repo.list({ sort: ['createdAt'], page: { size: 3, before: second.pageInfo.startCursor! } })
    expect(ids(back)).toEqual(aliceIds.slice(0, 3))
    expect(back.pageInfo).toMatchObject({ hasPreviousPage: false, hasNextPage: true })
  })

  it('gives an empty result null cursors and no pages either way', async () => {
    const empty = {
      items: [],
      pageInfo: { hasPreviousPage: false, hasNextPage: false, startCursor: null, endCursor: null },
    }
    expect(
      await aliceScope()
        .repo(Droplet)
        .list({ filter: { name: 'no-such-droplet' }, page: {} }),
    ).toEqual(empty)
    expect(
      await db
        .scope({ id: randomUUID(), role: 'user' })
        .repo(Droplet)
        .list({ page: { size: 5 } }),
    ).toEqual(empty)
    const offset = await aliceScope()
      .repo(Droplet)
      .list({ filter: { name: 'no-such-droplet' }, page: { number: 1, exactTotal: true } })
    expect(offset).toEqual({
      items: [],
      page: 1,
      size: 20,
      total: 0,
      totalExact: true,
      totalCapped: false,
      totalPages: 0,
      hasNextPage: false,
    })
  })

  // Regression: the floor under a total applies only to pages that show rows. A page past the end counts the rows
  // before it (at most its offset), so its total is exact.
  it('does not inflate the total of a page past the end to its offset', async () => {
    await db.knex.raw('analyze droplets')
    const repo = db.system('pagination test').repo(Droplet)
    const page = await repo.list({ page: { number: 1_000, size: 100 } })
    expect(page.items).toEqual([])
    expect(page.totalExact).toBe(true)
    expect(page.total).toBe(await repo.count())
    expect(page.total).toBeLessThan(1_000)
  })
})

// ---------------------------------------------------------------------------------------------------------------

describe('timestamps keep their microseconds', () => {
  const carolRepo = () => db.scope(carol).repo(Droplet)
  const [tick, tock] = [0, 1]

  it('the two rows are 1 µs apart, which JavaScript Dates cannot show', async () => {
    const rows = await carolRepo().list({ sort: ['createdAt'] })
    expect(ids({ items: rows })).toEqual([carolIds[tick], carolIds[tock]])
    expect(rows[0]!.createdAt.getTime()).toBe(rows[1]!.createdAt.getTime())
    expect(await columnText(carolIds[tick]!, 'created_at')).not.toBe(await columnText(carolIds[tock]!, 'created_at'))
  })

  // tick was created 1 µs before tock, and updated 1 µs after it.
  for (const [property, earlier, later] of [
    ['createdAt', tick, tock],
    ['updatedAt', tock, tick],
  ] as const) {
    for (const descending of [false, true]) {
      const sort: SortKey<typeof Droplet>[] = [descending ? `-${property}` : property]
      it(`returns both across a page boundary at size 1, sorted by ${sort[0]!}, forward and backward`, async () => {
        const [a, b] = (descending ? [later, earlier] : [earlier, later]).map((i) => carolIds[i]!) as [string, string]
        const repo = carolRepo()
        const p1 = await repo.list({ sort, page: { size: 1 } })
        expect(ids(p1)).toEqual([a])
        expect(p1.pageInfo.hasNextPage).toBe(true)
        const column = property === 'createdAt' ? 'created_at' : 'updated_at'
        expect(payloadOf(p1.pageInfo.endCursor!).k[0]).toBe(await columnText(a, column))
        const p2 = await repo.list({ sort, page: { size: 1, after: p1.pageInfo.endCursor! } })
        expect(ids(p2)).toEqual([b])
        expect(p2.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: true })
        const back = await repo.list({ sort, page: { size: 1, before: p2.pageInfo.startCursor! } })
        expect(ids(back)).toEqual([a])
        expect(back.pageInfo.hasPreviousPage).toBe(false)
        const offset = [1, 2].map((number) => repo.list({ sort, page: { number, size: 1, exactTotal: true } }))
        expect((await Promise.all(offset)).map((p) => ids(p)[0])).toEqual([a, b])
      })
    }
  }

  it('pages through eight rows within one millisecond one at a time, each once', async () => {
    const repo = aliceScope().repo(Droplet)
    const sorts: SortKey<typeof Droplet>[][] = [['createdAt'], ['-createdAt'], ['updatedAt'], ['-updatedAt']]
    for (const sort of sorts) {
      const seen: string[] = []
      let after: string | undefined
      for (let i = 0; i < 20; i += 1) {
        const page = await repo.list({ sort, page: after === undefined ? { size: 1 } : { size: 1, after } })
        seen.push(...ids(page))
        if (!page.pageInfo.hasNextPage) break
        after = page.pageInfo.endCursor!
      }
      expect(seen).toEqual(sort[0]!.startsWith('-') ? [...aliceIds].reverse() : aliceIds)
    }
  })
})
