/**
 * Attack class: filters that exhaust the memory or the CPU of the host.
 *
 * A signed-in user controls the whole `filter` object of `list` and `count` (a host typically passes a parsed JSON
 * body or query string straight in), and the sort. The attacker sends many distinct hostile filters: empty groups by
 * the thousand, deep nesting, many operators, long strings, long and many lists, names from Object.prototype. Each
 * must be refused with a ValidationError before any SQL exists, or, when it is within the limits, answered; and
 * whatever the library keeps afterwards (compiled SQL, query statistics) must stay within stated bounds, however many
 * distinct filters came.
 *
 * WINCLOUD_FILTER_ATTACKS sets how many filters are sent (100,000 by default, 1,000,000 with WINCLOUD_TEST_DEEP=1).
 * Most go straight through the filter compiler the repositories use (walk, then compile); every 100th, up to 1,000,
 * also goes through `scope.repo(Droplet).list` or `.count` on the real database.
 */
import { EventEmitter } from 'node:events'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FILTER_SQL_CACHE, FilterCompiler, type FilterColumn } from '../../src/access/filter-compiler.js'
import { modelAccess } from '../../src/access/model-access.js'
import { QueryStats } from '../../src/observability/query-stats.js'
import { QUERY_STATS_LIMITS } from '../../src/observability/query-stats-limits.js'
import {
  Droplet,
  FILTER_LIMITS,
  User,
  ValidationError,
  isDataError,
  type Database,
  type Filter,
  type Scope,
} from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

const DEEP = process.env.WINCLOUD_TEST_DEEP === '1'
const ATTACKS = Number(process.env.WINCLOUD_FILTER_ATTACKS ?? (DEEP ? 1_000_000 : 100_000))
/** How much the heap may grow over the whole run, once garbage is collected: the bound this file asserts. */
const HEAP_GROWTH_BOUND = 32 * 1024 * 1024
const NAMES = Object.getOwnPropertyNames(Object.prototype)

/** A function that runs a full garbage collection (V8's `gc`, enabled at run time). */
const gc: () => void = (() => {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (typeof exposed === 'function') return exposed
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
})()

function heapUsed(): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

/** An object with `name` as an own enumerable property (a literal's `__proto__: x` would set the prototype). */
function own(name: string, value: unknown): Record<string, unknown> {
  const object: Record<string, unknown> = {}
  Object.defineProperty(object, name, { value, enumerable: true, writable: true, configurable: true })
  return object
}

/** A small deterministic generator (mulberry32), so filter number i is the same in every run. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

const STRING_PROPERTIES = ['name', 'region', 'size'] as const
const STRING_OPERATORS = ['eq', 'ne', 'lt', 'lte', 'gt', 'gte'] as const
/** Lists shared between filters (the filters differ in which and how many): cheap to send 100,000 of. */
const LISTS = [1, 10, 500, 1_000, 1_001, 5_000].map((n) => Array.from({ length: n }, (_, i) => `n${i}`))
const EMPTY: Filter = Object.freeze({})

/** And / or lists past the 64 entries one may have: empty groups, and conditions. */
const WIDE = [65, 1_000, 100_000].flatMap((n) => [
  Array.from({ length: n }, () => ({})),
  Array.from({ length: n }, (_, i) => ({ name: `w${i}` })),
])
const LONG = [4_095, 4_096, 4_097, 10_000, 100_000].map((n) => 'x'.repeat(n))

/** A condition that is always valid, made distinct by i. */
function condition(next: () => number, i: number): Filter {
  const property = STRING_PROPERTIES[Math.floor(next() * STRING_PROPERTIES.length)]!
  const pick = next()
  if (pick < 0.4) return { [property]: `v${i}` }
  if (pick < 0.7) return { [property]: { [STRING_OPERATORS[Math.floor(next() * STRING_OPERATORS.length)]!]: `v${i}` } }
  if (pick < 0.8) return { status: { in: ['active', 'stopped'] } }
  if (pick < 0.9) return { ipAddress: null }
  return { createdAt: { gte: new Date(Date.UTC(2026, 0, 1) + i) } }
}

/**
 * Groups nested as deep as `widths` is long, `widths[l]` wide at level l (alternating or / and), around `leaf`. Each
 * level repeats one object, so a filter of thousands of groups costs the sender a few arrays: the walk still meets
 * every group, as it would in the same filter parsed from JSON.
 */
function emptyGroups(widths: readonly number[], leaf: Filter = {}): Filter {
  let node = leaf
  for (let level = widths.length - 1; level >= 0; level -= 1) {
    const inner = new Array<Filter>(widths[level]!).fill(node)
    node = level % 2 === 0 ? { or: inner } : { and: inner }
  }
  return node
}

/** A random tree of and / or / not over valid conditions and empty groups. */
function tree(next: () => number, i: number, depth: number, budget: { nodes: number }): Filter {
  const group: Record<string, unknown> = {}
  budget.nodes -= 1
  if (depth <= 0 || budget.nodes <= 0) return next() < 0.5 ? {} : { ...condition(next, i) }
  if (next() < 0.6) Object.assign(group, condition(next, i))
  const kinds = ['and', 'or', 'not'] as const
  for (const kind of kinds) {
    if (next() < 0.5) continue
    if (kind === 'not') group.not = tree(next, i, depth - 1, budget)
    else {
      const width = 1 + Math.floor(next() * 8)
      group[kind] = Array.from({ length: width }, () => tree(next, i, depth - 1, budget))
    }
  }
  return group as Filter
}

/** Hostile filter number i; kinds rotate so every count sends a mix of all of them. */
function hostile(i: number): { kind: string; filter: unknown } {
  const next = random(i * 2_654_435_761)
  switch (i % 9) {
    case 0: {
      // Empty groups: as wide and deep as the grammar lets through without the node count, up to 5,000 of them
      // (about 15 KB of JSON), each level of its own width so that the shapes differ.
      const widths: number[] = []
      let groups = 1
      for (let level = 0; level < FILTER_LIMITS.depth; level += 1) {
        const width = 2 + Math.floor(next() * 63)
        if (groups * width > 5_000) break
        widths.push(width)
        groups *= width
      }
      return { kind: 'empty groups', filter: emptyGroups(widths, next() < 0.5 ? {} : condition(next, i)) }
    }
    case 1: {
      // Deep nesting around one condition.
      let filter: unknown = condition(next, i)
      const depth = 1 + Math.floor(next() * 60)
      for (let d = 0; d < depth; d += 1) {
        const wrap = next()
        filter = wrap < 0.34 ? { not: filter } : wrap < 0.67 ? { and: [filter, {}] } : { or: [{}, filter] }
      }
      return { kind: 'deep nesting', filter }
    }
    case 2: {
      // Many operators and conditions: an and of up to 130, each with up to 6 operators.
      const n = 1 + Math.floor(next() * 130)
      const and = Array.from({ length: n }, (_, j) => {
        const ops: Record<string, unknown> = {}
        for (const op of STRING_OPERATORS) if (next() < 0.5) ops[op] = `v${i}-${j}`
        return { name: Object.keys(ops).length === 0 ? { eq: `v${j}` } : ops }
      })
      return { kind: 'many operators', filter: { and } }
    }
    case 3: {
      // Long strings, as values, like patterns and list elements.
      const text = LONG[Math.floor(next() * LONG.length)]!
      const where = next()
      const filter =
        where < 0.3
          ? { name: text }
          : where < 0.6
            ? { name: { ilike: { contains: text } } }
            : where < 0.8
              ? { name: { in: [`v${i}`, text] } }
              : { region: { between: [`v${i}`, text] } }
      return { kind: 'long strings', filter }
    }
    case 4: {
      // Long lists, and many of them.
      const lists = 1 + Math.floor(next() * 8)
      const and = Array.from({ length: lists }, () => ({
        [STRING_PROPERTIES[Math.floor(next() * 3)]!]: { in: LISTS[Math.floor(next() * LISTS.length)]! },
      }))
      return { kind: 'lists', filter: { and, name: `v${i}` } }
    }
    case 5: {
      // Names from the prototype, and long or odd names, as properties, operators and like forms.
      const name =
        next() < 0.6 ? NAMES[Math.floor(next() * NAMES.length)]! : `${'k'.repeat(Math.floor(next() * 10_000))}${i}`
      const place = next()
      const filter =
        place < 0.4
          ? own(name, 'x')
          : place < 0.7
            ? { status: own(name, 'active') }
            : place < 0.85
              ? { name: { like: own(name, 'x') } }
              : { and: [{}, own(name, { eq: 'x' })] }
      return { kind: 'odd names', filter }
    }
    case 6: {
      // Random trees of valid conditions and empty groups: many pass, each a shape of its own.
      return { kind: 'random trees', filter: tree(next, i, 1 + Math.floor(next() * 5), { nodes: 400 }) }
    }
    case 7: {
      // An and / or wider than the grammar allows, of empty groups or of conditions.
      const wide = WIDE[Math.floor(next() * WIDE.length)]!
      return {
        kind: 'wide',
        filter: next() < 0.5 ? { or: wide, name: `v${i}` } : { and: [{ name: `v${i}` }, { or: wide }] },
      }
    }
    default: {
      // Empty groups around valid conditions, near the node limit (about half pass).
      const empties = FILTER_LIMITS.nodes - 40 + Math.floor(next() * 80) - 4
      const conditions = Array.from({ length: 1 + (i % 7) }, () => condition(next, i))
      const slots: Filter[] = [...conditions, ...new Array<Filter>(empties).fill(EMPTY)]
      const chunks: Filter[] = []
      for (let j = 0; j < slots.length; j += 60) chunks.push({ or: slots.slice(j, j + 60) })
      return { kind: 'padded', filter: { and: chunks } }
    }
  }
}

describe('filters that exhaust memory or CPU', () => {
  let db: Database
  let url: string
  let cleanup: () => Promise<void>
  let alice: User
  let scope: Scope
  let rows: () => Promise<string[]>

  beforeAll(async () => {
    ;({ db, url, cleanup } = await openTestDatabase())
    const make = (name: string) =>
      db
        .model(User)
        .query()
        .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: `hash-of-${name}`, role: 'user' })
    alice = await make('alice')
    const bob = await make('bob')
    for (const owner of [alice, bob]) {
      await db
        .model(Droplet)
        .query()
        .insert(
          ['web-1', 'web-2', 'db-1'].map((name) => ({
            userId: owner.id,
            name,
            region: 'nyc3',
            size: 's',
            status: 'active' as const,
          })),
        )
    }
    scope = db.scope(alice, { requestId: 'filter-exhaustion' })
    // Every row as text, read by the superuser around the library (and around PgBouncer).
    rows = async () => {
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      try {
        const result = await client.query<{ row: string }>('select d::text as row from droplets d order by id')
        return result.rows.map((r) => r.row)
      } finally {
        await client.end()
      }
    }
  })
  afterAll(async () => {
    await cleanup()
  })

  it(`${ATTACKS.toLocaleString('en')} distinct hostile filters: refused before SQL or answered, within a bounded heap`, async () => {
    const compiler = modelAccess(Droplet).filters
    const repo = scope.repo(Droplet)
    // Warm up what every run loads anyway (code, the first compiled statements), then measure from there.
    await repo.list({ filter: { name: 'warm' } })
    await repo.count({ name: 'warm' })
    const statsBefore = db.stats().totals.calls
    const baseline = heapUsed()
    const refusedBy = new Map<string, number>()
    let refused = 0
    let passed = 0
    let sampled = 0
    let sampledPassed = 0
    let maxHeap = 0
    const sampleEvery = 100
    const sampleCap = 1_000
    for (let i = 0; i < ATTACKS; i += 1) {
      const { kind, filter } = hostile(i)
      let ok = true
      try {
        const walked = compiler.walk(filter)
        compiler.sql(walked.shape)
      } catch (error) {
        // Never a TypeError, a RangeError (stack overflow) or an error from the SQL builder: a ValidationError.
        if (!(error instanceof ValidationError)) {
          throw new Error(`filter ${i} (${kind}) threw ${String(error)}`, { cause: error })
        }
        ok = false
      }
      if (ok) passed += 1
      else {
        refused += 1
        refusedBy.set(kind, (refusedBy.get(kind) ?? 0) + 1)
      }
      if (i % sampleEvery === 0 && sampled < sampleCap) {
        sampled += 1
        const call = i % 200 === 0 ? repo.list({ filter: filter as Filter, limit: 5 }) : repo.count(filter as Filter)
        const outcome = await call.then(
          () => 'answered',
          (error: unknown) => error,
        )
        if (outcome === 'answered') {
          expect(ok).toBe(true)
          sampledPassed += 1
        } else {
          expect(outcome).toBeInstanceOf(ValidationError)
          expect(ok).toBe(false)
        }
      }
      if (i % 20_000 === 0) maxHeap = Math.max(maxHeap, heapUsed() - baseline)
      // What the compiler keeps is within its bounds after every filter.
      if (i % 1_000 === 0) {
        const cache = compiler.cacheStats()
        expect(cache.entries).toBeLessThanOrEqual(FILTER_SQL_CACHE.entries)
        expect(cache.bytes).toBeLessThanOrEqual(FILTER_SQL_CACHE.bytes)
      }
    }
    const growth = heapUsed() - baseline
    maxHeap = Math.max(maxHeap, growth)
    // The headline: whatever came, the heap holds at most HEAP_GROWTH_BOUND more than before.
    expect(maxHeap, `heap grew by ${(maxHeap / 1024 / 1024).toFixed(1)} MiB`).toBeLessThan(HEAP_GROWTH_BOUND)

    // Most are refused by the limits, every kind has refusals, and some pass (the bounds are exercised too).
    expect(refused).toBeGreaterThan(ATTACKS * 0.6)
    expect(passed).toBeGreaterThan(ATTACKS * 0.05)
    for (const kind of ['empty groups', 'deep nesting', 'many operators', 'long strings', 'lists', 'odd names']) {
      expect(refusedBy.get(kind) ?? 0, kind).toBeGreaterThan(0)
    }
    // A refused filter never reached the database: only the answered ones ran a statement (one each).
    const stats = db.stats()
    expect(stats.totals.calls - statsBefore).toBe(sampledPassed)
    expect(stats.totals.errors).toBe(0)
    // Query statistics stayed within their bounds too.
    expect(stats.queries.length).toBeLessThanOrEqual(QUERY_STATS_LIMITS.groups + 1)
    for (const q of stats.queries) expect(q.sql.length).toBeLessThanOrEqual(QUERY_STATS_LIMITS.sqlLength + 80)
    const cache = compiler.cacheStats()
    expect(cache.bytes).toBeLessThanOrEqual(FILTER_SQL_CACHE.bytes)
  })

  it('a filter of thousands of empty groups is refused with a ValidationError, before SQL, and changes nothing', async () => {
    // 64 groups of 64 empty groups: 4,161 groups, no condition at all. `{}` is true, so accepted it would match (and
    // patch) every row of the scope.
    const filter = emptyGroups([64, 64])
    const before = await rows()
    const calls = db.stats().totals.calls
    const cacheBefore = modelAccess(Droplet).filters.cacheStats()
    const repo = scope.repo(Droplet)
    for (const attempt of [
      () => repo.list({ filter }),
      () => repo.count(filter),
      () => repo.list({ filter: { and: [filter] } }),
      () => repo.bulkUpdate({ filter }, { status: 'stopped' }),
    ]) {
      const error = await attempt().then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(error).toBeInstanceOf(ValidationError)
      expect((error as ValidationError).details[0]?.field).toMatch(/^filter[.[]/)
      expect((error as ValidationError).message).toMatch(/larger than 512 groups, properties and operators/)
    }
    expect(db.stats().totals.calls).toBe(calls)
    expect(modelAccess(Droplet).filters.cacheStats().entries).toBe(cacheBefore.entries)
    expect(await rows()).toEqual(before)
  })

  it('counts every group, empty ones included, against FILTER_LIMITS.nodes', () => {
    const compiler = modelAccess(Droplet).filters
    // The top group, an or of n empty groups: n + 1 nodes.
    const or = (n: number): Filter => ({ or: Array.from({ length: n }, () => ({})) })
    const flat = (n: number): Filter => ({
      and: Array.from({ length: Math.ceil(n / 60) }, (_, i) => or(Math.min(60, n - i * 60))),
    })
    // 1 + k and-entries + n empty groups.
    const nodesOf = (n: number): number => 1 + Math.ceil(n / 60) + n
    let n = 0
    while (nodesOf(n + 1) <= FILTER_LIMITS.nodes) n += 1
    expect(() => compiler.walk(flat(n))).not.toThrow()
    expect(() => compiler.walk(flat(n + 1))).toThrow(ValidationError)
    // A property and its operators count too.
    expect(nodesOf(n - 2) + 3).toBeGreaterThan(FILTER_LIMITS.nodes)
    const padded = { ...flat(n - 2), name: { eq: 'a', ne: 'b' } }
    expect(() => compiler.walk(padded)).toThrow(/larger than 512/)
  })

  it('counts list elements against FILTER_LIMITS.values', () => {
    const compiler = modelAccess(Droplet).filters
    const list = LISTS[3]! // 1,000
    const lists = (k: number): Filter => ({ and: Array.from({ length: k }, () => ({ name: { in: list } })) })
    expect(() => compiler.walk(lists(4))).not.toThrow()
    expect(() => compiler.walk(lists(5))).toThrow(/more than 4096 values/)
    expect(() => compiler.walk({ ...lists(4), region: { in: LISTS[2]! } })).toThrow(/more than 4096 values/)
  })

  it('refuses the holes of a sparse and / or as it refuses undefined, with a ValidationError', () => {
    const compiler = modelAccess(Droplet).filters
    // eslint-disable-next-line no-sparse-arrays
    for (const filter of [{ or: [, ,] }, { and: [{ name: 'a' }, ,] }, { or: new Array(3) }, { and: [undefined] }]) {
      expect(() => compiler.walk(filter), JSON.stringify(filter)).toThrow(ValidationError)
    }
  })

  describe('names from Object.prototype', () => {
    it('covers them', () => {
      expect(NAMES).toEqual(expect.arrayContaining(['constructor', '__proto__', 'toString', 'hasOwnProperty']))
    })

    it('as a property, an operator, a like form or a sort: a ValidationError naming the place', async () => {
      const repo = scope.repo(Droplet)
      const compiler = modelAccess(Droplet).filters
      for (const name of NAMES) {
        const attempts: [string, unknown, RegExp][] = [
          ['property', own(name, 'x'), /is not a filterable property/],
          ['property with operators', own(name, { eq: 1 }), /is not a filterable property/],
          ['property in a group', { or: [own(name, null)] }, /is not a filterable property/],
          ['operator', { status: own(name, 'active') }, /is not an operator for enum properties/],
          ['operator on a string', { name: own(name, 1) }, /is not an operator for string properties/],
          ['operator with an object', { status: own(name, { eq: 'active' }) }, /is not an operator/],
          ['like form', { name: { like: own(name, 'x') } }, /must be \{ startsWith \}/],
        ]
        for (const [place, filter, message] of attempts) {
          const error = await repo.list({ filter: filter as Filter }).then(
            () => undefined,
            (e: unknown) => e,
          )
          expect(error, `${name} as ${place}`).toBeInstanceOf(ValidationError)
          expect((error as Error).message, `${name} as ${place}`).toMatch(message)
          expect(() => compiler.walk(filter), `${name} as ${place}`).toThrow(message)
          await expect(repo.count(filter as Filter)).rejects.toBeInstanceOf(ValidationError)
        }
        for (const sort of [[name], [`-${name}`], ['name', name]]) {
          const error = await repo.list({ sort: sort as never }).then(
            () => undefined,
            (e: unknown) => e,
          )
          expect(error, `sort ${sort.join(',')}`).toBeInstanceOf(ValidationError)
          expect((error as Error).message).toMatch(/is not a sortable property/)
        }
      }
    })

    it('a literal __proto__ (which sets the prototype) never widens a filter', async () => {
      const repo = scope.repo(Droplet)
      const mine = await repo.count()
      // `{ __proto__: { eq: 'x' } }` is an object whose prototype holds eq: not a plain object, so a value of the
      // wrong type; `{ __proto__: null }` is a plain object with no operator.
      for (const filter of [
        { status: { __proto__: { eq: 'active' } } },
        { status: { __proto__: null } },
        { __proto__: { name: 'web-1' } },
        JSON.parse('{"__proto__": {"name": "web-1"}}') as unknown,
        JSON.parse('{"status": {"__proto__": "active"}}') as unknown,
      ]) {
        const outcome = await repo.count(filter as Filter).then(
          (n) => n,
          (e: unknown) => e,
        )
        if (typeof outcome === 'number') expect(outcome).toBe(mine)
        else expect(isDataError(outcome) && outcome instanceof ValidationError, String(outcome)).toBe(true)
      }
      // A filter whose prototype holds the conditions is not a plain object: refused, never read through.
      await expect(repo.count({ __proto__: { name: 'web-1' } } as never)).rejects.toBeInstanceOf(ValidationError)
    })

    it('an operator is read as an own property only, even with Object.prototype polluted', () => {
      // An encrypted property (a blind-index lookup) accepts { eq } alone; with `eq` on Object.prototype, a
      // prototype-chain lookup would read every operator object as an equality on the polluted value.
      const columns = new Map<string, FilterColumn>([
        ['email', { sql: '"users"."email_bidx"', type: 'string', lookup: (value) => `bidx:${value}` }],
        ['name', { sql: '"users"."name"', type: 'string' }],
      ])
      const compiler = new FilterCompiler(columns)
      const proto = Object.prototype as Record<string, unknown>
      proto.eq = 'victim@example.com'
      try {
        expect(() => compiler.walk({ email: { ne: 'me@example.com' } })).toThrow(ValidationError)
        expect(() => compiler.walk({ email: { toString: 'x' } })).toThrow(/is not an operator/)
        expect(() => compiler.walk({ email: {} })).toThrow(ValidationError)
        expect(compiler.walk({ email: { eq: 'me@example.com' } }).bindings).toEqual(['bidx:me@example.com'])
        expect(compiler.walk({ name: 'a' }).bindings).toEqual(['a'])
      } finally {
        delete proto.eq
      }
    })
  })

  it('query statistics stay bounded under thousands of distinct, long statements', () => {
    // A stand-in knex: query timing listens to its events, and wraps its client's pool methods.
    const knex = Object.assign(new EventEmitter(), {
      client: {
        acquireConnection: () => Promise.resolve({}),
        releaseConnection: () => Promise.resolve(),
        transaction: () => ({ acquireConnection: () => Promise.resolve({}) }),
      },
    })
    const stats = new QueryStats(knex as never, {
      slowQueryMs: 1e9,
      queryTiming: true,
      connectionLeakMs: 0,
      logger: undefined,
    })
    try {
      const baseline = heapUsed()
      const filler = 'x'.repeat(60_000)
      const count = DEEP ? 50_000 : 5_000
      for (let i = 0; i < count; i += 1) {
        // Distinct identifiers, so no two normalize alike: each is a shape of its own, some long, some huge.
        const columns = i % 3 === 0 ? `c${i}_${filler}` : `c${i}_${'y'.repeat(i % 5_000)}`
        const sql = `select ${columns} from t${i}`
        knex.emit('query', { __knexQueryUid: `q${i}`, sql })
        knex.emit('query-response', [], { __knexQueryUid: `q${i}`, sql })
        // A query that never answers, every tenth: the in-flight map must not grow either.
        if (i % 10 === 0) knex.emit('query', { __knexQueryUid: `lost${i}`, sql })
      }
      const footprint = stats.footprint()
      expect(footprint.groups).toBeLessThanOrEqual(QUERY_STATS_LIMITS.groups + 1)
      expect(footprint.groupBytes).toBeLessThanOrEqual(QUERY_STATS_LIMITS.groupBytes + 1_024)
      expect(footprint.sqlCache).toBeLessThanOrEqual(QUERY_STATS_LIMITS.sqlCacheEntries)
      expect(footprint.sqlCacheBytes).toBeLessThanOrEqual(QUERY_STATS_LIMITS.sqlCacheBytes)
      expect(footprint.inFlight).toBeLessThanOrEqual(QUERY_STATS_LIMITS.inFlight)
      const report = stats.report()
      expect(report.totals.calls).toBe(count)
      for (const q of report.queries) expect(q.sql.length).toBeLessThanOrEqual(QUERY_STATS_LIMITS.sqlLength + 80)
      const growth = heapUsed() - baseline
      expect(growth, `heap grew by ${(growth / 1024 / 1024).toFixed(1)} MiB`).toBeLessThan(24 * 1024 * 1024)
    } finally {
      stats.close()
    }
  })
})
