/**
 * Attack class: secrets leaking through the library's own output.
 *
 * Droplets with administrator passwords and users with API tokens and passwords are written with unique marker
 * strings, then read, changed, logged in with (rightly and wrongly), refused (validation, permission, a unique and
 * a foreign-key violation, a decryption failure), paged and counted, with `slowQueryMs: 0` so every statement goes
 * through a capturing logger. Everything the library shows afterwards is searched for the markers, the password
 * hashes, the ciphertexts, the encryption, blind-index and cursor keys: the logger's records, the console,
 * `db.stats()`, `db.metrics()`, `db.health()`, every error's message, JSON, string, stack and cause chain, rows'
 * JSON, audit rows read by a superuser, and (when redis-server is installed) everything in the Redis cache.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { inspect } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest'
import { startRedis, type RedisServer } from '../../scripts/topology.js'
import { needs } from '../helpers/tools.js'
import {
  AuthenticationError,
  ConflictError,
  createDatabase,
  DecryptionError,
  Droplet,
  ForbiddenError,
  hashPassword,
  User,
  ValidationError,
  type Database,
  type LoginAttempt,
  type Logger,
} from '../../src/index.js'
import { fastHash, openTestDatabase } from '../helpers/database.js'

// The cache part needs redis-server: locally it is left out with a message, in CI it is required.
const withRedis = needs('redis', 'the Redis part of the plaintext-leak tests')

const hex = (n: number) => randomBytes(n).toString('hex')
const KEY = randomBytes(32)
const BLIND_KEY = randomBytes(32)
const CURSOR_SECRET = randomBytes(32)

/** Plaintexts: none of them may ever appear anywhere the library writes or shows. */
const PLAIN = {
  alicePassword: `alice-pw-${hex(8)}`,
  bobPassword: `bob-pw-${hex(8)}`,
  wrongPassword: `wrong-pw-${hex(8)}`,
  aliceToken: `alice-token-${hex(8)}`,
  bobToken: `bob-token-${hex(8)}`,
  rotatedToken: `rotated-token-${hex(8)}`,
  dropletPassword: `droplet-pw-${hex(8)}`,
  changedPassword: `changed-pw-${hex(8)}`,
  bulkPassword: `bulk-pw-${hex(8)}`,
  refusedPassword: `refused-pw-${hex(8)}`,
}

/** Key material, in the forms a leak could take. */
const KEYS = [KEY, BLIND_KEY, CURSOR_SECRET].flatMap((k) => [
  k.toString('base64'),
  k.toString('base64url'),
  k.toString('hex'),
])

/** The URL the library uses for a test database: through PgBouncer in the PgBouncer run, else direct. */
function libraryUrl(directUrl: string): string {
  const via = inject('pgbouncerUrl')
  if (!via) return directUrl
  const parsed = new URL(via)
  parsed.pathname = new URL(directUrl).pathname
  return parsed.toString()
}

/** Everything a value shows when printed or serialized, down its cause chain. */
function everything(value: unknown, seen = new Set<unknown>()): string {
  if (value === null || value === undefined || seen.has(value)) return ''
  seen.add(value)
  const parts: string[] = []
  try {
    parts.push(inspect(value, { depth: 8, showHidden: true, getters: false }))
  } catch (error) {
    parts.push(`inspect failed: ${String(error)}`)
  }
  if (value instanceof Error) {
    parts.push(value.message, String(value), value.stack ?? '')
    try {
      parts.push(JSON.stringify(value))
    } catch {
      parts.push('(not serializable)')
    }
    parts.push(everything(value.cause, seen))
    const errors = (value as { errors?: unknown }).errors
    if (Array.isArray(errors)) for (const inner of errors) parts.push(everything(inner, seen))
  } else if (typeof value === 'object') {
    try {
      parts.push(JSON.stringify(value))
    } catch {
      parts.push('(not serializable)')
    }
  }
  return parts.join('\n')
}

/** The needles found in a haystack. */
const found = (haystack: string, needles: readonly string[]): string[] => needles.filter((n) => haystack.includes(n))

describe.each([false, true])('plaintext and keys never leak (rls: %s)', (rls) => {
  let db: Database
  let url: string
  let cleanup: () => Promise<void>
  let redis: RedisServer | undefined
  const records: string[] = []
  const errors: unknown[] = []
  const attempts: string[] = []
  const consoleOutput: string[] = []
  let alice: User
  let bob: User
  let admin: User
  /** Password hashes and ciphertexts: stored, but never shown in logs, stats, metrics or health. */
  const stored: string[] = []

  const logger: Logger = {
    debug: (fields, message) => records.push(everything({ level: 'debug', fields, message })),
    info: (fields, message) => records.push(everything({ level: 'info', fields, message })),
    warn: (fields, message) => records.push(everything({ level: 'warn', fields, message })),
    error: (fields, message) => records.push(everything({ level: 'error', fields, message })),
  }

  async function refusal(work: () => Promise<unknown>): Promise<unknown> {
    try {
      await work()
    } catch (error) {
      errors.push(error)
      return error
    }
    throw new Error('expected a refusal, the call succeeded')
  }

  async function direct<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      return (await client.query<R>(sql, params)).rows
    } finally {
      await client.end()
    }
  }

  beforeAll(async () => {
    for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
      vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
        consoleOutput.push(args.map((a) => everything(a)).join(' '))
      })
    }
    if (withRedis) redis = await startRedis()
    ;({ db, url, cleanup } = await openTestDatabase({
      rls,
      logger,
      slowQueryMs: 0,
      auth: { passwordHash: fastHash },
      encryption: { keys: { k1: KEY.toString('base64') }, current: 'k1', blindIndexKey: BLIND_KEY.toString('base64') },
      pagination: { cursorSecrets: [CURSOR_SECRET.toString('base64')] },
      ...(redis ? { cache: { redis: redis.url, ttlSeconds: 60, prefix: `leak${hex(3)}:` } } : {}),
    }))
    db.auth.onLoginAttempt((attempt: LoginAttempt) => {
      attempts.push(everything({ ...attempt, transaction: undefined }))
    })
    const system = db.system('leak test setup').repo(User)
    const aliceHash = await hashPassword(PLAIN.alicePassword, fastHash)
    const bobHash = await hashPassword(PLAIN.bobPassword, fastHash)
    stored.push(aliceHash, bobHash)
    alice = await system.create({
      email: 'alice@example.com',
      username: 'alice',
      passwordHash: aliceHash,
      apiToken: PLAIN.aliceToken,
    })
    bob = await system.create({ email: 'bob@example.com', username: 'bob', passwordHash: bobHash })
    admin = await system.create({ email: 'root@example.com', username: 'root', passwordHash: bobHash, role: 'admin' })
    await db.scope(admin).repo(User).update(bob.id, { apiToken: PLAIN.bobToken })
    await db.scope(admin).repo(User).update(bob.id, { apiToken: PLAIN.rotatedToken })
  })
  afterAll(async () => {
    vi.restoreAllMocks()
    await cleanup?.()
    await redis?.stop()
  })

  it('runs the operations: writes, reads, logins, pages, refusals', async () => {
    const scope = db.scope(alice, { requestId: 'leak-1' })
    const droplets = scope.repo(Droplet)
    const d = await droplets.create({ name: 'web-1', region: 'nyc3', size: 's', adminPassword: PLAIN.dropletPassword })
    const e = await droplets.create({ name: 'web-2', region: 'nyc3', size: 's' })
    await droplets.update(d.id, { adminPassword: PLAIN.changedPassword, status: 'active' })
    await droplets.bulkUpdateEach([{ id: e.id, adminPassword: PLAIN.bulkPassword }])
    await scope.transaction(async (tx) => {
      await tx.repo(Droplet).update(e.id, { name: 'web-2b' })
      await tx.audit.record('droplet.console_opened', { entityType: 'droplet', entityId: e.id })
    })
    // Reads decrypt, and still show nothing in JSON.
    const read = await droplets.getById(d.id)
    expect(read.adminPassword).toBe(PLAIN.changedPassword)
    expect((await droplets.getById(d.id)).adminPassword).toBe(PLAIN.changedPassword) // a cached read, with Redis
    expect((await droplets.list({ sort: ['name'] })).map((x) => x.adminPassword).sort()).toEqual(
      [PLAIN.bulkPassword, PLAIN.changedPassword].sort(),
    )
    const page = await droplets.list({ sort: ['name'], page: { size: 1 } })
    await droplets.list({ sort: ['name'], page: { size: 1, after: page.pageInfo.endCursor! } })
    await droplets.list({ page: { number: 1, size: 1, exactTotal: true } })
    await droplets.count()
    for (const row of [read, ...(await droplets.list())]) {
      expect(found(everything(row.toJSON()), [...Object.values(PLAIN), 'v1.k1.'])).toEqual([])
      expect(found(JSON.stringify(row), [...Object.values(PLAIN), 'v1.k1.'])).toEqual([])
    }
    const me = await db.scope(alice).repo(User).getById(alice.id)
    expect(me.apiToken).toBe(PLAIN.aliceToken)
    expect(found(JSON.stringify(me), [...Object.values(PLAIN), ...stored, 'v1.k1.'])).toEqual([])
    const byToken = await db
      .scope(admin)
      .repo(User)
      .list({ filter: { apiToken: PLAIN.rotatedToken } })
    expect(byToken.map((u) => u.id)).toEqual([bob.id])
    const ciphertexts = await direct<{ c: string }>(
      `select admin_password_ciphertext as c from droplets where admin_password_ciphertext is not null
       union all select api_token_ciphertext from users where api_token_ciphertext is not null
       union all select api_token_bidx from users where api_token_bidx is not null`,
    )
    expect(ciphertexts.length).toBe(2 + 2 + 2)
    stored.push(...ciphertexts.map((r) => r.c))

    // Logins, right and wrong.
    expect((await db.auth.login('alice', PLAIN.alicePassword, { ip: '203.0.113.9' })).id).toBe(alice.id)
    expect((await db.auth.login('ALICE@example.com', PLAIN.alicePassword)).id).toBe(alice.id)
    expect(await refusal(() => db.auth.login('alice', PLAIN.wrongPassword))).toBeInstanceOf(AuthenticationError)
    expect(await refusal(() => db.auth.login('bob', PLAIN.alicePassword))).toBeInstanceOf(AuthenticationError)
    expect(await refusal(() => db.auth.login('nobody', PLAIN.bobPassword))).toBeInstanceOf(AuthenticationError)
    expect(await refusal(() => db.auth.login('alice', `${PLAIN.alicePassword}x`.repeat(100)))).toBeInstanceOf(
      AuthenticationError,
    )

    // Refusals that carry a secret in the rejected input.
    expect(
      await refusal(() =>
        droplets.create({ name: 'bad', region: 'NOT A REGION', size: 's', adminPassword: PLAIN.refusedPassword }),
      ),
    ).toBeInstanceOf(ValidationError)
    expect(
      await refusal(() =>
        droplets.create({ name: 'long', region: 'nyc3', size: 's', adminPassword: PLAIN.refusedPassword.repeat(100) }),
      ),
    ).toBeInstanceOf(ValidationError)
    expect(
      await refusal(() => droplets.update(d.id, { adminPassword: PLAIN.refusedPassword, status: 'nope' as never })),
    ).toBeInstanceOf(ValidationError)
    expect(
      await refusal(() => db.scope(alice).repo(User).update(alice.id, { apiToken: PLAIN.refusedPassword })),
    ).toBeInstanceOf(ForbiddenError)
    // By ids a patch of an encrypted field is encrypted per row; by filter it is refused, the secret in the patch.
    expect(
      await refusal(() => droplets.bulkUpdate({ filter: { id: d.id } }, { adminPassword: PLAIN.refusedPassword })),
    ).toBeInstanceOf(ValidationError)
    // A unique violation and a foreign-key violation, with secrets in the refused rows.
    expect(
      await refusal(() =>
        db.system('dup').repo(User).create({
          email: 'ALICE@example.com',
          username: 'alice2',
          passwordHash: stored[0]!,
          apiToken: PLAIN.refusedPassword,
        }),
      ),
    ).toBeInstanceOf(ConflictError)
    expect(
      await refusal(() =>
        db.system('orphan').repo(Droplet).create({
          userId: randomUUID(),
          name: 'orphan',
          region: 'nyc3',
          size: 's',
          adminPassword: PLAIN.refusedPassword,
        }),
      ),
    ).toBeInstanceOf(ConflictError)
    // A ciphertext moved to another row does not decrypt, and says only that.
    await direct(
      `update droplets set admin_password_ciphertext = (select admin_password_ciphertext from droplets where id = $1)
       where id = $2`,
      [d.id, e.id],
    )
    const moved = await db.system('read moved').repo(Droplet).getById(e.id)
    const failed = await refusal(() => Promise.resolve().then(() => moved.adminPassword))
    expect(failed).toBeInstanceOf(DecryptionError)
    expect((failed as Error).message).toBe('Decryption failed')
    // Another database instance with another key cannot read it either, and says only that.
    const other = await createDatabase({
      connection: libraryUrl(url),
      logger,
      encryption: { keys: { k1: randomBytes(32).toString('base64') }, current: 'k1' },
    })
    try {
      const foreign = await other.system('wrong key').repo(Droplet).getById(d.id)
      expect(await refusal(() => Promise.resolve().then(() => foreign.adminPassword))).toBeInstanceOf(DecryptionError)
    } finally {
      await other.close()
    }
    expect(errors.length).toBe(13)
  })

  const secretsIn = (text: string) => found(text, [...Object.values(PLAIN), ...KEYS, ...stored])

  it('logs no marker, hash, ciphertext or key, though every statement was logged as slow', () => {
    const slow = records.filter((r) => r.includes('slow query'))
    expect(slow.length).toBeGreaterThan(20)
    expect(secretsIn(records.join('\n'))).toEqual([])
    expect(secretsIn(consoleOutput.join('\n'))).toEqual([])
  })

  it('shows none in db.stats(), db.metrics() or db.health()', async () => {
    const stats = db.stats()
    expect(stats.slowQueries.length).toBeGreaterThan(0)
    expect(secretsIn(everything(stats))).toEqual([])
    expect(secretsIn(await db.metrics())).toEqual([])
    expect(secretsIn(everything(await db.health({ exactCounts: true, keyUsage: true })))).toEqual([])
  })

  it('shows no plaintext, hash, ciphertext or key in any error: message, JSON, string, stack, cause chain', () => {
    expect(errors.length).toBe(13)
    // The search reaches into the driver's error behind a mapped one.
    expect(errors.map((error) => everything(error)).join('\n')).toContain('violates unique constraint')
    for (const error of errors) {
      expect(secretsIn(everything(error)), String(error)).toEqual([])
    }
  })

  it('puts no plaintext, hash or key in the audit rows or the login listeners’ attempts', async () => {
    const rows = await direct<{ row: string }>('select a::text as row from audit_logs a')
    expect(rows.length).toBeGreaterThan(10)
    expect(secretsIn(rows.map((r) => r.row).join('\n'))).toEqual([])
    expect(attempts.length).toBeGreaterThanOrEqual(5)
    expect(secretsIn(attempts.join('\n'))).toEqual([])
  })

  it('never prints the key material of the database handle', () => {
    expect(found(everything(db), KEYS)).toEqual([])
  })

  it.runIf(withRedis)('keeps only ciphertexts in Redis', async () => {
    const { Redis } = await import('ioredis')
    const client = new Redis(redis!.url)
    try {
      const names = await client.keys('*')
      const values = await Promise.all(names.map((k) => client.get(k).catch(() => '')))
      const dump = [...names, ...values].join('\n')
      expect(dump).toContain('v1.k1.') // the cache does hold the rows read above
      expect(found(dump, [...Object.values(PLAIN), ...KEYS])).toEqual([])
    } finally {
      client.disconnect()
    }
  })
})
