import type { CacheConfig } from '../cache.js'
import { ConfigError } from '../../errors/index.js'
import { checkKeys, integer, isPlainObject } from './fields.js'

/**
 * `cache`: the Redis server (a `redis://` URL or its fields), the entries' time to live, the key prefix and the
 * timeout of each Redis call. Undefined when there is no cache.
 *
 * @internal
 */
export function parseCache(value: unknown): CacheConfig | undefined {
  if (value === undefined) return undefined
  if (!isPlainObject(value)) throw new ConfigError('cache', 'must be an object with redis.')
  checkKeys(value, ['redis', 'ttlSeconds', 'prefix', 'timeoutMs'], 'cache.')
  const redis = value.redis
  if (typeof redis === 'string') {
    if (!/^rediss?:\/\//.test(redis)) throw new ConfigError('cache.redis', 'must be a redis:// or rediss:// URL.')
  } else if (isPlainObject(redis)) {
    checkKeys(redis, ['host', 'port', 'username', 'password', 'db', 'tls'], 'cache.redis.')
    integer(redis.port, 'cache.redis.port', 1, 65_535, 6379)
    integer(redis.db, 'cache.redis.db', 0, 1_000, 0)
  } else {
    throw new ConfigError('cache.redis', 'must be a redis:// URL or { host, port, … }.')
  }
  const prefix = value.prefix
  if (prefix !== undefined && (typeof prefix !== 'string' || prefix.length > 100)) {
    throw new ConfigError('cache.prefix', 'must be a string of at most 100 characters.')
  }
  return Object.freeze({
    redis: redis,
    ttlSeconds: integer(value.ttlSeconds, 'cache.ttlSeconds', 1, 86_400, 60),
    timeoutMs: integer(value.timeoutMs, 'cache.timeoutMs', 1, 10_000, 50),
    ...(prefix === undefined ? {} : { prefix }),
  })
}
