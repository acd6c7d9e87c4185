import type { Knex } from 'knex'
import pg from 'pg'
import type { Logger } from './config.js'
import { parseLsn } from '../internal/lsn.js'
import { poolStatus, type PoolStatus } from '../observability/pool-status.js'

/**
 * Where a scope's reads may go:
 * - `'session'` (the default for user scopes): a healthy replica, except that after the actor writes, its reads
 *   go to the primary until a replica has replayed past the write (read-your-writes);
 * - `'primary'` (the default for `db.system()`): always the primary;
 * - `'replica'`: any healthy replica, even just after the actor wrote (analytics, reports); the primary when none is
 *   healthy.
 *
 * Writes and transactions always go to the primary.
 *
 * @example
 * ```ts
 * const report = await db.scope(admin, meta, { consistency: 'replica' }).repo(Droplet).count()
 * ```
 */
export type ReadConsistency = 'session' | 'primary' | 'replica'

/**
 * One replica as `db.health()` reports it.
 *
 * @example
 * ```ts
 * const lagging = (await db.health()).replicas.filter((r: ReplicaStatus) => r.state !== 'ok')
 * ```
 */
export interface ReplicaStatus {
  /** Host, port and database: never the user or the password. */
  readonly name: string
  /** `ok`: serves reads; `lagging`: further behind than `maxReplicaLagMs`; `down`: did not answer; `unknown`: not checked yet. */
  readonly state: 'ok' | 'lagging' | 'down' | 'unknown'
  /** How far behind the primary it is, in milliseconds (0 when it has replayed everything); null when unknown. */
  readonly lagMs: number | null
  /** The last WAL position it replayed (`'0/3000148'`), or null. */
  readonly replayLsn: string | null
  readonly checkedAt: string | null
  /** Why it is down: a short description, never an address or a credential. */
  readonly error?: string
  /** The replica's own connection pool, as `pool` of the report is the primary's. */
  readonly pool: PoolStatus
}

/** One configured replica. @internal */
export interface ReplicaEndpoint {
  readonly knex: Knex
  readonly name: string
  readonly connection: pg.ClientConfig
  /** The bounds of its pool. */
  readonly pool: { readonly min: number; readonly max: number }
}

interface ReplicaState {
  readonly endpoint: ReplicaEndpoint
  client: pg.Client | undefined
  state: ReplicaStatus['state']
  lagMs: number | null
  replay: bigint | undefined
  replayText: string | null
  checkedAt: Date | null
  error: string | undefined
}

function describe(error: unknown): string {
  const code = (error as { code?: unknown })?.code
  return typeof code === 'string' ? `did not answer (${code})` : 'did not answer'
}

const MAX_TRACKED_ACTORS = 100_000

/**
 * Read routing over streaming replicas: a monitor checks each replica's replay position and lag every
 * `checkIntervalMs` on a connection of its own, and `readerFor()` picks where a read goes. Read-your-writes is kept
 * per actor: after a write, the primary's WAL position is fetched once the write has committed, and the actor's
 * reads go to the primary until a healthy replica has replayed past it.
 *
 * @internal
 */
export class ReplicaSet {
  readonly #primary: Knex
  /** The monitor's connection settings for the primary, read at each (re)connect: the primary may move. */
  readonly #primaryConnection: () => pg.ClientConfig
  readonly #replicas: ReplicaState[]
  readonly #maxLagMs: number
  readonly #logger: Logger | undefined
  /**
   * Per actor: the WAL position its last write needs (null while it is being fetched), and the token of the fetch
   * that may fill it in: a fetch started for an earlier write must not answer for a later one.
   */
  readonly #writes = new Map<string, { position: bigint | null; token: object; at: number }>()
  /** Positions of actors dropped from the map when it was full: every session read needs them too. */
  #floor = 0n
  #next = 0
  #timer: NodeJS.Timeout | undefined
  #primaryClient: pg.Client | undefined
  #checking: Promise<void> | undefined
  #closed = false

  constructor(options: {
    primary: Knex
    primaryConnection: () => pg.ClientConfig
    replicas: readonly ReplicaEndpoint[]
    maxLagMs: number
    checkIntervalMs: number
    logger: Logger | undefined
  }) {
    this.#primary = options.primary
    this.#primaryConnection = options.primaryConnection
    this.#maxLagMs = options.maxLagMs
    this.#logger = options.logger
    this.#replicas = options.replicas.map((endpoint) => ({
      endpoint,
      client: undefined,
      state: 'unknown',
      lagMs: null,
      replay: undefined,
      replayText: null,
      checkedAt: null,
      error: undefined,
    }))
    this.#timer = setInterval(() => void this.check(), options.checkIntervalMs)
    this.#timer.unref()
    void this.check()
  }

  /** Every replica's knex, e.g. to close them. */
  get knexes(): readonly Knex[] {
    return this.#replicas.map((r) => r.endpoint.knex)
  }

  /**
   * The knex a read goes to. `actor` keys read-your-writes (`'system'` for system scopes); `after` is a WAL position
   * the read must see (a consistency token's), whatever the consistency but `'primary'`.
   */
  readerFor(actor: string, consistency: ReadConsistency, after?: bigint): Knex {
    if (consistency === 'primary' || this.#replicas.length === 0) return this.#primary
    let needed = after !== undefined && after > this.#floor ? after : this.#floor
    if (consistency === 'session') {
      const written = this.#writes.get(actor)?.position
      if (written === null) return this.#primary // the write's position is still being fetched
      if (written !== undefined && written > needed) needed = written
    }
    for (let i = 0; i < this.#replicas.length; i++) {
      const replica = this.#replicas[(this.#next + i) % this.#replicas.length]!
      if (replica.state !== 'ok' || replica.replay === undefined || replica.replay < needed) continue
      this.#next = (this.#next + i + 1) % this.#replicas.length
      return replica.endpoint.knex
    }
    return this.#primary
  }

  /** Whether a knex is one of the replicas. */
  isReplica(knex: Knex): boolean {
    return this.#replicas.some((r) => r.endpoint.knex === knex)
  }

  /** A replica whose read failed on a connection error: out of rotation until the monitor sees it answer. */
  markDown(knex: Knex, error: unknown): void {
    const replica = this.#replicas.find((r) => r.endpoint.knex === knex)
    if (replica === undefined) return
    replica.state = 'down'
    replica.error = describe(error)
  }

  /**
   * Called after an actor's write has committed: its reads go to the primary until a replica has replayed the
   * primary's current position, fetched now.
   */
  noteWrite(actor: string): void {
    if (this.#replicas.length === 0 || this.#closed) return
    if (this.#writes.size >= MAX_TRACKED_ACTORS && !this.#writes.has(actor)) {
      // Forget the oldest actor whose position is known, but not its write: every session read then waits for it.
      // Entries still being fetched stay (there are only as many as fetches in flight).
      for (const [oldest, { position }] of this.#writes) {
        if (position === null) continue
        this.#writes.delete(oldest)
        if (position > this.#floor) this.#floor = position
        break
      }
    }
    const token = {}
    this.#writes.delete(actor)
    this.#writes.set(actor, { position: null, token, at: Date.now() })
    this.#primary
      // The insert position, not the write position: with synchronous_commit off the commit record may still be in
      // the WAL buffers, and a replica that replayed up to the write position would not have it yet.
      .raw<{ rows: { lsn: string }[] }>('select pg_current_wal_insert_lsn()::text as lsn')
      .then((result) => {
        const position = parseLsn(result.rows[0]?.lsn)
        const entry = this.#writes.get(actor)
        // Only the fetch of the actor's latest write fills its entry in.
        if (position !== undefined && entry?.token === token) entry.position = position
      })
      .catch(() => {
        // The primary did not answer: the actor keeps reading from it until the entry expires (a minute).
      })
  }

  /** Checks every replica once (concurrent calls share the check). */
  check(): Promise<void> {
    this.#checking ??= this.#checkAll().finally(() => {
      this.#checking = undefined
    })
    return this.#checking
  }

  async #checkAll(): Promise<void> {
    if (this.#closed) return
    let primaryPosition: bigint | undefined
    try {
      this.#primaryClient ??= await this.#connect(this.#primaryConnection())
      const { rows } = await this.#primaryClient.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn')
      primaryPosition = parseLsn(rows[0]?.lsn)
    } catch {
      this.#primaryClient?.end().catch(() => undefined)
      this.#primaryClient = undefined
    }
    await Promise.all(this.#replicas.map((replica) => this.#checkOne(replica, primaryPosition)))
    // A position that was never fetched (the primary did not answer) keeps its actor on the primary for a minute.
    const expired = Date.now() - 60_000
    for (const [actor, entry] of this.#writes) {
      if (entry.position === null && entry.at < expired) this.#writes.delete(actor)
    }
    // Writes every healthy replica has replayed need no tracking any more.
    const healthy = this.#replicas.filter((r) => r.state === 'ok' && r.replay !== undefined)
    if (healthy.length === this.#replicas.length && healthy.length > 0) {
      const slowest = healthy.reduce((min, r) => (r.replay! < min ? r.replay! : min), healthy[0]!.replay!)
      for (const [actor, { position }] of this.#writes) {
        if (position !== null && position <= slowest) this.#writes.delete(actor)
      }
      if (this.#floor <= slowest) this.#floor = 0n
    }
  }

  async #checkOne(replica: ReplicaState, primaryPosition: bigint | undefined): Promise<void> {
    try {
      replica.client ??= await this.#connect(replica.endpoint.connection)
      const { rows } = await replica.client.query<{ recovery: boolean; lsn: string | null; idle_ms: number | null }>(
        `select pg_is_in_recovery() as recovery, pg_last_wal_replay_lsn()::text as lsn,
                (extract(epoch from clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::float8 as idle_ms`,
      )
      const row = rows[0]!
      const replay = parseLsn(row.lsn)
      replica.replay = replay
      replica.replayText = row.lsn
      replica.checkedAt = new Date()
      replica.error = undefined
      if (!row.recovery) {
        // Promoted, or not a replica at all: it may take writes the primary does not see.
        replica.state = 'down'
        replica.error = 'not in recovery (promoted?)'
        replica.lagMs = null
        return
      }
      const caughtUp = replay !== undefined && primaryPosition !== undefined && replay >= primaryPosition
      replica.lagMs = caughtUp ? 0 : Math.max(0, Math.round(row.idle_ms ?? 0))
      const before = replica.state
      replica.state = replica.lagMs > this.#maxLagMs ? 'lagging' : 'ok'
      if (before !== replica.state) {
        this.#logger?.info(
          { replica: replica.endpoint.name, state: replica.state, lagMs: replica.lagMs },
          'replica state',
        )
      }
    } catch (error) {
      replica.client?.end().catch(() => undefined)
      replica.client = undefined
      if (replica.state !== 'down') {
        this.#logger?.warn({ replica: replica.endpoint.name, error: describe(error) }, 'replica down')
      }
      replica.state = 'down'
      replica.error = describe(error)
      replica.checkedAt = new Date()
      replica.lagMs = null
    }
  }

  async #connect(config: pg.ClientConfig): Promise<pg.Client> {
    const client = new pg.Client({ ...config, connectionTimeoutMillis: 2_000, query_timeout: 2_000 })
    client.on('error', () => undefined)
    await client.connect()
    return client
  }

  status(): ReplicaStatus[] {
    return this.#replicas.map((r) => ({
      name: r.endpoint.name,
      state: r.state,
      lagMs: r.lagMs,
      replayLsn: r.replayText,
      checkedAt: r.checkedAt?.toISOString() ?? null,
      ...(r.error === undefined ? {} : { error: r.error }),
      pool: poolStatus(r.endpoint.knex, r.endpoint.pool),
    }))
  }

  async close(): Promise<void> {
    this.#closed = true
    clearInterval(this.#timer)
    await this.#checking?.catch(() => undefined)
    const clients = [this.#primaryClient, ...this.#replicas.map((r) => r.client)]
    const open = clients.filter((c): c is pg.Client => c !== undefined)
    await Promise.all(open.map((c) => c.end().catch(() => undefined)))
    await Promise.all(this.#replicas.map((r) => r.endpoint.knex.destroy().catch(() => undefined)))
  }
}
