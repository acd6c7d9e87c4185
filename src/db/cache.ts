import { createHash } from 'node:crypto'
import type { Redis, RedisOptions } from 'ioredis'
import { ConfigError } from '../errors/index.js'
import type { Logger } from './config.js'

/**
 * The Redis read cache (opt-in, needs the `ioredis` package): `getById` / `findById` and `count` of scoped
 * repositories are read through it. Keys carry the actor, so one actor's cached rows are never served to another,
 * and a version per table that every write path through the library bumps once it has committed.
 *
 * @example
 * ```ts
 * const cache: CacheConfig = { redis: process.env.REDIS_URL!, ttlSeconds: 30 }
 * ```
 */
export interface CacheConfig {
  /** A `redis://` or `rediss://` URL, or where the server is. */
  readonly redis: string | CacheServer
  /** How long a cached value lives (default 60 s): also the longest a value can be stale after a lost invalidation. */
  readonly ttlSeconds?: number
  /** Prefix of every key (default `wincloud:`), to share one Redis between applications. */
  readonly prefix?: string
  /** A cache call slower than this (default 50 ms) is given up and the database answers instead. */
  readonly timeoutMs?: number
}

/**
 * Where the Redis server is, for hosts that do not use a URL.
 *
 * @example
 * ```ts
 * const server: CacheServer = { host: '10.0.0.5', port: 6379, password: process.env.REDIS_PASSWORD }
 * ```
 */
export interface CacheServer {
  readonly host?: string
  readonly port?: number
  readonly username?: string
  readonly password?: string
  readonly db?: number
  /** TLS options as node:tls takes them, or true. */
  readonly tls?: boolean | Record<string, unknown>
}

/**
 * The cache as `db.health()` reports it.
 *
 * @example
 * ```ts
 * const { state, hits, misses }: CacheStatus = (await db.health()).cache!
 * ```
 */
export interface CacheStatus {
  /** `ok`; `degraded`: a call failed in the last 10 s (reads went to the database); `down`: not connected. */
  readonly state: 'ok' | 'degraded' | 'down'
  readonly hits: number
  readonly misses: number
  /** Cache calls that failed or timed out (the database answered them). */
  readonly errors: number
  /** Table versions whose bump failed and is retried when Redis answers again. */
  readonly pendingInvalidations: number
  readonly error?: string
}

/** Reads the table's version and the value under it in one round trip. */
const GET_SCRIPT = `local v = redis.call('GET', KEYS[1]) or '0'
return {v, redis.call('GET', ARGV[1] .. v .. ARGV[2])}`

const DEGRADED_FOR_MS = 10_000

/** JSON with Dates kept as Dates. */
function encode(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
    const raw = this[key]
    return raw instanceof Date ? { $date: raw.toISOString() } : v
  })
}

function decode(text: string): unknown {
  return JSON.parse(text, (_key, v: unknown) =>
    typeof v === 'object' && v !== null && typeof (v as { $date?: unknown }).$date === 'string'
      ? new Date((v as { $date: string }).$date)
      : v,
  )
}

/**
 * The read-through cache of one database.
 *
 * @internal
 */
export class ReadCache {
  readonly #redis: Redis
  readonly #ttl: number
  readonly #prefix: string
  readonly #logger: Logger | undefined
  readonly #pending = new Set<string>()
  #hits = 0
  #misses = 0
  #errors = 0
  #lastError: { at: number; message: string } | undefined

  private constructor(redis: Redis, config: CacheConfig, logger: Logger | undefined) {
    this.#redis = redis
    this.#ttl = config.ttlSeconds ?? 60
    this.#prefix = config.prefix ?? 'wincloud:'
    this.#logger = logger
    redis.defineCommand('wincloudGet', { numberOfKeys: 1, lua: GET_SCRIPT })
    // Versions that could not be bumped while Redis was away are bumped as soon as it is back.
    redis.on('ready', () => void this.#flushPending())
    redis.on('error', (error: unknown) => this.#failed(error))
  }

  static async create(config: CacheConfig, logger: Logger | undefined): Promise<ReadCache> {
    let IORedis: new (...args: unknown[]) => Redis
    try {
      const loaded = (await import('ioredis')) as unknown as { default?: unknown }
      IORedis = (loaded.default ?? loaded) as new (...args: unknown[]) => Redis
    } catch {
      throw new ConfigError('cache', 'needs the ioredis package (npm install ioredis).')
    }
    const given = config.redis
    // Fail fast while disconnected (no offline queue, no retries per command): the database answers instead.
    const options: RedisOptions = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: config.timeoutMs ?? 50,
      connectTimeout: 2_000,
      lazyConnect: false,
    }
    const server =
      typeof given === 'string'
        ? given
        : { ...given, tls: given.tls === true ? {} : given.tls === false ? undefined : given.tls }
    const redis = typeof server === 'string' ? new IORedis(server, options) : new IORedis({ ...server, ...options })
    return new ReadCache(redis, config, logger)
  }

  #failed(error: unknown): void {
    this.#errors += 1
    const message = (error as { code?: unknown })?.code
    this.#lastError = { at: Date.now(), message: typeof message === 'string' ? message : 'cache call failed' }
  }

  #key(kind: string, table: string): { version: string; prefix: string } {
    return { version: `${this.#prefix}v:${table}`, prefix: `${this.#prefix}${kind}:${table}:` }
  }

  /**
   * Reads through the cache: the cached value, or `load()`'s, stored for next time when `load` says it may be (a
   * value read from a lagging replica is not). Never fails because of Redis.
   */
  async readThrough<T>(
    kind: 'row' | 'count',
    table: string,
    actor: string,
    parts: readonly unknown[],
    load: () => Promise<{ value: T; cacheable: boolean }>,
  ): Promise<T> {
    const { version, prefix } = this.#key(kind, table)
    const suffix = `:${actor}:${createHash('sha256').update(encode(parts)).digest('base64url')}`
    let current: string | undefined
    try {
      const [v, hit] = await (
        this.#redis as unknown as { wincloudGet(k: string, a: string, b: string): Promise<[string, string | null]> }
      ).wincloudGet(version, prefix, suffix)
      current = v
      if (hit !== null) {
        this.#hits += 1
        return decode(hit) as T
      }
    } catch (error) {
      this.#failed(error)
    }
    this.#misses += 1
    const { value, cacheable } = await load()
    if (current !== undefined && cacheable) {
      // Stored under the version read before the database was: a write since then bumped it, and this entry is
      // never read.
      this.#redis
        .set(`${prefix}${current}${suffix}`, encode(value), 'EX', this.#ttl)
        .catch((error: unknown) => this.#failed(error))
    }
    return value
  }

  /** Makes every cached value of these tables unreachable (after a write committed). */
  invalidate(tables: Iterable<string>): void {
    for (const table of tables) {
      this.#redis.incr(this.#key('row', table).version).catch((error: unknown) => {
        this.#failed(error)
        this.#pending.add(table)
        this.#logger?.warn({ table }, 'cache invalidation failed: retried when Redis answers')
      })
    }
  }

  async #flushPending(): Promise<void> {
    const tables = [...this.#pending]
    this.#pending.clear()
    for (const table of tables) {
      try {
        await this.#redis.incr(this.#key('row', table).version)
      } catch (error) {
        this.#failed(error)
        this.#pending.add(table)
      }
    }
  }

  status(): CacheStatus {
    const connected = this.#redis.status === 'ready'
    const recent = this.#lastError !== undefined && Date.now() - this.#lastError.at < DEGRADED_FOR_MS
    const state = !connected ? 'down' : recent || this.#pending.size > 0 ? 'degraded' : 'ok'
    return {
      state,
      hits: this.#hits,
      misses: this.#misses,
      errors: this.#errors,
      pendingInvalidations: this.#pending.size,
      ...(state !== 'ok' && this.#lastError !== undefined ? { error: this.#lastError.message } : {}),
    }
  }

  async close(): Promise<void> {
    await Promise.race([
      this.#redis.quit().catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, 1_000).unref()),
    ])
    this.#redis.disconnect()
  }
}
