/**
 * The filter and sort compiler without a database: the SQL text and bindings of filters and sorts for model
 * classes, the limits, the whitelists, and the blind-index-only rule of encrypted properties. Filters are compiled
 * the way the repositories do it: `filters.walk(filter)`, then `filters.sql(walked.shape)`.
 */
import { randomBytes } from 'node:crypto'
import { knex as createKnex } from 'knex'
import type { JSONSchema } from 'objection'
import { afterAll, describe, expect, it } from 'vitest'
import * as compiler from '../../src/access/filter-compiler.js'
import {
  FILTER_LIMITS,
  FILTER_SQL_CACHE,
  FilterCompiler,
  type ColumnType,
  type Filter,
  type FilterColumn,
} from '../../src/access/filter-compiler.js'
import { compileSort, modelAccess } from '../../src/access/model-access.js'
import { blindIndexes } from '../../src/crypto/blind-index.js'
import { registerKeyring } from '../../src/crypto/columns.js'
import { Keyring } from '../../src/crypto/keyring.js'
import { ValidationError } from '../../src/errors/index.js'
import { BaseModel } from '../../src/models/base-model.js'
import { Droplet } from '../../src/models/droplet.js'
import { User } from '../../src/models/user.js'

/** A small model with the column types Droplet lacks: an integer, a boolean, a nullable sortable property. */
class Disk extends BaseModel {
  static override tableName = 'disks'
  static override jsonSchema: JSONSchema = {
    type: 'object',
    properties: {
      ...BaseModel.baseProperties,
      sizeGb: { type: 'integer' },
      attached: { type: 'boolean' },
      label: { anyOf: [{ type: 'null' }, { type: 'string' }] },
    },
  }
  static override filterable: Readonly<Record<string, ColumnType>> = {
    id: 'uuid',
    sizeGb: 'integer',
    attached: 'boolean',
    label: 'string',
    createdAt: 'timestamp',
  }
  static override sortable: readonly string[] = ['sizeGb', 'label', 'createdAt']
}

/** A filter compiled the way the repositories compile it. */
function compile(model: typeof BaseModel, filter: unknown): { sql: string; bindings: unknown[] } {
  const { filters } = modelAccess(model)
  const walked = filters.walk(filter)
  return { sql: filters.sql(walked.shape), bindings: walked.bindings }
}

/** The ValidationError a filter is refused with (fails the test when it is accepted or refused otherwise). */
function refusal(model: typeof BaseModel, filter: unknown): ValidationError {
  try {
    compile(model, filter)
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError)
    return error as ValidationError
  }
  throw new Error('the filter was accepted')
}

/** Expects a filter refused at `field` with `message`, both in the error's text and in its details. */
function expectRefused(model: typeof BaseModel, filter: unknown, field: string, message: string): void {
  const error = refusal(model, filter)
  expect(error.message).toBe(`Invalid filter: ${field} ${message}.`)
  expect(error.details).toEqual([{ field, message, keyword: 'filter' }])
}

const UUID_A = '01A21233-143B-7362-B208-A7FC8387E8F8'
const UUID_B = '01a21233-1405-73d4-acaf-6da954af9e1d'

describe('filter-compiler.ts, the module the library imports filters from', () => {
  it('exports the same values as before it was split', () => {
    expect(Object.keys(compiler).sort()).toEqual(
      ['FILTER_LIMITS', 'FILTER_SQL_CACHE', 'FilterCompiler', 'checkValue', 'displayKey'].sort(),
    )
    const limits = { depth: 6, conditions: 64, nodes: 512, listLength: 1_000, values: 4_096, stringLength: 4_096 }
    expect(FILTER_LIMITS).toEqual(limits)
    expect(Object.isFrozen(FILTER_LIMITS)).toBe(true)
    expect(FILTER_SQL_CACHE).toEqual({ entries: 1_000, bytes: 1024 * 1024 })
    expect(compiler.displayKey('name')).toBe('name')
    expect(compiler.displayKey('a b')).toBe('(invalid key)')
    expect(compiler.checkValue('uuid', UUID_A, 'filter.id')).toBe(UUID_A.toLowerCase())
  })
})

describe('filters compiled to SQL', () => {
  it('compiles the documented example: in, or, ilike, equality and not null', () => {
    const filter: Filter = {
      status: { in: ['active', 'building'] },
      or: [{ name: { ilike: { startsWith: 'web' } } }, { region: 'nyc3' }],
      not: { ipAddress: null },
    }
    expect(compile(Droplet, filter)).toEqual({
      sql:
        '("droplets"."status" = any(?::text[])' +
        ` and ("droplets"."name" ilike ? escape '\\' or "droplets"."region" = ?)` +
        ' and (("droplets"."ip_address" is null) is not true))',
      bindings: [['active', 'building'], 'web%', 'nyc3'],
    })
  })

  it('compiles every operator of a string property, in the order given, ANDed', () => {
    const compare = { eq: 'a', ne: 'b', lt: 'c', lte: 'd', gt: 'e', gte: 'f', between: ['g', 'h'] }
    const others = { in: ['i', 'j'], notIn: ['k'], isNull: false, like: { contains: 'l' }, ilike: { endsWith: 'm' } }
    const c = '"droplets"."name"'
    expect(compile(Droplet, { name: { ...compare, ...others } })).toEqual({
      sql:
        `(${c} = ? and ${c} is distinct from ? and ${c} < ? and ${c} <= ? and ${c} > ? and ${c} >= ?` +
        ` and ${c} between ? and ? and ${c} = any(?::text[]) and ((${c} = any(?::text[])) is not true)` +
        ` and ${c} is not null and ${c} like ? escape '\\' and ${c} ilike ? escape '\\')`,
      bindings: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', ['i', 'j'], ['k'], '%l%', '%m'],
    })
  })

  it('matches like patterns literally: %, _ and \\ are escaped', () => {
    expect(compile(Droplet, { name: { like: { startsWith: '50%_off\\' } } }).bindings).toEqual(['50\\%\\_off\\\\%'])
  })

  it('binds values as their column type reads them', () => {
    const since = new Date('2026-01-02T03:04:05.678Z')
    const a = UUID_A.toLowerCase()
    expect(
      compile(Droplet, {
        id: UUID_A,
        userId: { in: [UUID_A, UUID_B] },
        createdAt: { gte: since, lt: '2026-02-01T00:00:00Z' },
        ipAddress: { ne: '2001:db8::1' },
      }),
    ).toEqual({
      sql:
        '("droplets"."id" = ? and "droplets"."user_id" = any(?::uuid[])' +
        ' and "droplets"."created_at" >= ? and "droplets"."created_at" < ?' +
        ' and "droplets"."ip_address" is distinct from ?)',
      bindings: [a, [a, UUID_B], '2026-01-02T03:04:05.678Z', '2026-02-01T00:00:00Z', '2001:db8::1'],
    })
  })

  it('binds integers as int8 and compiles boolean and null conditions', () => {
    expect(
      compile(Disk, { sizeGb: { between: [10, 20], notIn: [15] }, attached: true, label: { isNull: true } }),
    ).toEqual({
      sql:
        '("disks"."size_gb" between ?::int8 and ?::int8' +
        ' and (("disks"."size_gb" = any(?::int8[])) is not true)' +
        ' and "disks"."attached" = ? and "disks"."label" is null)',
      bindings: [10, 20, [15], true],
    })
  })

  it('compiles empty groups to constants, and no filter to no condition', () => {
    expect(compile(Droplet, undefined)).toEqual({ sql: '', bindings: [] })
    expect(compile(Droplet, {})).toEqual({ sql: 'true', bindings: [] })
    expect(compile(Droplet, { and: [] })).toEqual({ sql: 'true', bindings: [] })
    expect(compile(Droplet, { or: [] })).toEqual({ sql: 'false', bindings: [] })
    expect(compile(Droplet, { not: {} })).toEqual({ sql: '((true) is not true)', bindings: [] })
    expect(compile(Droplet, { name: 'a', region: undefined })).toEqual({
      sql: '"droplets"."name" = ?',
      bindings: ['a'],
    })
  })

  it('compiles nested groups with their own parentheses', () => {
    expect(
      compile(Droplet, { and: [{ or: [{ name: 'a' }, { name: 'b', size: 'c' }] }, { not: { region: 'd' } }] }),
    ).toEqual({
      sql:
        '(("droplets"."name" = ? or ("droplets"."name" = ? and "droplets"."size" = ?))' +
        ' and (("droplets"."region" = ?) is not true))',
      bindings: ['a', 'b', 'c', 'd'],
    })
  })

  it('compiles one SQL text per filter shape, whatever its values, and caches it', () => {
    const columns = new Map<string, FilterColumn>([['name', { sql: '"t"."name"', type: 'string' }]])
    const filters = new FilterCompiler(columns)
    const first = filters.walk({ name: { in: ['a'] } })
    const second = filters.walk({ name: { in: ['b', 'c', 'd'] } })
    expect(second.shape).toBe(first.shape)
    expect(filters.sql(first.shape)).toBe('"t"."name" = any(?::text[])')
    expect(filters.sql(second.shape)).toBe('"t"."name" = any(?::text[])')
    expect(filters.cacheStats()).toMatchObject({
      entries: 1,
      maxEntries: FILTER_SQL_CACHE.entries,
      maxBytes: FILTER_SQL_CACHE.bytes,
    })
    filters.sql(filters.walk({ name: 'x' }).shape)
    expect(filters.cacheStats().entries).toBe(2)
    expect(filters.sql('')).toBe('')
    expect(filters.cacheStats().entries).toBe(2)
  })
})

/** `n` empty groups: each one node and no condition. */
const empties = (n: number): Filter[] => Array.from({ length: n }, () => ({}))
const TOO_LARGE = `makes the filter larger than ${FILTER_LIMITS.nodes} groups, properties and operators`
const TOO_MANY_VALUES = `makes the filter hold more than ${FILTER_LIMITS.values} values`
const TOO_LONG = `makes the filter longer than ${FILTER_LIMITS.conditions} conditions`

describe('the limits of a filter', () => {
  it(`accepts ${FILTER_LIMITS.nodes} nodes and refuses one more, naming the node`, () => {
    // The top group, then 8 entries of 61 nodes (the entry and its 60 empty groups): 489; then one entry and 22 more.
    const full = (last: number): Filter => ({
      and: [...Array.from({ length: 8 }, () => ({ and: empties(60) })), { and: empties(last) }],
    })
    expect(FILTER_LIMITS.nodes).toBe(1 + 8 * 61 + 1 + 22)
    expect(compile(Droplet, full(22)).sql).toMatch(/^\(\(true and true/)
    expectRefused(Droplet, full(23), 'filter.and[8].and[22]', TOO_LARGE)
  })

  it(`accepts ${FILTER_LIMITS.values} values and refuses one more, naming the operator`, () => {
    const list = (n: number): string[] => Array.from({ length: n }, (_, i) => `v${i}`)
    const filter = (last: number): Filter => ({
      or: [
        ...Array.from({ length: 4 }, () => ({ name: { in: list(FILTER_LIMITS.listLength) } })),
        { name: { in: list(last) } },
      ],
    })
    expect(compile(Droplet, filter(96)).bindings.flat()).toHaveLength(FILTER_LIMITS.values)
    expectRefused(Droplet, filter(97), 'filter.or[4].name.in', TOO_MANY_VALUES)
  })

  it(`accepts ${FILTER_LIMITS.depth} levels of groups and refuses one more, naming the group`, () => {
    const nested = (levels: number): Filter => {
      let filter: Filter = { name: 'a' }
      for (let i = 0; i < levels; i += 1) filter = { not: filter }
      return filter
    }
    expect(compile(Droplet, nested(FILTER_LIMITS.depth)).bindings).toEqual(['a'])
    expectRefused(
      Droplet,
      nested(FILTER_LIMITS.depth + 1),
      `filter${'.not'.repeat(FILTER_LIMITS.depth + 1)}`,
      `nests deeper than ${FILTER_LIMITS.depth} levels`,
    )
  })

  it(`accepts ${FILTER_LIMITS.conditions} conditions and refuses one more`, () => {
    const conditions = Array.from({ length: FILTER_LIMITS.conditions }, () => ({ name: 'a' }))
    expect(compile(Droplet, { and: conditions }).bindings).toHaveLength(FILTER_LIMITS.conditions)
    expectRefused(Droplet, { and: conditions, region: 'b' }, 'filter.region', TOO_LONG)
    expectRefused(
      Droplet,
      { or: empties(FILTER_LIMITS.conditions + 1) },
      'filter.or',
      `has more than ${FILTER_LIMITS.conditions} filters`,
    )
  })

  it('refuses a list or a string over its limit', () => {
    const many = Array.from({ length: FILTER_LIMITS.listLength + 1 }, () => 'a')
    expectRefused(Droplet, { name: { notIn: many } }, 'filter.name.notIn', `has more than 1000 values`)
    expect(compile(Droplet, { name: 'x'.repeat(FILTER_LIMITS.stringLength) }).bindings).toHaveLength(1)
    expectRefused(
      Droplet,
      { name: 'x'.repeat(FILTER_LIMITS.stringLength + 1) },
      'filter.name',
      `must be at most ${FILTER_LIMITS.stringLength} characters`,
    )
  })
})

// The message lists what may be filtered (the blind-indexed encrypted properties among them), never the caller's text.
const NOT_FILTERABLE =
  'is not a filterable property (filterable: id, userId, name, region, size, status, ipAddress, createdAt, updatedAt)'
const notAnOperator = (type: string): string => `is not an operator for ${type} properties`
const STATUSES = 'must be one of: building, active, stopped, error, deleted'
const TIMESTAMP = 'must be a Date or an ISO 8601 timestamp in years 1 to 9999'
const LIKE_FORMS = 'must be { startsWith }, { contains } or { endsWith }'

describe('the whitelist of filterable properties and the operators of each type', () => {
  // adminPassword is encrypted without a blind index: it cannot be filtered at all.
  it.each<[typeof BaseModel, unknown, string, string]>([
    [Droplet, { adminPassword: 'x' }, 'filter.adminPassword', NOT_FILTERABLE],
    [Droplet, { constructor: 'x' }, 'filter.constructor', NOT_FILTERABLE],
    [Droplet, { or: [{ toString: 'x' }] }, 'filter.or[0].toString', NOT_FILTERABLE],
    [Droplet, { 'name; drop table x': 'x' }, 'filter.(invalid key)', NOT_FILTERABLE],
    [Droplet, { name: { regex: 'x' } }, 'filter.name.regex', notAnOperator('string')],
    [Droplet, { name: { toString: 'x' } }, 'filter.name.toString', notAnOperator('string')],
    [Droplet, { status: { like: { startsWith: 'a' } } }, 'filter.status.like', notAnOperator('enum')],
    [Droplet, { id: { gt: UUID_B } }, 'filter.id.gt', notAnOperator('uuid')],
    [Disk, { attached: { in: [true] } }, 'filter.attached.in', notAnOperator('boolean')],
    [Droplet, { name: {} }, 'filter.name', 'has no operator'],
  ])('refuses properties and operators outside the whitelist: %#', (model, filter, field, message) => {
    expectRefused(model, filter, field, message)
  })

  it.each<[typeof BaseModel, unknown, string, string]>([
    [Droplet, { name: ['a'] }, 'filter.name', 'is a list; use { in: [...] }'],
    [Droplet, { name: { eq: null } }, 'filter.name.eq', 'must not be null; use { isNull: true }'],
    [Droplet, { name: { in: 'a' } }, 'filter.name.in', 'must be an array'],
    [Droplet, { name: { between: ['a'] } }, 'filter.name.between', 'must be [low, high]'],
    [Droplet, { name: { isNull: 'yes' } }, 'filter.name.isNull', 'must be true or false'],
    [Droplet, { name: { like: { matches: 'a' } } }, 'filter.name.like', LIKE_FORMS],
    [Droplet, { name: 'secret-value-\u0000' }, 'filter.name', 'must not contain NUL characters'],
    [Droplet, { id: 'not-a-uuid' }, 'filter.id', 'must be a UUID'],
    [Droplet, { status: { in: ['active', 'gone'] } }, 'filter.status.in[1]', STATUSES],
    [Droplet, { ipAddress: 'fe80::1%eth0' }, 'filter.ipAddress', 'must be an IP address'],
    [Droplet, { createdAt: { gt: '2026-02-30' } }, 'filter.createdAt.gt', TIMESTAMP],
    [Disk, { sizeGb: 1.5 }, 'filter.sizeGb', 'must be an integer'],
    [Droplet, { and: {} }, 'filter.and', 'must be an array of filters'],
    [Droplet, { or: ['a'] }, 'filter.or[0]', 'must be an object'],
    [Droplet, [], 'filter', 'must be an object'],
  ])('refuses values of the wrong shape or type, without showing them: %#', (model, filter, field, message) => {
    expectRefused(model, filter, field, message)
    expect(refusal(model, filter).message).not.toContain('secret-value')
  })
})

describe('sorts compiled to SQL', () => {
  it('compiles sortable properties in order and ends in the id, in the direction of the last key', () => {
    expect(compileSort(modelAccess(Droplet), ['-createdAt', 'name'])).toMatchObject({
      key: '-createdAt,name',
      sql: '"droplets"."created_at" desc, "droplets"."name" asc, "droplets"."id" asc',
    })
    expect(compileSort(modelAccess(Droplet), undefined)).toMatchObject({
      key: '-createdAt',
      sql: '"droplets"."created_at" desc, "droplets"."id" desc',
    })
    expect(compileSort(modelAccess(Disk), ['-label']).keys).toEqual([
      { sql: '"disks"."label"', descending: true, nullable: true },
      { sql: '"disks"."id"', descending: true, nullable: false },
    ])
  })

  it('refuses properties the model does not list as sortable, even filterable ones', () => {
    const access = modelAccess(Droplet)
    // The message lists what may be asked for, never echoing the caller's text.
    const sortable = '(sortable: createdAt, updatedAt, name, region, size, status)'
    expect(() => compileSort(access, ['userId'])).toThrow(
      `Invalid sort: sort[0] is not a sortable property ${sortable}.`,
    )
    expect(() => compileSort(access, ['name', '-toString'])).toThrow(
      `Invalid sort: sort[1] is not a sortable property ${sortable}.`,
    )
    expect(() => compileSort(access, ['name', '-name'])).toThrow('Invalid sort: sort[1] repeats a property.')
    expect(() => compileSort(access, 'name')).toThrow('Invalid sort: must be a list of property names.')
    const nine = Array.from({ length: 9 }, (_, i) => (i % 2 === 0 ? 'name' : 'region'))
    expect(() => compileSort(access, nine)).toThrow('Invalid sort: at most 8 properties.')
    expect(() => compileSort(access, [1])).toThrow(ValidationError)
  })
})

describe('encrypted properties: equality through the blind index only', () => {
  const b64 = (): string => randomBytes(32).toString('base64')
  const knex = createKnex({ client: 'pg' })
  const [k1, blindIndexKey, previous] = [b64(), b64(), b64()]
  const keyring = Keyring.from({ keys: { k1 }, current: 'k1', blindIndexKey, previousBlindIndexKeys: [previous] })
  registerKeyring(knex, keyring)
  const BoundUser = User.bindKnex(knex)
  afterAll(async () => {
    await knex.destroy()
  })

  it('compiles a plain value or { eq } to the blind-index column, under every blind-index key', () => {
    const indexes = blindIndexes(keyring, 'users', 'api_token_bidx', 'token-1', {})
    expect(indexes).toHaveLength(2)
    const expected = { sql: '"users"."api_token_bidx" = any(?::text[])', bindings: [indexes] }
    expect(compile(BoundUser, { apiToken: 'token-1' })).toEqual(expected)
    expect(compile(BoundUser, { apiToken: { eq: 'token-1' } })).toEqual(expected)
    expect(JSON.stringify(compile(BoundUser, { apiToken: 'token-1' }))).not.toContain('token-1')
    expect(compile(BoundUser, { apiToken: null })).toEqual({ sql: '"users"."api_token_bidx" is null', bindings: [] })
  })

  it('compiles a single blind index to an equality', () => {
    const columns = new Map<string, FilterColumn>([
      ['email', { sql: '"users"."email_bidx"', type: 'string', lookup: (value) => `bidx:${value.length}` }],
    ])
    const filters = new FilterCompiler(columns)
    const walked = filters.walk({ email: { eq: 'ada@example.com' } })
    expect(walked.bindings).toEqual(['bidx:15'])
    expect(filters.sql(walked.shape)).toBe('"users"."email_bidx" = ?')
  })

  it('refuses every other operator, lists and unknown operators', () => {
    const message = 'is encrypted: only equality ({ eq } or a plain value) can be filtered, through its blind index'
    const ranges = [{ ne: 'a' }, { gt: 'a' }, { between: ['a', 'b'] }, { isNull: true }, { eq: 'a', ne: 'b' }]
    const lists = [['a'], { in: ['a'] }, { notIn: ['a'] }, { like: { startsWith: 'a' } }, { eq: { eq: 'a' } }]
    for (const value of [...ranges, ...lists]) {
      expectRefused(BoundUser, { apiToken: value }, 'filter.apiToken', message)
    }
    expectRefused(BoundUser, { apiToken: { regex: 'a' } }, 'filter.apiToken.regex', 'is not an operator')
    expectRefused(BoundUser, { apiToken: 7 }, 'filter.apiToken', 'must be a string')
  })

  it('counts { eq } as a node, as for any other property', () => {
    // The top group, 8 entries of 61 nodes and one of 22 (itself and 21 empty groups): 511. The property is the
    // 512th node; its `eq` would be the 513th.
    const filter = (token: unknown): Filter => ({
      and: [...Array.from({ length: 8 }, () => ({ and: empties(60) })), { and: empties(21) }],
      apiToken: token as Filter[string],
    })
    expect(compile(BoundUser, filter('a')).bindings).toHaveLength(1)
    expectRefused(BoundUser, filter({ eq: 'a' }), 'filter.apiToken.eq', TOO_LARGE)
  })
})
