/**
 * Pagination without a database: the keyset SQL (order, condition, key columns), signed cursors, the checks of page
 * requests, how an offset page's total is chosen, and both page kinds driven by a fake page source that records the
 * statements it is given and answers from an in-memory table.
 */
import { createHmac, randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidCursorError, ValidationError } from '../../src/errors/index.js'
import { CursorCodec, type CursorBinding } from '../../src/pagination/cursor-codec.js'
import { keysetPage } from '../../src/pagination/keyset-page.js'
import { keyColumn, keysetCondition, keysetOrder, keySelect } from '../../src/pagination/keyset.js'
import { offsetPage } from '../../src/pagination/offset-page.js'
import {
  TOTAL_COUNT_CAP,
  chooseOffsetTotal,
  type OffsetPageSeen,
  type TotalSources,
} from '../../src/pagination/offset-total.js'
import { checkKeysetRequest, checkOffsetRequest, checkSize } from '../../src/pagination/requests.js'
import type { CompiledSort, PageSource, SortKey } from '../../src/pagination/source.js'
import { caught, expectInvalid } from '../helpers/errors.js'
import { runs } from '../helpers/property.js'

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

const ACTOR = '01a21233-1405-73d4-acaf-6da954af9e1d'

const key = (sql: string, descending = false, nullable = false): SortKey => ({ sql, descending, nullable })
const NAME = key('"t"."name"')
const ID = key('"t"."id"')
const CREATED_DESC = key('"t"."created_at"', true)
const LABEL = key('"t"."label"', false, true)

/** The error `fn` throws (fails the test when it returns). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('the promise was fulfilled')
}

function expectInvalidCursor(fn: () => unknown): InvalidCursorError {
  const error = caught(fn)
  expect(error).toBeInstanceOf(InvalidCursorError)
  expect((error as InvalidCursorError).code).toBe('INVALID_CURSOR')
  expect((error as InvalidCursorError).httpStatus).toBe(400)
  return error as InvalidCursorError
}

// ---------------------------------------------------------------------------------------------------------------
// keyset.ts
// ---------------------------------------------------------------------------------------------------------------

describe('keySelect and keysetOrder', () => {
  it('reads each sort key as text through its own internal column', () => {
    expect(keyColumn(0)).toBe('__wincloud_k0')
    expect(keySelect([NAME, ID])).toBe('("t"."name")::text as "__wincloud_k0", ("t"."id")::text as "__wincloud_k1"')
    expect(keySelect([])).toBe('')
  })

  it('orders forward as the sort says and backward exactly reversed', () => {
    expect(keysetOrder([NAME, ID], false)).toBe('"t"."name" asc, "t"."id" asc')
    expect(keysetOrder([NAME, ID], true)).toBe('"t"."name" desc, "t"."id" desc')
    expect(keysetOrder([CREATED_DESC, ID], false)).toBe('"t"."created_at" desc, "t"."id" asc')
    expect(keysetOrder([CREATED_DESC, ID], true)).toBe('"t"."created_at" asc, "t"."id" desc')
  })
})

describe('keysetCondition', () => {
  it('is one row comparison when no key can be NULL and all keys go one way', () => {
    expect(keysetCondition([NAME, ID], ['web', 'b'], false)).toEqual({
      sql: '("t"."name", "t"."id") > (?, ?)',
      bindings: ['web', 'b'],
    })
    expect(keysetCondition([NAME, ID], ['web', 'b'], true)).toEqual({
      sql: '("t"."name", "t"."id") < (?, ?)',
      bindings: ['web', 'b'],
    })
    const desc = [CREATED_DESC, key('"t"."id"', true)]
    expect(keysetCondition(desc, ['2026-01-01 00:00:00.123456+00', 'b'], false)).toEqual({
      sql: '("t"."created_at", "t"."id") < (?, ?)',
      bindings: ['2026-01-01 00:00:00.123456+00', 'b'],
    })
    expect(keysetCondition(desc, ['2026-01-01 00:00:00.123456+00', 'b'], true).sql).toBe(
      '("t"."created_at", "t"."id") > (?, ?)',
    )
    expect(keysetCondition([ID], ['a'], false)).toEqual({ sql: '("t"."id") > (?)', bindings: ['a'] })
  })

  it('expands keys that go different ways into one branch per key', () => {
    expect(keysetCondition([CREATED_DESC, ID], ['2026-01-01', 'b'], false)).toEqual({
      sql: '("t"."created_at" < ? or ("t"."created_at" = ? and "t"."id" > ?))',
      bindings: ['2026-01-01', '2026-01-01', 'b'],
    })
    expect(keysetCondition([CREATED_DESC, ID], ['2026-01-01', 'b'], true)).toEqual({
      sql: '("t"."created_at" > ? or ("t"."created_at" = ? and "t"."id" < ?))',
      bindings: ['2026-01-01', '2026-01-01', 'b'],
    })
  })

  it('places NULLs as PostgreSQL does: last going up, first going down', () => {
    // Forward over an ascending nullable key: after a value come greater values, then the NULLs.
    expect(keysetCondition([LABEL, ID], ['x', 'b'], false)).toEqual({
      sql: '(("t"."label" > ? or "t"."label" is null) or ("t"."label" = ? and "t"."id" > ?))',
      bindings: ['x', 'x', 'b'],
    })
    // After a NULL (the last group) only the NULLs with a greater id.
    expect(keysetCondition([LABEL, ID], [null, 'b'], false)).toEqual({
      sql: '(false or ("t"."label" is null and "t"."id" > ?))',
      bindings: ['b'],
    })
    // Backward, the order is descending: before a value only smaller values; before a NULL every value.
    expect(keysetCondition([LABEL, ID], ['x', 'b'], true)).toEqual({
      sql: '("t"."label" < ? or ("t"."label" = ? and "t"."id" < ?))',
      bindings: ['x', 'x', 'b'],
    })
    expect(keysetCondition([LABEL, ID], [null, 'b'], true)).toEqual({
      sql: '("t"."label" is not null or ("t"."label" is null and "t"."id" < ?))',
      bindings: ['b'],
    })
  })

  it('uses the expanded form for a NULL value even when the key is not marked nullable', () => {
    expect(keysetCondition([NAME, ID], [null, 'b'], false)).toEqual({
      sql: '(false or ("t"."name" is null and "t"."id" > ?))',
      bindings: ['b'],
    })
  })

  it('binds exactly one value per placeholder, in order (property)', () => {
    const sortKey = fc.record({
      sql: fc.constantFrom('"t"."a"', '"t"."b"'),
      descending: fc.boolean(),
      nullable: fc.boolean(),
    })
    fc.assert(
      fc.property(
        fc.array(fc.tuple(sortKey, fc.option(fc.string({ maxLength: 4 }), { nil: null })), {
          minLength: 1,
          maxLength: 5,
        }),
        fc.boolean(),
        (pairs, backward) => {
          const keys = pairs.map(([k]) => k)
          const values = pairs.map(([, v]) => v)
          const { sql, bindings } = keysetCondition(keys, values, backward)
          expect(sql.split('?').length - 1).toBe(bindings.length)
          for (const binding of bindings) expect(values).toContain(binding)
          expect(sql.startsWith('(')).toBe(true)
        },
      ),
      { numRuns: runs(200) },
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------
// cursor-codec.ts
// ---------------------------------------------------------------------------------------------------------------

const BINDING: CursorBinding = Object.freeze({ model: 'Droplet', sort: 'name,id', filter: '{}', actor: ACTOR })
const SECRET = randomBytes(32)

describe('CursorCodec', () => {
  const codec = new CursorCodec([SECRET])

  it('decodes what it encodes, with the same binding', () => {
    const values = ['2026-01-01 00:00:00.123456+00', null, 'ünïcode ✓', '']
    const cursor = codec.encode(BINDING, values)
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/)
    expect(codec.decode(cursor, BINDING)).toEqual(values)
    expect(codec.decode(cursor, { ...BINDING })).toEqual(values)
    expect(codec.decode(codec.encode(BINDING, []), BINDING)).toEqual([])
  })

  it('round-trips arbitrary key values (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.option(fc.string({ maxLength: 40 }), { nil: null }), { maxLength: 6 }), (values) => {
        expect(codec.decode(codec.encode(BINDING, values), BINDING)).toEqual(values)
      }),
      { numRuns: runs(200) },
    )
  })

  it('refuses a cursor bound to another model, sort, filter or actor', () => {
    const cursor = codec.encode(BINDING, ['web', 'b'])
    const others: CursorBinding[] = [
      { ...BINDING, model: 'User' },
      { ...BINDING, sort: '-name,id' },
      { ...BINDING, filter: '{"name":"web"}' },
      { ...BINDING, actor: '01a21233-143b-7362-b208-a7fc8387e8f8' },
      { ...BINDING, actor: 'system' },
    ]
    for (const other of others) {
      const error = expectInvalidCursor(() => codec.decode(cursor, other))
      expect(error.message).toBe('Invalid cursor: it was altered, or it belongs to another sort, filter or user.')
    }
  })

  it('does not let one field of the binding stand in for another', () => {
    const cursor = codec.encode({ model: 'a', sort: 'b', filter: '', actor: 'c' }, [])
    expectInvalidCursor(() => codec.decode(cursor, { model: 'a', sort: '', filter: 'b', actor: 'c' }))
    expectInvalidCursor(() => codec.decode(cursor, { model: 'ab', sort: '', filter: '', actor: 'c' }))
  })

  it('refuses cursors signed with another secret, and accepts every secret it is given during a rotation', () => {
    const other = new CursorCodec([randomBytes(32)])
    const mine = codec.encode(BINDING, ['x'])
    const theirs = other.encode(BINDING, ['x'])
    expect(theirs).not.toBe(mine)
    expectInvalidCursor(() => codec.decode(theirs, BINDING))
    expectInvalidCursor(() => other.decode(mine, BINDING))
    const rotated = new CursorCodec([randomBytes(32), SECRET])
    expect(rotated.decode(mine, BINDING)).toEqual(['x'])
    const fresh = rotated.encode(BINDING, ['x'])
    expect(fresh).not.toBe(mine)
    expect(rotated.decode(fresh, BINDING)).toEqual(['x'])
    expectInvalidCursor(() => codec.decode(fresh, BINDING))
  })

  it('needs a secret', () => {
    expect(() => new CursorCodec([])).toThrow('CursorCodec needs a secret')
  })

  it('refuses values that are not cursors with the plain message', () => {
    const cursor = codec.encode(BINDING, ['x'])
    const [payload, mac] = cursor.split('.') as [string, string]
    const malformed: unknown[] = [
      undefined,
      null,
      42,
      ['x'],
      '',
      '.',
      payload,
      `.${mac}`,
      `${payload}.`,
      `${payload}=.${mac}`,
      `${payload}.${mac}=`,
      `${payload}.${mac}.${mac}`,
      `${payload} .${mac}`,
      `${'A'.repeat(4_001)}.${mac}`,
      `${cursor}${' '.repeat(4_097 - cursor.length)}`,
    ]
    for (const value of malformed)
      expect(expectInvalidCursor(() => codec.decode(value, BINDING)).message).toBe('Invalid cursor.')
  })

  it('refuses a correctly signed payload that is not a version-1 list of keys', () => {
    // Signed as the codec signs: HMAC-SHA256 over the binding and the payload text, 16 bytes.
    const sign = (payloadJson: string): string => {
      const payload = Buffer.from(payloadJson).toString('base64url')
      const { model, sort, filter, actor } = BINDING
      const mac = createHmac('sha256', SECRET)
        .update(JSON.stringify(['wincloud-cursor', 1, model, sort, filter, actor, payload]))
        .digest()
        .subarray(0, 16)
      return `${payload}.${mac.toString('base64url')}`
    }
    expect(sign('{"v":1,"k":["x"]}')).toBe(codec.encode(BINDING, ['x']))
    for (const json of ['{"v":2,"k":["x"]}', '{"v":1,"k":"x"}', '{"v":1}', 'null', '[1]', '{"v":1,"k":', '"x"']) {
      expect(expectInvalidCursor(() => codec.decode(sign(json), BINDING)).message).toBe('Invalid cursor.')
    }
  })

  it('refuses any single-character change or truncation of a cursor (property)', () => {
    const cursors = [
      codec.encode(BINDING, ['web-1', '01a21233-143b-7362-b208-a7fc8387e8f8']),
      codec.encode(BINDING, [null]),
      codec.encode(BINDING, []),
    ]
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ %'
    fc.assert(
      fc.property(
        fc.constantFrom(...cursors),
        fc.nat(),
        fc.constantFrom(...alphabet),
        fc.nat(),
        (cursor, at, char, cut) => {
          const i = at % cursor.length
          if (cursor[i] !== char) {
            const changed = cursor.slice(0, i) + char + cursor.slice(i + 1)
            expectInvalidCursor(() => codec.decode(changed, BINDING))
          }
          expectInvalidCursor(() => codec.decode(cursor.slice(0, cut % cursor.length), BINDING))
          expectInvalidCursor(() => codec.decode(cursor.slice(1 + (cut % cursor.length)), BINDING))
          expect(codec.decode(cursor, BINDING)).toBeInstanceOf(Array)
        },
      ),
      { numRuns: runs(500) },
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------
// requests.ts
// ---------------------------------------------------------------------------------------------------------------

describe('checkSize', () => {
  it('defaults to 20 and accepts 1 to 100', () => {
    expect(checkSize(undefined, 'limit')).toBe(20)
    expect(checkSize(1, 'limit')).toBe(1)
    expect(checkSize(100, 'limit')).toBe(100)
  })

  it('refuses anything else, naming the field it was given', () => {
    for (const size of [0, 101, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '20', null, true, [20]]) {
      expectInvalid(
        () => checkSize(size, 'page.size'),
        'page.size',
        'page.size must be an integer from 1 to 100.',
        'must be an integer from 1 to 100',
      )
    }
    const error = caught(() => checkSize(0, 'limit')) as ValidationError
    expect(error.details).toEqual([{ field: 'limit', message: 'must be an integer from 1 to 100', keyword: 'range' }])
  })
})

describe('checkOffsetRequest', () => {
  it('reads a page number with the default size and an estimated total', () => {
    expect(checkOffsetRequest({ number: 1 })).toEqual({ number: 1, size: 20, exactTotal: false })
    expect(checkOffsetRequest({ number: 7, size: 50, exactTotal: true })).toEqual({
      number: 7,
      size: 50,
      exactTotal: true,
    })
    expect(checkOffsetRequest({ number: 2, exactTotal: false }).exactTotal).toBe(false)
  })

  it('refuses a missing, non-integer or non-positive page number', () => {
    for (const number of [undefined, 0, -1, 1.5, '1', null]) {
      expectInvalid(
        () => checkOffsetRequest({ number }),
        'page.number',
        'page.number must be a whole number from 1 (and not absurdly deep).',
        'must be an integer from 1 to 500001',
      )
    }
  })

  it('refuses pages deeper than ten million rows, with the bound for the size asked', () => {
    expect(checkOffsetRequest({ number: 500_001 }).number).toBe(500_001)
    expect(checkOffsetRequest({ number: 100_001, size: 100 }).number).toBe(100_001)
    expectInvalid(
      () => checkOffsetRequest({ number: 500_002 }),
      'page.number',
      'page.number must be a whole number from 1 (and not absurdly deep).',
      'must be an integer from 1 to 500001',
    )
    expectInvalid(
      () => checkOffsetRequest({ number: 100_002, size: 100 }),
      'page.number',
      'page.number must be a whole number from 1 (and not absurdly deep).',
      'must be an integer from 1 to 100001',
    )
  })

  it('refuses a bad size or exactTotal', () => {
    expectInvalid(
      () => checkOffsetRequest({ number: 1, size: 0 }),
      'page.size',
      'page.size must be an integer from 1 to 100.',
      'must be an integer from 1 to 100',
    )
    expectInvalid(
      () => checkOffsetRequest({ number: 1, exactTotal: 'yes' }),
      'page.exactTotal',
      'page.exactTotal must be true or false.',
      'must be true or false',
    )
  })

  it('refuses a request that is not an object, and keys it does not know, naming them', () => {
    for (const request of [undefined, null, [], 'page', 3]) {
      expectInvalid(() => checkOffsetRequest(request), 'page', 'page must be an object.', 'must be an object')
    }
    for (const [name, field] of [
      ['offset', 'page.offset'],
      ['after', 'page.after'],
      ['__proto__', 'page.__proto__'],
      ['a b', 'page.(invalid key)'],
      ['x'.repeat(65), 'page.(invalid key)'],
      ['<script>', 'page.(invalid key)'],
    ] as const) {
      const request = JSON.parse(`{"number":1,${JSON.stringify(name)}:1}`) as unknown
      expectInvalid(() => checkOffsetRequest(request), field, `${field} is not a page option.`, 'is not a page option')
    }
  })
})

describe('checkKeysetRequest', () => {
  it('reads a first page, a page after and a page before a cursor', () => {
    expect(checkKeysetRequest({})).toEqual({ size: 20, after: undefined, before: undefined })
    expect(checkKeysetRequest({ size: 5, after: 'c' })).toEqual({ size: 5, after: 'c', before: undefined })
    expect(checkKeysetRequest({ before: 'c' })).toEqual({ size: 20, after: undefined, before: 'c' })
  })

  it('refuses after and before together', () => {
    expectInvalid(
      () => checkKeysetRequest({ after: 'a', before: 'b' }),
      'page',
      'page takes after or before, not both.',
      'takes after or before, not both',
    )
  })

  it('refuses a cursor that is not a string as an invalid cursor', () => {
    for (const request of [{ after: 5 }, { before: null }, { after: ['a'] }]) {
      expect(expectInvalidCursor(() => checkKeysetRequest(request)).message).toBe('Invalid cursor.')
    }
  })

  it('refuses a bad size, a request that is not an object and keys it does not know', () => {
    expectInvalid(
      () => checkKeysetRequest({ size: 101 }),
      'page.size',
      'page.size must be an integer from 1 to 100.',
      'must be an integer from 1 to 100',
    )
    expectInvalid(() => checkKeysetRequest(null), 'page', 'page must be an object.', 'must be an object')
    expectInvalid(
      () => checkKeysetRequest({ number: 1 }),
      'page.number',
      'page.number is not a page option.',
      'is not a page option',
    )
    expectInvalid(
      () => checkKeysetRequest({ 'after cursor': 'x' }),
      'page.(invalid key)',
      'page.(invalid key) is not a page option.',
      'is not a page option',
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------
// offset-total.ts
// ---------------------------------------------------------------------------------------------------------------

interface RecordingSources extends TotalSources {
  readonly calls: string[]
}

/** Counting sources that answer the given numbers and record each call (`countUpTo` with its limit). */
function sources(answers: { count?: number; upTo?: number; estimate?: number } = {}): RecordingSources {
  const calls: string[] = []
  const answer = (name: string, value: number | undefined): Promise<number> => {
    if (value === undefined) throw new Error(`${name} was not expected`)
    return Promise.resolve(value)
  }
  return {
    calls,
    count: () => {
      calls.push('count')
      return answer('count', answers.count)
    },
    countUpTo: (limit) => {
      calls.push(`countUpTo(${limit})`)
      return answer('countUpTo', answers.upTo === undefined ? undefined : Math.min(answers.upTo, limit))
    },
    estimate: () => {
      calls.push('estimate')
      return answer('estimate', answers.estimate)
    },
  }
}

const seen = (offset: number, shown: number, hasNextPage: boolean): OffsetPageSeen => ({ offset, shown, hasNextPage })
const EXACT = { exactTotal: true, estimateAllowed: false }
const OWN = { exactTotal: false, estimateAllowed: false }
const WHOLE = { exactTotal: false, estimateAllowed: true }

describe('chooseOffsetTotal', () => {
  it('needs no count for a last page that shows rows: the total is what the page proves', async () => {
    for (const options of [EXACT, OWN, WHOLE, { exactTotal: true, estimateAllowed: true }]) {
      const s = sources()
      expect(await chooseOffsetTotal(seen(40, 7, false), options, s)).toEqual({
        total: 47,
        totalExact: true,
        totalCapped: false,
      })
      expect(s.calls).toEqual([])
    }
  })

  it('needs no count for an empty first page', async () => {
    for (const options of [EXACT, OWN, WHOLE]) {
      const s = sources()
      expect(await chooseOffsetTotal(seen(0, 0, false), options, s)).toEqual({
        total: 0,
        totalExact: true,
        totalCapped: false,
      })
      expect(s.calls).toEqual([])
    }
  })

  it('counts at most the offset for an empty page past the end, and never more than it', async () => {
    for (const options of [EXACT, OWN, WHOLE]) {
      const s = sources({ upTo: 13 })
      expect(await chooseOffsetTotal(seen(40, 0, false), options, s)).toEqual({
        total: 13,
        totalExact: true,
        totalCapped: false,
      })
      expect(s.calls).toEqual(['countUpTo(40)'])
    }
    // A count that disagrees with the page (more rows than it could have read) is cut to the offset.
    const unbounded: TotalSources = { ...sources(), countUpTo: () => Promise.resolve(99) }
    expect((await chooseOffsetTotal(seen(40, 0, false), OWN, unbounded)).total).toBe(40)
  })

  it('counts every matching row when the total must be exact, never below what the page shows', async () => {
    const s = sources({ count: 1_234_567 })
    expect(await chooseOffsetTotal(seen(20, 20, true), EXACT, s)).toEqual({
      total: 1_234_567,
      totalExact: true,
      totalCapped: false,
    })
    expect(s.calls).toEqual(['count'])
    const stale = sources({ count: 3 })
    expect((await chooseOffsetTotal(seen(20, 20, true), EXACT, stale)).total).toBe(41)
    const withEstimates = sources({ count: 500 })
    await chooseOffsetTotal(seen(0, 20, true), { exactTotal: true, estimateAllowed: true }, withEstimates)
    expect(withEstimates.calls).toEqual(['count'])
  })

  it('counts up to the cap for a scope limited to its own rows: exact below it', async () => {
    const s = sources({ upTo: 537 })
    expect(await chooseOffsetTotal(seen(0, 20, true), OWN, s)).toEqual({
      total: 537,
      totalExact: true,
      totalCapped: false,
    })
    expect(s.calls).toEqual([`countUpTo(${TOTAL_COUNT_CAP + 1})`])
    const atCap = sources({ upTo: TOTAL_COUNT_CAP })
    expect(await chooseOffsetTotal(seen(0, 20, true), OWN, atCap)).toEqual({
      total: TOTAL_COUNT_CAP,
      totalExact: true,
      totalCapped: false,
    })
    const stale = sources({ upTo: 2 })
    expect(await chooseOffsetTotal(seen(20, 20, true), OWN, stale)).toEqual({
      total: 41,
      totalExact: true,
      totalCapped: false,
    })
  })

  it('reports the cap, not an estimate, when more rows than the cap match', async () => {
    expect(TOTAL_COUNT_CAP).toBe(10_000)
    const s = sources({ upTo: 1_000_000, estimate: 1_000_000 })
    expect(await chooseOffsetTotal(seen(0, 20, true), OWN, s)).toEqual({
      total: TOTAL_COUNT_CAP,
      totalExact: false,
      totalCapped: true,
    })
    expect(s.calls).toEqual(['countUpTo(10001)'])
  })

  it('counts up to the row after a page deeper than the cap', async () => {
    const deep = sources({ upTo: 1_000_000 })
    expect(await chooseOffsetTotal(seen(20_000, 20, true), OWN, deep)).toEqual({
      total: 20_021,
      totalExact: false,
      totalCapped: true,
    })
    expect(deep.calls).toEqual(['countUpTo(20022)'])
    const justPast = sources({ upTo: 20_021 })
    expect(await chooseOffsetTotal(seen(20_000, 20, true), OWN, justPast)).toEqual({
      total: 20_021,
      totalExact: true,
      totalCapped: false,
    })
  })

  it("gives a scope that sees the whole table the planner's estimate, rounded, never below what the page shows", async () => {
    const s = sources({ estimate: 1234.6 })
    expect(await chooseOffsetTotal(seen(0, 20, true), WHOLE, s)).toEqual({
      total: 1235,
      totalExact: false,
      totalCapped: false,
    })
    expect(s.calls).toEqual(['estimate'])
    expect((await chooseOffsetTotal(seen(100, 20, true), WHOLE, sources({ estimate: 5 }))).total).toBe(121)
    for (const estimate of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -7]) {
      expect(await chooseOffsetTotal(seen(0, 20, true), WHOLE, sources({ estimate }))).toEqual({
        total: 21,
        totalExact: false,
        totalCapped: false,
      })
    }
  })

  it('never asks for an estimate unless allowed, and never totals below what the page shows (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: 50_000 }),
        fc.nat({ max: 100 }),
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        fc.nat({ max: 100_000 }),
        fc.double({ noNaN: false }),
        async (offset, shown, more, exactTotal, estimateAllowed, rows, estimate) => {
          const hasNextPage = shown > 0 && more
          const s = sources({ count: rows, upTo: rows, estimate })
          const chosen = await chooseOffsetTotal(seen(offset, shown, hasNextPage), { exactTotal, estimateAllowed }, s)
          if (!estimateAllowed || exactTotal) expect(s.calls).not.toContain('estimate')
          if (shown > 0 && !hasNextPage) expect(s.calls).toEqual([])
          expect(s.calls.length).toBeLessThanOrEqual(1)
          expect(Number.isInteger(chosen.total)).toBe(true)
          if (shown > 0) expect(chosen.total).toBeGreaterThanOrEqual(offset + shown + (hasNextPage ? 1 : 0))
          else expect(chosen.total).toBeLessThanOrEqual(offset)
          expect(chosen.totalExact && chosen.totalCapped).toBe(false)
          if (chosen.totalCapped) expect(estimateAllowed || exactTotal).toBe(false)
        },
      ),
      { numRuns: runs(300) },
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------
// offset-page.ts and keyset-page.ts over a fake page source
// ---------------------------------------------------------------------------------------------------------------

interface Row {
  readonly id: string
  readonly name: string
}

interface Item {
  readonly item: string
}

interface Fake extends PageSource<Item> {
  readonly calls: { sql: string; bindings: unknown[] }[]
}

const SORT: CompiledSort = { key: 'name,id', sql: '"t"."name" asc, "t"."id" asc', keys: [NAME, ID] }
const OWN_WHERE = { where: ' where "t"."user_id" = ?', bindings: [ACTOR] as readonly unknown[] }
const ALL_ROWS = { where: '', bindings: [] as readonly unknown[] }

const ROWS: readonly Row[] = ['e', 'c', 'a', 'd', 'b'].map((name, i) => ({ id: `id-${i}`, name }))
const compareRows = (x: readonly string[], y: readonly string[]): number =>
  x[0]! < y[0]! ? -1 : x[0]! > y[0]! ? 1 : x[1]! < y[1]! ? -1 : x[1]! > y[1]! ? 1 : 0

/**
 * A page source over an in-memory table sorted by (name, id). It records every statement and answers the page query
 * (limit and offset), the bounded count, the planner's estimate and the keyset query (rows after or before the
 * cursor values it is bound, with their key columns as text).
 */
function fakeSource(rows: readonly Row[], scope: { where: string; bindings: readonly unknown[] }, plan = 0): Fake {
  const calls: { sql: string; bindings: unknown[] }[] = []
  const sorted = [...rows].sort((x, y) => compareRows([x.name, x.id], [y.name, y.id]))
  const n = scope.bindings.length
  const answer = (sql: string, bindings: readonly unknown[]): Record<string, unknown>[] => {
    if (sql.startsWith('explain ')) return [{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': plan } }] }]
    if (sql.startsWith('select count(*)')) return [{ count: String(Math.min(sorted.length, bindings[n] as number)) }]
    if (sql.includes('limit ? offset ?')) {
      const [limit, offset] = bindings.slice(n) as [number, number]
      return sorted.slice(offset, offset + limit).map((row) => ({ ...row }))
    }
    const limit = bindings.at(-1) as number
    const cursor = bindings.slice(n, -1) as string[]
    const backward = sql.includes('order by "t"."name" desc, "t"."id" desc')
    let found = sorted.filter((row) => {
      if (cursor.length === 0) return true
      const c = compareRows([row.name, row.id], cursor)
      return backward ? c < 0 : c > 0
    })
    if (backward) found = found.reverse()
    return found.slice(0, limit).map((row) => ({ ...row, [keyColumn(0)]: row.name, [keyColumn(1)]: row.id }))
  }
  return {
    table: '"t"',
    where: scope.where,
    bindings: scope.bindings,
    sort: SORT,
    calls,
    run<R>(sql: string, bindings: readonly unknown[]): Promise<{ rows: R[] }> {
      calls.push({ sql, bindings: [...bindings] })
      return Promise.resolve({ rows: answer(sql, bindings) as R[] })
    },
    item: (row) => {
      expect(Object.keys(row)).toContain('id')
      return { item: `${row.name as string}/${row.id as string}` }
    },
  }
}

const items = (...names: string[]): Item[] =>
  names.map((name) => ({ item: `${name}/${ROWS.find((row) => row.name === name)!.id}` }))

const PAGE_SQL = 'select "t".* from "t" where "t"."user_id" = ? order by "t"."name" asc, "t"."id" asc limit ? offset ?'
const COUNT_SQL = 'select count(*)::int8 as count from (select 1 from "t" where "t"."user_id" = ? limit ?) as counted'

const noCount = (): Promise<number> => Promise.reject(new Error('count was not expected'))

describe('offsetPage', () => {
  it('reads one row more than the page and counts a limited scope up to the cap', async () => {
    const source = fakeSource(ROWS, OWN_WHERE)
    const page = await offsetPage(source, { number: 2, size: 2 }, { estimateAllowed: false, count: noCount })
    expect(page).toEqual({
      items: items('c', 'd'),
      page: 2,
      size: 2,
      total: 5,
      totalExact: true,
      totalCapped: false,
      totalPages: 3,
      hasNextPage: true,
    })
    expect(source.calls).toEqual([
      { sql: PAGE_SQL, bindings: [ACTOR, 3, 2] },
      { sql: COUNT_SQL, bindings: [ACTOR, TOTAL_COUNT_CAP + 1] },
    ])
  })

  it('runs only the page query for a last page', async () => {
    const source = fakeSource(ROWS, OWN_WHERE)
    const page = await offsetPage(source, { number: 3, size: 2 }, { estimateAllowed: true, count: noCount })
    expect(page).toMatchObject({ items: items('e'), total: 5, totalExact: true, totalPages: 3, hasNextPage: false })
    expect(source.calls).toEqual([{ sql: PAGE_SQL, bindings: [ACTOR, 3, 4] }])
  })

  it("estimates the total of a scope that sees the whole table, from the planner's plan of the same read", async () => {
    const source = fakeSource(ROWS, ALL_ROWS, 4_321)
    const page = await offsetPage(source, { number: 1, size: 2 }, { estimateAllowed: true, count: noCount })
    expect(page).toEqual({
      items: items('a', 'b'),
      page: 1,
      size: 2,
      total: 4_321,
      totalExact: false,
      totalCapped: false,
      totalPages: 2_161,
      hasNextPage: true,
    })
    expect(source.calls).toEqual([
      { sql: 'select "t".* from "t" order by "t"."name" asc, "t"."id" asc limit ? offset ?', bindings: [3, 0] },
      { sql: 'explain (format json) select 1 from "t"', bindings: [] },
    ])
  })

  it("uses the repository's count when the total must be exact", async () => {
    const source = fakeSource(ROWS, OWN_WHERE)
    let counted = 0
    const count = (): Promise<number> => {
      counted += 1
      return Promise.resolve(5)
    }
    const page = await offsetPage(source, { number: 1, size: 2, exactTotal: true }, { estimateAllowed: true, count })
    expect(page).toMatchObject({ items: items('a', 'b'), total: 5, totalExact: true, totalPages: 3 })
    expect(counted).toBe(1)
    expect(source.calls).toEqual([{ sql: PAGE_SQL, bindings: [ACTOR, 3, 0] }])
  })

  it('counts what lies before an empty page past the end, and an empty first page needs no count', async () => {
    const source = fakeSource(ROWS, OWN_WHERE)
    const past = await offsetPage(source, { number: 10, size: 2 }, { estimateAllowed: true, count: noCount })
    expect(past).toEqual({
      items: [],
      page: 10,
      size: 2,
      total: 5,
      totalExact: true,
      totalCapped: false,
      totalPages: 3,
      hasNextPage: false,
    })
    expect(source.calls).toEqual([
      { sql: PAGE_SQL, bindings: [ACTOR, 3, 18] },
      { sql: COUNT_SQL, bindings: [ACTOR, 18] },
    ])
    const empty = fakeSource([], OWN_WHERE)
    const first = await offsetPage(empty, { number: 1 }, { estimateAllowed: true, count: noCount })
    expect(first).toMatchObject({ items: [], size: 20, total: 0, totalExact: true, totalPages: 0, hasNextPage: false })
    expect(empty.calls).toEqual([{ sql: PAGE_SQL, bindings: [ACTOR, 21, 0] }])
  })

  it('refuses a bad request before running anything', async () => {
    const source = fakeSource(ROWS, OWN_WHERE)
    for (const request of [{ number: 0 }, { number: 1, size: 101 }, { number: 1, offset: 5 }, undefined]) {
      const error = await rejection(offsetPage(source, request, { estimateAllowed: true, count: noCount }))
      expect(error).toBeInstanceOf(ValidationError)
    }
    expect(source.calls).toEqual([])
  })
})

const KEY_SELECT = '("t"."name")::text as "__wincloud_k0", ("t"."id")::text as "__wincloud_k1"'
const keysetSql = (where: string, order: 'asc' | 'desc'): string =>
  `select "t".*, ${KEY_SELECT} from "t"${where} order by "t"."name" ${order}, "t"."id" ${order} limit ?`

describe('keysetPage', () => {
  const codec = new CursorCodec([SECRET])
  const cursorOf = (name: string): string => {
    const row = ROWS.find((r) => r.name === name)!
    return codec.encode(BINDING, [row.name, row.id])
  }

  it('reads a first page with its key columns, one row more than the page', async () => {
    const source = fakeSource(ROWS, OWN_WHERE)
    const page = await keysetPage(source, { size: 2 }, codec, BINDING)
    expect(page).toEqual({
      items: items('a', 'b'),
      pageInfo: { hasNextPage: true, hasPreviousPage: false, startCursor: cursorOf('a'), endCursor: cursorOf('b') },
    })
    expect(source.calls).toEqual([{ sql: keysetSql(' where "t"."user_id" = ?', 'asc'), bindings: [ACTOR, 3] }])
    expect(codec.decode(page.pageInfo.endCursor, BINDING)).toEqual(['b', 'id-4'])
  })

  it('reads the page after a cursor: the scope first, then the cursor values, then the limit', async () => {
    const source = fakeSource(ROWS, OWN_WHERE)
    const page = await keysetPage(source, { size: 2, after: cursorOf('b') }, codec, BINDING)
    expect(page).toEqual({
      items: items('c', 'd'),
      pageInfo: { hasNextPage: true, hasPreviousPage: true, startCursor: cursorOf('c'), endCursor: cursorOf('d') },
    })
    expect(source.calls).toEqual([
      {
        sql: keysetSql(' where "t"."user_id" = ? and ("t"."name", "t"."id") > (?, ?)', 'asc'),
        bindings: [ACTOR, 'b', 'id-4', 3],
      },
    ])
    const last = await keysetPage(source, { size: 2, after: cursorOf('d') }, codec, BINDING)
    expect(last).toEqual({
      items: items('e'),
      pageInfo: { hasNextPage: false, hasPreviousPage: true, startCursor: cursorOf('e'), endCursor: cursorOf('e') },
    })
  })

  it('reads the page before a cursor in reverse and gives its rows in sort order', async () => {
    const source = fakeSource(ROWS, ALL_ROWS)
    const page = await keysetPage(source, { size: 2, before: cursorOf('e') }, codec, BINDING)
    expect(page).toEqual({
      items: items('c', 'd'),
      pageInfo: { hasNextPage: true, hasPreviousPage: true, startCursor: cursorOf('c'), endCursor: cursorOf('d') },
    })
    expect(source.calls).toEqual([
      { sql: keysetSql(' where ("t"."name", "t"."id") < (?, ?)', 'desc'), bindings: ['e', 'id-0', 3] },
    ])
    const first = await keysetPage(source, { size: 2, before: cursorOf('c') }, codec, BINDING)
    expect(first).toEqual({
      items: items('a', 'b'),
      pageInfo: { hasNextPage: true, hasPreviousPage: false, startCursor: cursorOf('a'), endCursor: cursorOf('b') },
    })
  })

  it('reads a whole-table first page without a where clause, and an empty page has no cursors', async () => {
    const source = fakeSource([], ALL_ROWS)
    expect(await keysetPage(source, {}, codec, BINDING)).toEqual({
      items: [],
      pageInfo: { hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null },
    })
    expect(source.calls).toEqual([{ sql: keysetSql('', 'asc'), bindings: [21] }])
  })

  it('refuses a cursor of another binding, or one whose values do not fit the sort, before running anything', async () => {
    const source = fakeSource(ROWS, OWN_WHERE)
    const refused = [
      codec.encode({ ...BINDING, actor: '01a21233-143b-7362-b208-a7fc8387e8f8' }, ['b', 'id-4']),
      codec.encode({ ...BINDING, filter: '{"name":"b"}' }, ['b', 'id-4']),
      new CursorCodec([randomBytes(32)]).encode(BINDING, ['b', 'id-4']),
      codec.encode(BINDING, ['b']),
      codec.encode(BINDING, ['b', 'id-4', 'x']),
      codec.encode(BINDING, ['b', 4]),
      codec.encode(BINDING, [{}, 'id-4']),
      `${cursorOf('b')}x`,
    ]
    for (const cursor of refused) {
      for (const request of [{ after: cursor }, { before: cursor }]) {
        expect(await rejection(keysetPage(source, request, codec, BINDING))).toBeInstanceOf(InvalidCursorError)
      }
    }
    expect(await rejection(keysetPage(source, { after: 'x', before: 'y' }, codec, BINDING))).toBeInstanceOf(
      ValidationError,
    )
    expect(source.calls).toEqual([])
  })
})
