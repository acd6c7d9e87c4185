/**
 * Attack class: SQL injection through the list grammar.
 *
 * A signed-in user controls filter values, property names, operator names, sort entries, page numbers and sizes,
 * limits and ids. Hostile text (quotes, `; drop table`, comment markers, dollar quotes, placeholders, unicode, NUL)
 * and hostile types (huge numbers, NaN, negatives, objects and arrays where scalars go) must either be a
 * ValidationError raised before any SQL (never a database error, never echoing the payload) or give exactly the
 * rows a bound-parameter query gives (for text that is legitimately a value). Afterwards every table is unchanged.
 */
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AuditLog,
  Droplet,
  User,
  isDataError,
  type Database,
  type Filter,
  type LikePattern,
  type Scope,
} from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

/** Text that would do damage if it reached SQL as SQL. */
const HOSTILE = [
  `' or '1'='1`,
  `'; drop table droplets; --`,
  `"; drop table users; --`,
  `x'); delete from droplets where ('1'='1`,
  `' union select * from users --`,
  `\\'; truncate audit_logs; --`,
  `$$; drop table droplets; $$`,
  `$1) or (1=1`,
  `?`,
  `:name`,
  `/* */ or 1=1 /*`,
  `%' or name like '%`,
  `_`,
  `%`,
  `\\`,
  `O'Brien; --`,
  `e'\\x27 or true --`,
  `ｓｅｌｅｃｔ＊`,
  `名前'; drop table droplets; --`,
  `\u202e'; drop table users; --`,
  `😀' or '😀'='😀`,
  `a\u0301'--`,
]

/** A filter that is wrong on purpose (hostile value, operator, property or shape): only the run time judges it. */
const untyped = (filter: unknown): never => filter as never

/** Names of Alice's droplets: some hostile text is stored as a legitimate name, so equality must find it. */
const STORED = [`O'Brien; --`, `'; drop table droplets; --`, `%' or name like '%`, `😀' or '😀'='😀`, `_`]

describe.each([false, true])('SQL injection through filters, sorts and pages (rls: %s)', (rls) => {
  let db: Database
  let url: string
  let cleanup: () => Promise<void>
  let alice: User
  let bob: User
  let scope: Scope
  let tablesBefore: string[]
  /** A superuser connection straight to the test database, past the library and PgBouncer. */
  let client: pg.Client

  const direct = async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> =>
    (await client.query<R>(sql, params)).rows

  /** Every row of every library table, as text. */
  const tables = async (): Promise<string[]> =>
    (
      await direct<{ row: string }>(
        `select 'u ' || u::text as row from users u union all select 'd ' || d::text from droplets d
         union all select 'a ' || a::text from audit_logs a union all
         select 't ' || count(*)::text from pg_tables where schemaname = 'public'
         order by row`,
      )
    ).map((r) => r.row)

  /** Alice's droplet ids matching a bound-parameter condition: what a correct answer is. */
  const oracle = async (condition: string, value: unknown): Promise<string[]> =>
    (
      await direct<{ id: string }>(
        `select id::text as id from droplets where user_id = $1 and (${condition}) order by id`,
        [alice.id, value],
      )
    ).map((r) => r.id)

  /** A call that must be a ValidationError raised by the library, whose message does not repeat `payload`. */
  async function refused(work: () => Promise<unknown>, payload: unknown, label: string): Promise<void> {
    let result: unknown
    try {
      result = await work()
    } catch (error) {
      expect(isDataError(error), `${label}: ${String(error)}`).toBe(true)
      if (!isDataError(error)) return
      expect(error.code, `${label}: ${error.message}`).toBe('VALIDATION_FAILED')
      expect(error.httpStatus, label).toBe(400)
      // A refusal raised before SQL has no driver error behind it.
      expect(error.cause, `${label}: a database error`).toBeUndefined()
      if (typeof payload === 'string' && payload.length >= 3 && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(payload)) {
        // Every text the error shows: its message and each detail (not JSON's own quotes and key names), less the
        // list of what may be asked for, which comes from the model's declarations (`(filterable: id, userId, …)`).
        const json = error.toJSON()
        const allowed = (text: string): string => text.replace(/ \((filterable|sortable): [A-Za-z0-9_, ]*\)/, '')
        const shown = [json.message, ...(json.details ?? []).flatMap((d) => [d.field, d.message, d.keyword ?? ''])].map(
          allowed,
        )
        expect(
          shown.filter((text) => text.includes(payload)),
          `${label}: echoes the payload`,
        ).toEqual([])
      }
      return
    }
    throw new Error(`${label}: accepted, returned ${JSON.stringify(result)?.slice(0, 300)}`)
  }

  const ids = (rows: readonly { id: string }[]) => rows.map((r) => r.id).sort()

  beforeAll(async () => {
    ;({ db, url, cleanup } = await openTestDatabase({ rls }))
    client = new pg.Client({ connectionString: url })
    await client.connect()
    const make = (name: string) =>
      db
        .model(User)
        .query()
        .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x' })
    alice = await make('alice')
    bob = await make('bob')
    await db
      .model(Droplet)
      .query()
      .insert([
        ...['plain', ...STORED].map((name) => ({ userId: alice.id, name, region: 'nyc3', size: 's' })),
        ...STORED.map((name) => ({ userId: bob.id, name, region: 'ams3', size: 's' })),
      ])
    await db.scope(alice).audit.record('test.seed')
    scope = db.scope(alice)
    tablesBefore = await tables()
  })
  afterAll(async () => {
    if (tablesBefore !== undefined) expect(await tables()).toEqual(tablesBefore)
    await client?.end()
    await cleanup()
  })

  it('hostile text as a string value is a bound value: exactly the rows that hold it', async () => {
    const repo = scope.repo(Droplet)
    for (const text of HOSTILE) {
      const eq = await oracle('name = $2', text)
      expect(ids(await repo.list({ filter: { name: text }, limit: 100 })), text).toEqual(eq)
      expect(ids(await repo.list({ filter: { name: { in: [text, 'nothing'] } }, limit: 100 })), text).toEqual(eq)
      expect(await repo.count({ name: { ne: text } }), text).toBe(STORED.length + 1 - eq.length)
      for (const form of ['contains', 'startsWith', 'endsWith'] as const) {
        const condition = {
          contains: 'strpos(name, $2) > 0',
          startsWith: 'left(name, length($2)) = $2',
          endsWith: 'right(name, length($2)) = $2',
        }[form]
        expect(
          ids(await repo.list({ filter: { name: { like: { [form]: text } as LikePattern } }, limit: 100 })),
          `${form} ${text}`,
        ).toEqual(await oracle(condition, text))
      }
      expect(await repo.count({ name: { ilike: { contains: text } } }), text).toBe(
        (await oracle('strpos(lower(name), lower($2)) > 0', text)).length,
      )
    }
    // The stored hostile names are found one by one, and only Alice's.
    for (const name of STORED) expect((await repo.list({ filter: { name } })).map((d) => d.name)).toEqual([name])
    const users = scope.repo(User)
    expect(await users.list({ filter: { email: `' or '1'='1` } })).toEqual([])
    expect(await users.count({ username: { like: { contains: `%' or 1=1 --` } } })).toBe(0)
    expect(await scope.repo(AuditLog).count({ action: `test.seed' or '1'='1` })).toBe(0)
  })

  it('hostile text where a typed value goes (uuid, inet, enum, timestamp) is a ValidationError', async () => {
    const repo = scope.repo(Droplet)
    for (const text of HOSTILE) {
      for (const property of ['id', 'userId', 'ipAddress', 'status', 'createdAt']) {
        await refused(() => repo.list({ filter: { [property]: text } }), text, `${property} = ${text}`)
        await refused(() => repo.count({ [property]: { in: ['active', text] } }), text, `${property} in ${text}`)
      }
    }
    await refused(() => repo.list({ filter: untyped({ status: `active' or '1'='1` }) }), 'x', 'enum with a tail')
    await refused(() => repo.list({ filter: { createdAt: { gt: `2026-01-01'; drop table droplets; --` } } }), 'x', 'ts')
    await refused(() => repo.list({ filter: { ipAddress: `10.0.0.1/0' or true --` } }), 'x', 'inet')
    await refused(() => repo.list({ filter: { userId: `${alice.id}' or '1'='1` } }), 'x', 'uuid with a tail')
  })

  it('values of the wrong kind: NUL, huge, NaN, negative, objects and arrays where scalars go', async () => {
    const repo = scope.repo(Droplet)
    const wrong: [string, unknown][] = [
      ['NUL', 'a\u0000b'],
      ['a lone NUL', '\u0000'],
      ['too long', 'x'.repeat(4_097)],
      ['a number', 1],
      ['NaN', Number.NaN],
      ['Infinity', Number.POSITIVE_INFINITY],
      ['a negative', -1],
      ['a bigint', 10n],
      ['true', true],
      ['an array', ['plain']],
      ['an object with toString', { toString: () => `' or 1=1 --` }],
      ['a raw-looking object', { sql: 'true', bindings: [] }],
      ['a knex raw', db.knex.raw('true')],
      ['a Buffer', Buffer.from('plain')],
      ['a function', () => 'plain'],
      ['a symbol', Symbol('plain')],
      ['a Date for a string', new Date()],
      ['an invalid Date', new Date(Number.NaN)],
    ]
    for (const [label, value] of wrong) {
      await refused(() => repo.list({ filter: { name: value } as Filter }), value, `name = ${label}`)
      await refused(() => repo.count({ name: { eq: value } } as Filter), value, `name eq ${label}`)
      await refused(() => repo.list({ filter: { name: { in: ['plain', value] } } as Filter }), value, `in ${label}`)
    }
    for (const value of [
      Number.NaN,
      -1,
      1e308,
      2 ** 53,
      '2026-02-30',
      '0000-01-01',
      '10000-01-01',
      new Date(Number.NaN),
      {},
    ]) {
      await refused(
        () => repo.list({ filter: untyped({ createdAt: { gte: value } }) }),
        value,
        `createdAt ${JSON.stringify(value)}`,
      )
    }
    await refused(() => repo.list({ filter: untyped({ name: { in: 'plain' } }) }), 'plain', 'in a string')
    await refused(() => repo.list({ filter: { name: { between: ['a'] } } as never }), 'a', 'between one')
    await refused(() => repo.list({ filter: untyped({ name: { like: `%' or 1=1 --` } }) }), `%' or 1=1 --`, 'raw like')
    await refused(() => repo.list({ filter: untyped({ name: { like: { raw: '%' } } }) }), '%', 'like raw form')
    await refused(() => repo.list({ filter: untyped({ isActive: 'true' }) }), 'true', 'not filterable here')
    await refused(() => scope.repo(User).list({ filter: untyped({ isActive: `true' or '1'='1` }) }), 'x', 'boolean')
  })

  it('hostile property and operator names are refused without being repeated', async () => {
    const repo = scope.repo(Droplet)
    const keys = [
      `name; drop table droplets; --`,
      `name" = "name" or "1`,
      `name) or (1=1`,
      `"name"`,
      `droplets.name`,
      `name::text`,
      `user_id`,
      `admin_password_ciphertext`,
      `adminPassword`,
      `passwordHash`,
      `password_hash`,
      `lower(name)`,
      `*`,
      ``,
      ` name`,
      `ｎａｍｅ`,
      `name\u0000`,
      'n'.repeat(10_000),
    ]
    for (const key of keys) {
      await refused(() => repo.list({ filter: { [key]: 'plain' } }), key, `property ${key.slice(0, 40)}`)
      await refused(() => repo.count({ or: [{ [key]: 'plain' }] }), key, `nested property ${key.slice(0, 40)}`)
    }
    for (const key of ['passwordHash', 'password_hash', 'api_token_ciphertext', 'api_token_bidx', 'preferences']) {
      await refused(() => scope.repo(User).list({ filter: { [key]: 'x' } }), key, `User.${key}`)
    }
    const operators = [`eq; drop table droplets`, `=`, `= 'x' or 1=1 --`, `raw`, `sql`, `EQ`, `in)`, ``, `\u0000`]
    for (const op of operators) {
      await refused(() => repo.list({ filter: { name: { [op]: 'plain' } } }), op, `operator ${op}`)
    }
    for (const combinator of ['OR', 'And', 'xor', 'or;']) {
      await refused(() => repo.list({ filter: { [combinator]: [{ name: 'plain' }] } }), combinator, combinator)
    }
    await refused(() => repo.list({ filter: untyped({ or: { name: 'plain' } }) }), 'x', 'or with an object')
    await refused(() => repo.list({ filter: untyped({ not: [{ name: 'plain' }] }) }), 'x', 'not with an array')
    await refused(() => repo.list({ filter: untyped(`name = 'x' or 1=1`) }), `name = 'x' or 1=1`, 'a string filter')
  })

  it('hostile sort entries, page numbers, sizes and limits are refused', async () => {
    const repo = scope.repo(Droplet)
    const sorts: unknown[] = [
      `name; drop table droplets`,
      `name desc, (select 1)`,
      `-name nulls first`,
      `name"`,
      `--name`,
      `+name`,
      `-`,
      ``,
      `user_id`,
      `userId`,
      `adminPassword`,
      `NAME`,
      `(case when true then name end)`,
      `name\u0000`,
      `ｎａｍｅ`,
      `name\u200b`,
      1,
      null,
      { toString: () => 'name' },
      ['name'],
    ]
    for (const entry of sorts) {
      await refused(() => repo.list({ sort: [entry] as never }), entry, `sort ${String(entry)}`)
      await refused(
        () => repo.list({ sort: [entry] as never, page: { size: 2 } }),
        entry,
        `keyset sort ${String(entry)}`,
      )
    }
    await refused(() => repo.list({ sort: 'name' as never }), 'name', 'sort as a string')
    await refused(() => repo.list({ sort: ['name', 'name'] }), 'name', 'sort twice')
    await refused(
      () => repo.list({ sort: Array.from({ length: 9 }, (_, i) => (i % 2 ? 'name' : '-name')) }),
      'x',
      'long',
    )
    await refused(() => scope.repo(User).list({ sort: ['passwordHash'] as never }), 'passwordHash', 'User sort secret')

    const numbers: unknown[] = [
      0,
      -1,
      1.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.MAX_SAFE_INTEGER,
      2 ** 64,
      1e308,
      '1',
      '1; drop table droplets',
      `1' or '1'='1`,
      '١',
      '1\u0000',
      '\u0000',
      '𝟏',
      `1 or 1=1`,
      null,
      {},
      [1],
      true,
      10n,
    ]
    for (const n of numbers) {
      const label = typeof n === 'bigint' ? `${n}n` : JSON.stringify(n)
      await refused(() => repo.list({ page: { number: n as number, size: 2 } }), n, `page.number ${label}`)
      await refused(() => repo.list({ page: { number: 1, size: n as number } }), n, `page.size ${label}`)
      await refused(() => repo.list({ page: { size: n as number } }), n, `keyset size ${label}`)
      await refused(() => repo.list({ limit: n as number }), n, `limit ${label}`)
    }
    await refused(() => repo.list({ page: { number: 1, size: 101 } }), 101, 'size above the cap')
    await refused(() => repo.list({ page: { number: 1, exactTotal: 'true' } as never }), 'true', 'exactTotal string')
    await refused(() => repo.list({ page: { number: 1, 'size; drop': 2 } as never }), 'size; drop', 'page option')
    await refused(() => repo.list({ page: `1; drop table droplets` as never }), '1; drop table droplets', 'page str')
    await refused(() => repo.list({ [`limit; drop table droplets`]: 1 } as never), 'limit; drop table droplets', 'opt')
    // The deepest offset allowed is refused past it, not run.
    await refused(() => repo.list({ page: { number: 10_000_000, size: 100 } }), 'x', 'absurdly deep')
  })

  it('hostile ids are not found, never SQL', async () => {
    const repo = scope.repo(Droplet)
    for (const id of [...HOSTILE, `${randomUUID()}' or '1'='1`, `${randomUUID()}; drop table droplets`]) {
      expect(await repo.findById(id), id).toBeUndefined()
      await expect(repo.getById(id), id).rejects.toMatchObject({ code: 'NOT_FOUND', message: 'Droplet not found.' })
      await expect(repo.update(id, { status: 'stopped' }), id).rejects.toMatchObject({ code: 'NOT_FOUND' })
      await expect(repo.delete(id), id).rejects.toMatchObject({ code: 'NOT_FOUND' })
      // Bulk calls take them as ids that are not found, or refuse them before SQL; never more.
      let result: unknown
      try {
        result = await repo.bulkUpdate([id], { status: 'stopped' })
      } catch (error) {
        expect(isDataError(error) && error.code, id).toBe('VALIDATION_FAILED')
        continue
      }
      expect(result, id).toEqual({ updated: [], notFound: [id] })
    }
  })

  it('leaves every table as it was', async () => {
    expect(await tables()).toEqual(tablesBefore)
  })
})
