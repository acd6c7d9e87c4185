import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, createDatabase, Droplet, UnavailableError, type Database } from '../../src/index.js'
import { adminUrl, openTestDatabase } from '../helpers/database.js'

let db: Database
let url: string
let cleanup: () => Promise<void>

beforeAll(async () => {
  ;({ db, url, cleanup } = await openTestDatabase())
})
afterAll(async () => {
  await cleanup()
})

describe('createDatabase', () => {
  it('returns bigint and numeric as strings, keeping precision', async () => {
    const { rows } = await db.knex.raw(
      `select 9007199254740993::bigint as big, 12345678901234567890.123456789::numeric as num, 42::int as small`,
    )
    expect(rows[0]).toEqual({ big: '9007199254740993', num: '12345678901234567890.123456789', small: 42 })
  })

  it('keeps bigint and numeric as strings even when the host changed pg.types globally', async () => {
    pg.types.setTypeParser(20, (value) => Number.parseInt(value, 10))
    pg.types.setTypeParser(1700, (value) => Number.parseFloat(value))
    try {
      const fresh = await createDatabase({ connection: url })
      try {
        const { rows } = await fresh.knex.raw(`select 9007199254740993::bigint as big, 0.1::numeric as num`)
        expect(rows[0]).toEqual({ big: '9007199254740993', num: '0.1' })
      } finally {
        await fresh.close()
      }
    } finally {
      pg.types.setTypeParser(20, (value) => value)
      pg.types.setTypeParser(1700, (value) => value)
    }
  })

  it('describes its connection without the password', () => {
    const password = new URL(adminUrl()).password
    expect(password.length).toBeGreaterThan(8)
    expect(db.connectionInfo).toMatch(/^127\.0\.0\.1:\d+\/t_[0-9a-f]+$/)
    expect(db.connectionInfo).not.toContain(password)
    expect(db.embedded).toBe(false)
  })

  it('fails fast and clearly when the server refuses the connection', async () => {
    const started = Date.now()
    const error = await createDatabase({ connection: 'postgres://app:s3cret-pw@127.0.0.1:1/wincloud' }).catch(
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(UnavailableError)
    expect((error as UnavailableError).message).toMatch(
      /^Could not connect to PostgreSQL at 127\.0\.0\.1:1\/wincloud: nothing listens at 127\.0\.0\.1:1 \(ECONNREFUSED\)/,
    )
    expect(JSON.stringify(error)).not.toContain('s3cret-pw')
    expect(Date.now() - started).toBeLessThan(5_000)
  })

  it('says authentication failed for a wrong password, without echoing it', async () => {
    const wrong = new URL(url)
    wrong.password = 'definitely-wrong-password'
    const error = await createDatabase({ connection: wrong.toString() }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).message).toMatch(/authentication failed/)
    expect((error as ConfigError).message).not.toContain('definitely-wrong-password')
  })

  it('says the database does not exist', async () => {
    const missing = new URL(url)
    missing.pathname = '/no_such_database_here'
    await expect(createDatabase({ connection: missing.toString() })).rejects.toMatchObject({
      name: 'ConfigError',
      message: expect.stringMatching(/does not exist/),
    })
  })

  it('accepts connection fields instead of a URL', async () => {
    const parsed = new URL(url)
    const other = await createDatabase({
      connection: {
        host: parsed.hostname,
        port: Number(parsed.port),
        user: decodeURIComponent(parsed.username),
        password: decodeURIComponent(parsed.password),
        database: parsed.pathname.slice(1),
      },
    })
    try {
      expect(await other.model(Droplet).query().resultSize()).toBe(0)
    } finally {
      await other.close()
    }
  })

  it('turns a pool acquire timeout into an UnavailableError, and recovers when the connection is free', async () => {
    const small = await createDatabase({ connection: url, pool: { max: 1, acquireTimeoutMs: 300 } })
    try {
      const trx = await small.knex.transaction()
      await trx.raw('select 1')
      const started = Date.now()
      const error = await small
        .model(Droplet)
        .query()
        .resultSize()
        .catch((e: unknown) => e)
      expect(error).toBeInstanceOf(UnavailableError)
      expect((error as UnavailableError).httpStatus).toBe(503)
      expect(Date.now() - started).toBeLessThan(3_000)
      await trx.commit()
      expect(await small.model(Droplet).query().resultSize()).toBe(0)
    } finally {
      await small.close()
    }
  })

  it('answers queries after close() with an UnavailableError, and close() twice is fine', async () => {
    const other = await createDatabase({ connection: url })
    await other.close()
    await other.close()
    await expect(other.model(Droplet).query().resultSize()).rejects.toBeInstanceOf(UnavailableError)
  })

  it('sends knex’s own warnings to the host logger instead of the console', async () => {
    const lines: string[] = []
    const log = (fields: Record<string, unknown>, message?: string) =>
      lines.push(`${String(fields.source)}: ${message}`)
    const logger = { debug: log, info: log, warn: log, error: log }
    await createDatabase({ connection: 'postgres://app@127.0.0.1:1/x', logger }).catch(() => undefined)
    expect(lines.some((line) => line.startsWith('knex: ') && line.includes('ECONNREFUSED'))).toBe(true)
  })
})

describe('close() with a connection still checked out', () => {
  it('gives it timeoutMs to come back, then closes its socket instead of hanging', async () => {
    const lines: string[] = []
    const log = (_fields: Record<string, unknown>, message?: string) => lines.push(message ?? '')
    const other = await createDatabase({ connection: url, logger: { debug: log, info: log, warn: log, error: log } })
    const trx = await other.knex.transaction()
    await trx.raw('select 1')
    const started = Date.now()
    await other.close({ timeoutMs: 200 })
    expect(Date.now() - started).toBeLessThan(3_000)
    expect(lines).toContain('closing with connections still checked out')
    await expect(trx.raw('select 1')).rejects.toThrow()
    await expect(other.model(Droplet).query().resultSize()).rejects.toBeInstanceOf(UnavailableError)
  })

  it('refuses a bad timeout', async () => {
    const other = await createDatabase({ connection: url })
    await expect(other.close({ timeoutMs: -1 })).rejects.toBeInstanceOf(ConfigError)
    await other.close()
  })
})
