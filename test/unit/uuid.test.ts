import { describe, expect, it } from 'vitest'
import { uuidv7 } from '../../src/internal/uuid.js'

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('uuidv7', () => {
  it('has the version 7 and RFC 9562 variant bits', () => {
    for (let i = 0; i < 1000; i++) expect(uuidv7()).toMatch(UUID_V7)
  })

  it('carries the time in its first 48 bits', () => {
    const now = Date.now() + 1_000 // ahead of every id made so far, so the monotonic guard does not step in
    const id = uuidv7(now)
    expect(parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(now)
  })

  it('is strictly increasing within this process, also within one millisecond and across a clock step back', () => {
    const ids = []
    const base = Date.now() + 10_000
    for (let i = 0; i < 10_000; i++) ids.push(uuidv7(base + Math.floor(i / 5000) - (i % 7 === 0 ? 3 : 0)))
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!).toBe(true)
    expect(new Set(ids).size).toBe(ids.length)
  })
})
