/**
 * Attack class: replaying or forging keyset pagination cursors.
 *
 * A cursor is bound to its model, sort, filter and actor, and signed. Here Alice's cursors are replayed by Bob, by
 * an admin, by Alice herself with another sort, filter or model, after tampering (a flipped byte, truncation, a
 * re-encoded payload with another id, another spelling of the same bytes), and on database instances with other
 * signing secrets. Every one is an InvalidCursorError (HTTP 400) whose message and JSON repeat nothing of the
 * cursor, the row it points at, the actor or the secret; and no refused call returns a row.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import {
  AuditLog,
  createDatabase,
  Droplet,
  InvalidCursorError,
  User,
  ValidationError,
  isDataError,
  type Database,
  type ListOptions,
  type Scope,
} from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

const SECRET_A = randomBytes(32).toString('base64')
const SECRET_B = randomBytes(32).toString('base64')
/** Text that sits inside Alice's cursors (her droplets' names are the sort key) and must never reach a message. */
const MARKER = `zz-marker-${randomBytes(4).toString('hex')}`

/** The URL the library uses for a test database: through PgBouncer in the PgBouncer run, else direct. */
function libraryUrl(directUrl: string): string {
  const via = inject('pgbouncerUrl')
  if (!via) return directUrl
  const parsed = new URL(via)
  parsed.pathname = new URL(directUrl).pathname
  return parsed.toString()
}

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64url')
const unb64 = (text: string) => Buffer.from(text, 'base64url').toString('utf8')

describe.each([false, true])('replayed and forged cursors (rls: %s)', (rls) => {
  let db: Database
  let url: string
  let cleanup: () => Promise<void>
  let alice: User
  let bob: User
  let admin: User
  let others: Database[] = []
  /** A cursor of Alice's, with the options that made it. */
  let cursor: string
  const options = { filter: { status: 'active' }, sort: ['name'] } satisfies ListOptions<typeof Droplet>

  const page = (scope: Scope, after: unknown, extra: Partial<ListOptions<typeof Droplet>> = {}) =>
    scope.repo(Droplet).list({ ...options, ...extra, page: { size: 2, after: after as string } })

  /** Checks one refusal: an InvalidCursorError that says nothing about the cursor or what it points at. */
  function expectSilentRefusal(error: unknown, given: unknown, label: string): void {
    expect(error, label).toBeInstanceOf(InvalidCursorError)
    if (!isDataError(error)) return
    expect(error.httpStatus, label).toBe(400)
    expect(error.code, label).toBe('INVALID_CURSOR')
    expect(error.toJSON(), label).toEqual({
      name: 'InvalidCursorError',
      code: 'INVALID_CURSOR',
      message: error.message,
      httpStatus: 400,
    })
    expect([
      'Invalid cursor.',
      'Invalid cursor: it was altered, or it belongs to another sort, filter or user.',
    ]).toContain(error.message)
    const shown = `${error.message}\n${JSON.stringify(error)}\n${String(error)}\n${error.stack ?? ''}`
    const secrets = [MARKER, alice.id, bob.id, admin.id, SECRET_A, SECRET_B, cursor, ...cursor.split('.')]
    if (typeof given === 'string' && given.length >= 8)
      secrets.push(given, ...given.split('.').filter((p) => p.length >= 8))
    for (const secret of secrets) expect(shown.includes(secret), `${label}: message shows ${secret}`).toBe(false)
  }

  async function refused(work: () => Promise<unknown>, given: unknown, label: string): Promise<void> {
    let result: unknown
    try {
      result = await work()
    } catch (error) {
      expectSilentRefusal(error, given, label)
      return
    }
    throw new Error(`${label}: accepted, returned ${JSON.stringify(result)}`)
  }

  beforeAll(async () => {
    ;({ db, url, cleanup } = await openTestDatabase({ rls, pagination: { cursorSecrets: [SECRET_A] } }))
    const make = (name: string, role = 'user') =>
      db
        .model(User)
        .query()
        .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x', role })
    alice = await make('alice')
    bob = await make('bob')
    admin = await make('root', 'admin')
    for (const owner of [alice, bob]) {
      await db
        .model(Droplet)
        .query()
        .insert(
          [1, 2, 3, 4, 5].map((i) => ({
            userId: owner.id,
            name: `${owner === alice ? MARKER : 'bob'}-${i}`,
            region: 'nyc3',
            size: 's',
            status: 'active' as const,
          })),
        )
    }
    const first = await page(db.scope(alice), undefined)
    expect(first.items.map((d) => d.name)).toEqual([`${MARKER}-1`, `${MARKER}-2`])
    cursor = first.pageInfo.endCursor!
    // The payload is readable by design (signed, not encrypted): it holds the marker.
    expect(unb64(cursor.split('.')[0]!)).toContain(MARKER)
  })
  afterAll(async () => {
    for (const other of others) await other.close()
    others = []
    await cleanup()
  })

  it('works for its own actor, sort and filter (the control)', async () => {
    const next = await page(db.scope(alice), cursor)
    expect(next.items.map((d) => d.name)).toEqual([`${MARKER}-3`, `${MARKER}-4`])
    const back = await db
      .scope(alice)
      .repo(Droplet)
      .list({ ...options, page: { size: 2, before: next.pageInfo.startCursor! } })
    expect(back.items.map((d) => d.name)).toEqual([`${MARKER}-1`, `${MARKER}-2`])
  })

  it('is refused for another actor: another user, an admin, the same id with another role', async () => {
    await refused(() => page(db.scope(bob), cursor), cursor, 'Bob')
    await refused(() => page(db.scope(admin), cursor), cursor, 'admin')
    await refused(() => page(db.scope({ id: alice.id, role: 'admin' }), cursor), cursor, 'Alice as admin')
    await refused(() => page(db.system('replay'), cursor), cursor, 'system')
    await refused(
      () =>
        db
          .scope(bob)
          .repo(Droplet)
          .list({ ...options, page: { size: 2, before: cursor } }),
      cursor,
      'Bob, backward',
    )
  })

  it('is refused with another sort, filter or model', async () => {
    const scope = db.scope(alice)
    const variants: [string, Partial<ListOptions<typeof Droplet>>][] = [
      ['sort descending', { sort: ['-name'] }],
      ['sort by another key', { sort: ['region'] }],
      ['sort with a second key', { sort: ['name', 'createdAt'] }],
      ['default sort', { sort: undefined }],
      ['no filter', { filter: undefined }],
      ['another value', { filter: { status: 'stopped' } }],
      ['another shape', { filter: { status: { in: ['active'] } } }],
      ['a wider filter', { filter: { or: [{ status: 'active' }, { userId: bob.id }] } }],
      ['an extra condition', { filter: { status: 'active', region: 'nyc3' } }],
    ]
    for (const [label, extra] of variants) await refused(() => page(scope, cursor, extra), cursor, label)
    await refused(
      () => scope.repo(AuditLog).list({ sort: ['createdAt'], page: { size: 2, after: cursor } }),
      cursor,
      'AuditLog',
    )
    await refused(
      () => scope.repo(User).list({ filter: { role: 'user' }, sort: ['username'], page: { size: 2, after: cursor } }),
      cursor,
      'User',
    )
  })

  it('is refused when tampered with in any way', async () => {
    const scope = db.scope(alice)
    const [payload, mac] = cursor.split('.') as [string, string]
    const flip = (text: string, at: number) => text.slice(0, at) + (text[at] === 'A' ? 'B' : 'A') + text.slice(at + 1)
    const json = JSON.parse(unb64(payload)) as { v: number; k: unknown[] }
    const bobFirst = (await db.model(Droplet).query().where('user_id', bob.id).orderBy('name').first())!
    const forged = (k: unknown[], v = json.v) => `${b64(JSON.stringify({ v, k }))}.${mac}`
    const tampered: [string, unknown][] = [
      ['a payload byte flipped', `${flip(payload, 3)}.${mac}`],
      ['the last payload byte flipped', `${flip(payload, payload.length - 1)}.${mac}`],
      ['a MAC byte flipped', `${payload}.${flip(mac, 5)}`],
      ['truncated MAC', cursor.slice(0, -1)],
      ['truncated payload', `${payload.slice(0, -2)}.${mac}`],
      ['payload only', payload],
      ['MAC only', `.${mac}`],
      ['an extra character', `${cursor}A`],
      ['an extra part', `${cursor}.${mac}`],
      ['padding added', `${payload}=.${mac}`],
      ['upper-cased', cursor.toUpperCase()],
      ['re-encoded with Bob’s row as the key', forged([bobFirst.name, bobFirst.id])],
      ['re-encoded with another id', forged([json.k[0], '00000000-0000-4000-8000-000000000000'])],
      ['re-encoded with the same keys and spacing', `${b64(JSON.stringify({ v: json.v, k: json.k }, null, 1))}.${mac}`],
      ['re-encoded with another version', forged(json.k, 2)],
      ['re-encoded with SQL in a key', forged([`' or true --`, json.k[1]])],
      ['re-encoded with an object key', forged([{ toString: 1 }, json.k[1]])],
      ['re-encoded with one key', forged([json.k[0]])],
      ['standard base64 instead of url-safe', `${Buffer.from(unb64(payload)).toString('base64')}.${mac}`],
      ['empty', ''],
      ['a dot', '.'],
      ['whitespace around it', ` ${cursor} `],
      ['a NUL inside', `${payload}\u0000.${mac}`],
      ['unicode', `${payload}é.${mac}`],
      ['huge', `${'A'.repeat(100_000)}.${mac}`],
      ['a number', 12345],
      ['an object', { cursor }],
      ['an array', [cursor]],
      ['null', null],
      ['a Buffer', Buffer.from(cursor)],
    ]
    for (const [label, value] of tampered) {
      // Standard base64 of some payloads is the url-safe text itself: that is no tampering.
      if (value === cursor) continue
      await refused(() => page(scope, value), value, label)
    }
    // Another spelling of the same payload bytes (the unused low bits of the last base64url character).
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const sameBytes = alphabet
      .split('')
      .map((c) => payload.slice(0, -1) + c)
      .filter((p) => p !== payload && Buffer.from(p, 'base64url').equals(Buffer.from(payload, 'base64url')))
    for (const p of sameBytes) await refused(() => page(scope, `${p}.${mac}`), `${p}.${mac}`, 'another spelling')
  })

  it('is refused by a database with other signing secrets, and kept only during a rotation', async () => {
    const open = async (config: Parameters<typeof createDatabase>[0]) => {
      const other = await createDatabase({ ...config, connection: libraryUrl(url), rls })
      others.push(other)
      return other
    }
    const elsewhere = await open({ pagination: { cursorSecrets: [SECRET_B] } })
    await refused(() => page(elsewhere.scope(alice), cursor), cursor, 'another secret')
    const derived = await open({ encryption: { keys: { k1: randomBytes(32).toString('base64') }, current: 'k1' } })
    await refused(() => page(derived.scope(alice), cursor), cursor, 'a secret derived from other keys')
    const random = await open({})
    await refused(() => page(random.scope(alice), cursor), cursor, 'a random per-process secret')
    // During a rotation the old secret still verifies; that is the point of listing it.
    const rotating = await open({ pagination: { cursorSecrets: [SECRET_B, SECRET_A] } })
    expect((await page(rotating.scope(alice), cursor)).items.map((d) => d.name)).toEqual([`${MARKER}-3`, `${MARKER}-4`])
    // And a cursor signed elsewhere is refused here.
    const foreign = (await page(elsewhere.scope(alice), undefined)).pageInfo.endCursor!
    await refused(() => page(db.scope(alice), foreign), foreign, 'signed by another database')
  })

  it('mixing a cursor into an offset page or giving both directions is a ValidationError', async () => {
    const repo = db.scope(alice).repo(Droplet)
    await expect(repo.list({ ...options, page: { number: 1, size: 2, after: cursor } })).rejects.toBeInstanceOf(
      ValidationError,
    )
    await expect(repo.list({ ...options, page: { size: 2, after: cursor, before: cursor } })).rejects.toBeInstanceOf(
      ValidationError,
    )
    await expect(repo.list({ ...options, limit: 2, page: { after: cursor } })).rejects.toBeInstanceOf(ValidationError)
  })
})
