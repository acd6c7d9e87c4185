import { describe, expect, it } from 'vitest'
import { BoundedMap, ENTRY_OVERHEAD_BYTES, estimateBytes } from '../../src/internal/bounded-map.js'

const entryBytes = (key: string, value: string): number =>
  ENTRY_OVERHEAD_BYTES + estimateBytes(key) + estimateBytes(value)

describe('BoundedMap', () => {
  it('keeps at most maxEntries, dropping the least recently used one at a time', () => {
    const map = new BoundedMap<string, number>({ maxEntries: 3, maxBytes: 1_000_000 })
    map.set('a', 1)
    map.set('b', 2)
    map.set('c', 3)
    expect(map.get('a')).toBe(1) // a is now the newest
    map.set('d', 4)
    expect([...map.keys()]).toEqual(['c', 'a', 'd'])
    expect(map.has('b')).toBe(false)
    expect(map.size).toBe(3)
    expect(map.evictions).toBe(1)
  })

  it('in fifo order, get does not refresh an entry', () => {
    const map = new BoundedMap<string, number>({ maxEntries: 2, maxBytes: 1_000_000, order: 'fifo' })
    map.set('a', 1)
    map.set('b', 2)
    map.get('a')
    map.set('c', 3)
    expect([...map.keys()]).toEqual(['b', 'c'])
  })

  it('peek leaves the order alone', () => {
    const map = new BoundedMap<string, number>({ maxEntries: 2, maxBytes: 1_000_000 })
    map.set('a', 1)
    map.set('b', 2)
    expect(map.peek('a')).toBe(1)
    map.set('c', 3)
    expect([...map.keys()]).toEqual(['b', 'c'])
  })

  it('keeps its estimated bytes under maxBytes, evicting only as many old entries as needed', () => {
    const value = 'v'.repeat(100)
    const one = entryBytes('k00', value)
    const map = new BoundedMap<string, string>({ maxEntries: 1_000, maxBytes: one * 10, maxEntryBytes: one * 10 })
    for (let i = 0; i < 100; i += 1) {
      map.set(`k${String(i).padStart(2, '0')}`, value)
      expect(map.bytes).toBeLessThanOrEqual(map.maxBytes)
    }
    expect(map.size).toBe(10)
    expect([...map.keys()]).toEqual(Array.from({ length: 10 }, (_, i) => `k${90 + i}`))
    expect(map.bytes).toBe(one * 10)
    // A larger entry pushes out exactly the oldest entries it needs room for.
    map.set('big', 'v'.repeat(250)) // as large as two old entries, less the size of its key
    expect(map.size).toBe(9)
    expect(map.has('k92')).toBe(true)
    expect(map.has('k91')).toBe(false)
  })

  it('does not store an entry larger than maxEntryBytes, and keeps the others', () => {
    const map = new BoundedMap<string, string>({ maxEntries: 10, maxBytes: 10_000, maxEntryBytes: 1_000 })
    map.set('a', 'x')
    expect(map.set('huge', 'x'.repeat(5_000))).toBe(false)
    expect(map.has('huge')).toBe(false)
    expect([...map.keys()]).toEqual(['a'])
    // Replacing a value with one too large drops the key rather than keep a stale value.
    expect(map.set('a', 'x'.repeat(5_000))).toBe(false)
    expect(map.has('a')).toBe(false)
    expect(map.bytes).toBe(0)
  })

  it('maxEntryBytes defaults to an eighth of maxBytes', () => {
    const map = new BoundedMap<string, string>({ maxEntries: 10, maxBytes: 8_000 })
    expect(map.maxEntryBytes).toBe(1_000)
  })

  it('accounts for replaced and deleted entries', () => {
    const map = new BoundedMap<string, string>({ maxEntries: 10, maxBytes: 100_000 })
    map.set('a', 'x'.repeat(10))
    map.set('a', 'x'.repeat(20))
    expect(map.bytes).toBe(entryBytes('a', 'x'.repeat(20)))
    expect(map.delete('a')).toBe(true)
    expect(map.delete('a')).toBe(false)
    expect(map.bytes).toBe(0)
    map.set('b', 'y')
    map.clear()
    expect(map.size).toBe(0)
    expect(map.bytes).toBe(0)
  })

  it('uses a custom sizeOf', () => {
    const map = new BoundedMap<string, { n: number }>({
      maxEntries: 100,
      maxBytes: 1_000,
      maxEntryBytes: 1_000,
      sizeOf: () => 100,
    })
    for (let i = 0; i < 50; i += 1) map.set(String(i), { n: i })
    expect(map.size).toBe(Math.floor(1_000 / (100 + ENTRY_OVERHEAD_BYTES)))
  })

  it('iterates oldest first', () => {
    const map = new BoundedMap<string, number>({ maxEntries: 10, maxBytes: 100_000 })
    map.set('a', 1)
    map.set('b', 2)
    expect([...map]).toEqual([
      ['a', 1],
      ['b', 2],
    ])
    expect([...map.values()]).toEqual([1, 2])
    expect([...map.entries()]).toEqual([...map])
  })

  it('refuses bounds that are not positive integers', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new BoundedMap({ maxEntries: bad, maxBytes: 10 })).toThrow(RangeError)
      expect(() => new BoundedMap({ maxEntries: 10, maxBytes: bad })).toThrow(RangeError)
    }
  })

  it('holds a million distinct long keys within its bounds', () => {
    const map = new BoundedMap<string, string>({ maxEntries: 1_000, maxBytes: 256 * 1024 })
    for (let i = 0; i < 1_000_000; i += 1) map.set(`${i}:${'k'.repeat(i % 200)}`, 'v'.repeat(i % 300))
    expect(map.size).toBeLessThanOrEqual(1_000)
    expect(map.bytes).toBeLessThanOrEqual(256 * 1024)
  })
})

describe('estimateBytes', () => {
  it('counts two bytes a character of a string, and the parts of an array', () => {
    expect(estimateBytes('abcd')).toBe(16 + 8)
    expect(estimateBytes(1)).toBe(8)
    expect(estimateBytes(['ab', 1])).toBe(16 + (8 + 20) + (8 + 8))
    expect(estimateBytes(null)).toBe(0)
    expect(estimateBytes(undefined)).toBe(0)
    expect(estimateBytes({})).toBe(64)
  })
})
