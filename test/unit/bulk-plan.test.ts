/**
 * The plans of bulk operations without a database: ids in lock order (`planIds`), the row groups of
 * `bulkUpdateEach` (`planRowGroups`), the bulk options and the chunks. Running the chunks in transactions
 * (`inTransactions`) needs a database and is tested with the integration suite.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CHUNK, checkBulkOptions, chunks } from '../../src/bulk/bulk.js'
import { planIds, planRowGroups, type CheckedPatch } from '../../src/bulk/plan.js'
import { ValidationError } from '../../src/errors/index.js'
import { expectInvalid } from '../helpers/errors.js'
import { runs } from '../helpers/property.js'

const A = '01a21233-1405-73d4-acaf-6da954af9e1d'
const B = '01a21233-143b-7362-b208-a7fc8387e8f8'
const C = '01a21233-2000-7000-8000-000000000001'
const D = '01a21233-2000-7000-8000-000000000002'

// ---------------------------------------------------------------------------------------------------------------
// planIds
// ---------------------------------------------------------------------------------------------------------------

describe('planIds', () => {
  it('deduplicates ids case-insensitively and sorts them in lower case', () => {
    expect(planIds([D, B.toUpperCase(), A, B, D.toUpperCase(), C])).toEqual({ sorted: [A, B, C, D], notFound: [] })
    expect(planIds([])).toEqual({ sorted: [], notFound: [] })
  })

  it('reports malformed ids as not found, as strings, in the order given and with repeats', () => {
    const ids = [A, 'not-an-id', 42, null, undefined, `${A} `, `{${B}}`, A.replace(/-/g, ''), 'not-an-id', true]
    expect(planIds(ids)).toEqual({
      sorted: [A],
      notFound: ['not-an-id', '42', 'null', 'undefined', `${A} `, `{${B}}`, A.replace(/-/g, ''), 'not-an-id', 'true'],
    })
  })

  it('returns a sorted, duplicate-free list, and puts every input in exactly one of its two outputs (property)', () => {
    const id = fc.oneof(
      fc.mixedCase(fc.uuid()),
      fc.constantFrom(A, B.toUpperCase(), C),
      fc.string({ maxLength: 40 }),
      fc.integer(),
      fc.constantFrom(null, undefined, true),
    )
    fc.assert(
      fc.property(fc.array(id, { maxLength: 60 }), (ids) => {
        const { sorted, notFound } = planIds(ids)
        expect(new Set(sorted).size).toBe(sorted.length)
        expect([...sorted].sort()).toEqual(sorted)
        for (let i = 1; i < sorted.length; i++) expect(sorted[i - 1]! < sorted[i]!).toBe(true)
        const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
        const wellFormed = ids.filter((value): value is string => typeof value === 'string' && uuid.test(value))
        const malformed = ids.filter((value) => !(typeof value === 'string' && uuid.test(value)))
        expect(new Set(sorted)).toEqual(new Set(wellFormed.map((value) => value.toLowerCase())))
        expect(notFound).toEqual(malformed.map((value) => String(value)))
        for (const value of sorted) expect(value).toBe(value.toLowerCase())
        for (const value of ids) {
          const inSorted = typeof value === 'string' && sorted.includes(value.toLowerCase())
          const inNotFound = notFound.includes(String(value))
          expect(inSorted !== inNotFound).toBe(true)
        }
      }),
      { numRuns: runs(300) },
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------
// planRowGroups
// ---------------------------------------------------------------------------------------------------------------

const snake = (name: string): string => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)

/** A check that turns a patch into columns (snake_case) and values, then updated_at, and records its calls. */
function recordingCheck(): {
  calls: { patch: Record<string, unknown>; id: string }[]
  check: (patch: Record<string, unknown>, id: string) => CheckedPatch
} {
  const calls: { patch: Record<string, unknown>; id: string }[] = []
  const check = (patch: Record<string, unknown>, id: string): CheckedPatch => {
    calls.push({ patch, id })
    const columns = [...Object.keys(patch).map(snake), 'updated_at']
    return { columns, values: [...Object.values(patch), `checked for ${id}`] }
  }
  return { calls, check }
}

const never = (): boolean => false

describe('planRowGroups', () => {
  it('groups rows by the columns they change, each group in id order, and reports malformed ids', () => {
    const { calls, check } = recordingCheck()
    const plan = planRowGroups(
      [
        { id: D, status: 'stopped' },
        { id: B.toUpperCase(), name: 'web-2' },
        { id: A, status: 'stopped' },
        { id: 'droplet-7', status: 'stopped' },
        { id: C, status: 'active' },
        { status: 'active' },
      ],
      check,
      never,
    )
    expect(plan.notFound).toEqual(['droplet-7', 'undefined'])
    expect([...plan.ids]).toEqual([D, B, A, C])
    expect(plan.groups.map((g) => g.columns)).toEqual([
      ['status', 'updated_at'],
      ['name', 'updated_at'],
    ])
    expect(plan.groups[0]!.rows.map((row) => [row.id, row.values[0]])).toEqual([
      [A, 'stopped'],
      [C, 'active'],
      [D, 'stopped'],
    ])
    expect(plan.groups[1]!.rows.map((row) => [row.id, row.values[0]])).toEqual([[B, 'web-2']])
    // One check per distinct patch, with the id (lower case) of the first row that has it and without the id.
    expect(calls).toEqual([
      { patch: { status: 'stopped' }, id: D },
      { patch: { name: 'web-2' }, id: B },
      { patch: { status: 'active' }, id: C },
    ])
  })

  it('checks a shared patch once, however many rows have it', () => {
    const { calls, check } = recordingCheck()
    const ids = [D, C, B, A]
    const plan = planRowGroups(
      ids.map((id) => ({ id, status: 'stopped', size: 's-1' })),
      check,
      never,
    )
    expect(calls).toHaveLength(1)
    expect(plan.groups).toHaveLength(1)
    expect(plan.groups[0]!.columns).toEqual(['status', 'size', 'updated_at'])
    expect(plan.groups[0]!.rows.map((row) => row.id)).toEqual([A, B, C, D])
    for (const row of plan.groups[0]!.rows) expect(row.values.slice(0, 2)).toEqual(['stopped', 's-1'])
  })

  it('shares a check only between patches that are equal, never between patches that print alike', () => {
    // Each pair prints as the same JSON; the second patch of each must be checked for its own row.
    const pairs: [unknown, unknown][] = [
      [null, Number.NaN],
      [null, Number.POSITIVE_INFINITY],
      ['2026-01-01T00:00:00.000Z', new Date('2026-01-01T00:00:00.000Z')],
      [1, 1n],
    ]
    for (const [first, second] of pairs) {
      const { calls, check } = recordingCheck()
      planRowGroups(
        [
          { id: A, name: first },
          { id: B, name: second },
        ],
        check,
        never,
      )
      expect(calls.map((call) => call.id)).toEqual([A, B])
    }
    // An undefined value is not an empty patch.
    const { calls, check } = recordingCheck()
    planRowGroups([{ id: A, name: undefined }, { id: B }], check, never)
    expect(calls.map((call) => call.id)).toEqual([A, B])
  })

  it('reports a malformed id that cannot be turned into text, instead of throwing', () => {
    const odd = Object.create(null) as object
    expect(planIds([odd]).notFound).toEqual(['[object Object]'])
    const { check } = recordingCheck()
    expect(planRowGroups([{ id: odd, name: 'x' }], check, never).notFound).toEqual(['[object Object]'])
  })

  it('checks a patch for each of its rows when perRow says it depends on the row', () => {
    const { calls, check } = recordingCheck()
    const perRowCalls: Record<string, unknown>[] = []
    const perRow = (patch: Record<string, unknown>): boolean => {
      perRowCalls.push(patch)
      return 'adminPassword' in patch
    }
    const plan = planRowGroups(
      [
        { id: A, adminPassword: 'secret' },
        { id: B, adminPassword: 'secret' },
        { id: C, status: 'stopped' },
        { id: D, status: 'stopped' },
      ],
      check,
      perRow,
    )
    expect(perRowCalls).toEqual([
      { adminPassword: 'secret' },
      { adminPassword: 'secret' },
      { status: 'stopped' },
      { status: 'stopped' },
    ])
    expect(calls.map((call) => call.id)).toEqual([A, B, C])
    const [secrets, statuses] = plan.groups
    expect(secrets!.columns).toEqual(['admin_password', 'updated_at'])
    expect(secrets!.rows.map((row) => row.values[0])).toEqual(['secret', 'secret'])
    expect(statuses!.rows.map((row) => row.id)).toEqual([C, D])
  })

  it('gives every row one updated_at value for the whole call, and keeps the other values as checked', () => {
    const { check } = recordingCheck()
    const before = Date.now()
    const plan = planRowGroups(
      [
        { id: B, status: 'stopped' },
        { id: A, name: 'x' },
        { id: C, adminPassword: 'p' },
      ],
      check,
      (patch) => 'adminPassword' in patch,
    )
    const stamps = plan.groups.flatMap((group) => group.rows.map((row) => row.values.at(-1)))
    expect(stamps).toHaveLength(3)
    expect(stamps[0]).toBeInstanceOf(Date)
    for (const stamp of stamps) expect(stamp).toBe(stamps[0])
    const time = (stamps[0] as Date).getTime()
    expect(time).toBeGreaterThanOrEqual(before)
    expect(time).toBeLessThanOrEqual(Date.now())
    expect(plan.groups.map((group) => group.rows[0]!.values[0])).toEqual(['stopped', 'x', 'p'])
  })

  it('replaces updated_at wherever the check puts it, and only there', () => {
    const check = (): CheckedPatch => ({ columns: ['updated_at', 'name'], values: ['then', 'updated_at'] })
    const plan = planRowGroups([{ id: A, name: 'updated_at' }], check, never)
    const [stamp, name] = plan.groups[0]!.rows[0]!.values
    expect(stamp).toBeInstanceOf(Date)
    expect(name).toBe('updated_at')
  })

  it('refuses an id that repeats, in any case, naming the row', () => {
    const { check } = recordingCheck()
    expectInvalid(
      () =>
        planRowGroups(
          [
            { id: A, status: 'a' },
            { id: B, status: 'b' },
            { id: A.toUpperCase(), status: 'c' },
          ],
          check,
          never,
        ),
      'rows[2].id',
      'rows[2] repeats an id.',
      'repeats an id',
    )
    // Malformed ids are not found, however often they repeat.
    expect(planRowGroups([{ id: 'x' }, { id: 'x' }], check, never).notFound).toEqual(['x', 'x'])
  })

  it('refuses rows that are not a list, and a row that is not an object, naming it', () => {
    const { calls, check } = recordingCheck()
    for (const rows of ['rows', null, undefined, { 0: { id: A } }, 3]) {
      expectInvalid(
        () => planRowGroups(rows as unknown as readonly unknown[], check, never),
        'rows',
        'bulkUpdateEach needs a list of rows.',
        'must be a list',
      )
    }
    for (const row of [null, [A], 'row', 7, undefined]) {
      expectInvalid(
        () => planRowGroups([{ id: A, status: 'a' }, row], check, never),
        'rows[1]',
        'rows[1] must be an object with an id.',
        'must be an object',
      )
    }
    expect(calls.every((call) => call.id === A)).toBe(true)
  })

  it('lets an error of the check through', () => {
    const refuse = (): CheckedPatch => {
      throw new ValidationError('A bulk patch must be a non-empty object.', [
        { field: 'patch', message: 'is required' },
      ])
    }
    expectInvalid(
      () => planRowGroups([{ id: A }], refuse, never),
      'patch',
      'A bulk patch must be a non-empty object.',
      'is required',
    )
  })

  it('plans nothing for no rows', () => {
    const { calls, check } = recordingCheck()
    const plan = planRowGroups([], check, never)
    expect(plan.groups).toEqual([])
    expect([...plan.ids]).toEqual([])
    expect(plan.notFound).toEqual([])
    expect(calls).toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------------------------
// checkBulkOptions and chunks
// ---------------------------------------------------------------------------------------------------------------

describe('checkBulkOptions', () => {
  it('defaults to chunks of 5,000 in one transaction', () => {
    expect(CHUNK).toEqual({ default: 5_000, max: 10_000 })
    expect(checkBulkOptions(undefined)).toStrictEqual({ chunkSize: 5_000, transaction: 'all' })
    expect(checkBulkOptions({})).toStrictEqual({ chunkSize: 5_000, transaction: 'all' })
    expect(checkBulkOptions({ chunkSize: undefined, onProgress: undefined })).toStrictEqual({
      chunkSize: 5_000,
      transaction: 'all',
    })
  })

  it('accepts chunk sizes from 1 to 10,000, a transaction per chunk and a progress callback', () => {
    const onProgress = (): void => {}
    expect(checkBulkOptions({ chunkSize: 1, transaction: 'chunk' })).toStrictEqual({
      chunkSize: 1,
      transaction: 'chunk',
    })
    const checked = checkBulkOptions({ chunkSize: 10_000, onProgress })
    expect(checked).toStrictEqual({ chunkSize: 10_000, transaction: 'all', onProgress })
    expect(checked.onProgress).toBe(onProgress)
  })

  it('refuses options that are not an object, and unknown options', () => {
    for (const options of [null, [], 'all', 5_000]) {
      expectInvalid(() => checkBulkOptions(options), 'options', 'Bulk options must be an object.', 'must be an object')
    }
    expectInvalid(
      () => checkBulkOptions({ chunkSize: 10, chunk: 10 }),
      'options',
      'Unknown bulk option.',
      'has an unknown option',
    )
  })

  it('refuses a chunk size out of range or not an integer', () => {
    for (const chunkSize of [0, -1, 10_001, 2.5, Number.NaN, Number.POSITIVE_INFINITY, '100', null]) {
      expectInvalid(
        () => checkBulkOptions({ chunkSize }),
        'chunkSize',
        'chunkSize must be an integer from 1 to 10000.',
        'must be an integer from 1 to 10000',
      )
    }
  })

  it('refuses a transaction mode other than all or chunk, and a progress callback that is not a function', () => {
    for (const transaction of ['none', 'ALL', null, true]) {
      expectInvalid(
        () => checkBulkOptions({ transaction }),
        'transaction',
        "transaction must be 'all' or 'chunk'.",
        "must be 'all' or 'chunk'",
      )
    }
    expectInvalid(
      () => checkBulkOptions({ onProgress: 'log' }),
      'onProgress',
      'onProgress must be a function.',
      'must be a function',
    )
  })
})

describe('chunks', () => {
  it('splits a list into chunks of at most the size, in order', () => {
    expect([...chunks([1, 2, 3, 4, 5], 2)]).toEqual([[1, 2], [3, 4], [5]])
    expect([...chunks([1, 2, 3, 4], 2)]).toEqual([
      [1, 2],
      [3, 4],
    ])
    expect([...chunks([1, 2, 3], 10)]).toEqual([[1, 2, 3]])
    expect([...chunks([1, 2, 3], 1)]).toEqual([[1], [2], [3]])
    expect([...chunks([], 5)]).toEqual([])
  })

  it('yields copies, and yields them lazily', () => {
    const items = ['a', 'b', 'c']
    const iterator = chunks(items, 2)
    const first = iterator.next()
    expect(first).toEqual({ value: ['a', 'b'], done: false })
    const chunk: string[] = first.done === true ? [] : first.value
    chunk.push('x')
    expect(items).toEqual(['a', 'b', 'c'])
    expect(iterator.next()).toEqual({ value: ['c'], done: false })
    expect(iterator.next().done).toBe(true)
  })

  it('keeps every item once, in order, in chunks of the size but the last (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer(), { maxLength: 100 }), fc.integer({ min: 1, max: 30 }), (items, size) => {
        const parts = [...chunks(items, size)]
        expect(parts.flat()).toEqual(items)
        expect(parts).toHaveLength(Math.ceil(items.length / size))
        parts.forEach((part, i) => {
          if (i < parts.length - 1) expect(part).toHaveLength(size)
          else expect(part.length).toBeGreaterThanOrEqual(1)
        })
      }),
      { numRuns: runs(100) },
    )
  })
})
