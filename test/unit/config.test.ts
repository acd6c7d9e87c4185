import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../src/db/config.js'
import { configError } from '../helpers/errors.js'
import { createDatabase, isDataError } from '../../src/index.js'

const KEY = randomBytes(32).toString('base64')

describe('parseConfig', () => {
  it('fills in the defaults', () => {
    const config = parseConfig({ connection: 'postgres://app@127.0.0.1:5432/wincloud' })
    expect(config.pool).toEqual({
      min: 0,
      max: 10,
      acquireTimeoutMs: 10_000,
      idleTimeoutMs: 30_000,
      idleCheckMs: 10_000,
      queryTimeoutMs: 0,
    })
    expect(config.applicationName).toBe('wincloud-data')
    expect(Object.isFrozen(config)).toBe(true)
  })

  it('leaves connection undefined only when the field is omitted (the embedded default)', () => {
    expect(parseConfig({}).connection).toBeUndefined()
    expect(parseConfig(undefined).connection).toBeUndefined()
  })

  it.each([
    [{ connection: undefined }, 'connection', /DATABASE_URL/],
    [{ connection: '' }, 'connection', /empty/],
    [{ connection: null }, 'connection', /empty/],
    [{ connection: 'mysql://x@y/z' }, 'connection', /postgres:\/\//],
    [{ connection: 'not a url' }, 'connection', /postgres:\/\//],
    [{ connection: 42 }, 'connection', /URL or an object/],
    [{ connection: { host: '' } }, 'connection.host', /non-empty string/],
    [{ connection: { port: 70_000 } }, 'connection.port', /1 to 65535/],
    [{ connection: { hots: 'x' } }, 'connection.hots', /not a known option/],
    [{ connection: { ssl: 'yes' } }, 'connection.ssl', /boolean or an object/],
    [{ pool: { max: 0 } }, 'pool.max', /integer from 1/],
    [{ pool: { max: 2.5 } }, 'pool.max', /integer/],
    [{ pool: { min: -1 } }, 'pool.min', /integer from 0/],
    [{ pool: { min: 5, max: 2 } }, 'pool.min', /must not exceed pool.max/],
    [{ pool: { acquireTimeoutMs: 0 } }, 'pool.acquireTimeoutMs', /integer from 1/],
    [{ pool: { idleTimeoutMs: '30s' } }, 'pool.idleTimeoutMs', /integer/],
    [{ pool: { size: 10 } }, 'pool.size', /not a known option/],
    [{ pool: 10 }, 'pool', /object/],
    [{ logger: 'console' }, 'logger', /debug, info, warn and error/],
    [{ logger: { info() {} } }, 'logger.debug', /function/],
    [{ applicationName: '' }, 'applicationName', /1 to 63/],
    [{ embedded: { port: 80 } }, 'embedded.port', /1024 to 65535/],
    [{ embedded: { settings: { 'bad name': 'x' } } }, 'embedded.settings.bad name', /setting name/],
    [{ embedded: { settings: { fsync: false } } }, 'embedded.settings.fsync', /string/],
    [{ connection: 'postgres://a@b/c', embedded: {} }, 'embedded', /only applies/],
    [{ conection: 'postgres://a@b/c' }, 'conection', /not a known option/],
    [{ replicas: 'postgres://a@b/c' }, 'replicas', /list/],
    [{ replicas: [''] }, 'replicas[0]', /is empty/],
    [{ replicas: ['postgres://a@b/c', 'mysql://a@b/c'] }, 'replicas[1]', /postgres:\/\//],
    [{ replicas: [{ port: 0 }] }, 'replicas[0].port', /1 to 65535/],
    [{ maxReplicaLagMs: -5 }, 'maxReplicaLagMs', /integer/],
    [{ replicaCheckIntervalMs: 1 }, 'replicaCheckIntervalMs', /integer from 10/],
    [{ slowQueryMs: -1 }, 'slowQueryMs', /integer from 0/],
    [{ slowQueryMs: '200' }, 'slowQueryMs', /integer from 0/],
    [{ observability: true }, 'observability', /object/],
    [{ observability: { queryTiming: 'yes' } }, 'observability.queryTiming', /true or false/],
    [{ observability: { connectionLeakMs: 1.5 } }, 'observability.connectionLeakMs', /integer/],
    [{ observability: { sampling: 1 } }, 'observability.sampling', /not a known option/],
    [{ cache: { url: 'redis://x' } }, 'cache.url', /not a known option/],
    [{ cache: 'redis://x' }, 'cache', /object/],
    [{ cache: { redis: 'http://x' } }, 'cache.redis', /redis:\/\//],
    [{ cache: { redis: { port: 0 } } }, 'cache.redis.port', /1 to 65535/],
    [{ cache: { redis: 'redis://x', ttlSeconds: 0 } }, 'cache.ttlSeconds', /integer from 1/],
    [
      { encryption: { keys: { k1: KEY }, current: 'k1', previousBlindIndexKeys: [KEY] } },
      'encryption.previousBlindIndexKeys',
      /blindIndexKey/,
    ],
    [{ encryption: {} }, 'encryption.keys', /at least one/],
    [{ encryption: { keys: { k1: 'c2hvcnQ=' }, current: 'k1' } }, 'encryption.keys.k1', /32 bytes/],
    [{ encryption: { keys: { k1: KEY }, current: 'k2' } }, 'encryption.current', /one of the ids/],
    [{ encryption: 'key' }, 'encryption', /object/],
    ['postgres://a@b/c', 'config', /object/],
  ])('rejects %j naming %s', (input, field, message) => {
    const error = configError(input)
    expect(error.field).toBe(field)
    expect(error.message).toMatch(message)
    expect(error.code).toBe('CONFIG_INVALID')
    expect(isDataError(error)).toBe(true)
  })

  it('derives the cursor-signing secrets from the encryption keys when it has none of its own', () => {
    const other = randomBytes(32).toString('base64')
    const one = parseConfig({ encryption: { keys: { k1: KEY }, current: 'k1' } })
    const again = parseConfig({ encryption: { keys: { k1: KEY }, current: 'k1' } })
    const rotated = parseConfig({ encryption: { keys: { k1: KEY, k2: other }, current: 'k2' } })
    expect(one.keyring?.currentKeyId).toBe('k1')
    expect(one.cursorSecrets).toHaveLength(1)
    expect(one.cursorSecrets![0]!.equals(again.cursorSecrets![0]!)).toBe(true)
    // After a rotation the new key's secret signs and the old one's still verifies.
    expect(rotated.cursorSecrets).toHaveLength(2)
    expect(rotated.cursorSecrets![1]!.equals(one.cursorSecrets![0]!)).toBe(true)
    expect(rotated.cursorSecrets![0]!.equals(one.cursorSecrets![0]!)).toBe(false)
    // The derived secret is not the key itself, and explicit secrets win.
    expect(one.cursorSecrets![0]!.toString('base64')).not.toBe(KEY)
    const own = randomBytes(32).toString('base64')
    const explicit = parseConfig({
      encryption: { keys: { k1: KEY }, current: 'k1' },
      pagination: { cursorSecrets: [own] },
    })
    expect(explicit.cursorSecrets![0]!.toString('base64')).toBe(own)
  })

  it('never repeats a password from the configuration in its errors', () => {
    const secret = 'hunter2-very-secret'
    for (const input of [
      { connection: `mysql://app:${secret}@db/x` },
      { connection: { password: secret, port: -1 } },
      { connection: `postgres://app:${secret}@db/x`, pool: { max: -1 } },
    ]) {
      const error = configError(input)
      expect(error.message).not.toContain(secret)
      expect(JSON.stringify(error)).not.toContain(secret)
    }
  })

  it('makes createDatabase reject before connecting', async () => {
    // port 1 would refuse a connection; the config error must come first, not knex's "Unable to acquire a connection"
    await expect(createDatabase({ connection: undefined })).rejects.toMatchObject({
      name: 'ConfigError',
      field: 'connection',
    })
    await expect(createDatabase({ connection: 'postgres://x@127.0.0.1:1/x', pool: { max: -1 } })).rejects.toMatchObject(
      {
        field: 'pool.max',
      },
    )
  })
})
