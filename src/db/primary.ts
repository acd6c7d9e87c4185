import { setTimeout as sleep } from 'node:timers/promises'
import type pg from 'pg'
import type { OpenConnection, RawConnection } from '../access/connection-guard.js'
import { UnavailableError } from '../errors/index.js'
import type { Logger } from './config.js'
import type { ConnectionTargets, HostTarget } from './config/hosts.js'

/**
 * Which server the primary pool connects to, as `db.health()` reports it.
 *
 * @example
 * ```ts
 * const { host, changedAt } = (await db.health()).primary
 * ```
 */
export interface PrimaryStatus {
  /** `host:port` of the server new primary connections go to (the last one found writable). */
  readonly host: string
  /** When that last changed (a failover), or null when it never did. */
  readonly changedAt: string | null
  /** How many times it changed since `createDatabase`. */
  readonly changes: number
}

/** SQLSTATEs that no other host will answer differently: authentication, a missing database or role. */
const FINAL_CODES = new Set(['28P01', '28000', '3D000', '42704'])

function isFinal(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && FINAL_CODES.has(code)
}

/** A connection attempt gives each host at most this long to answer (ms): a host that swallows packets is skipped. */
const HOST_CONNECT_TIMEOUT_MS = 5_000

/**
 * Finds the server of a host list that matches its `target_session_attrs`, the way libpq does, for every new
 * connection of the primary pool: the host found last is tried first, then the others in order, round after round
 * with a short pause, until one matches or `failoverTimeoutMs` has passed. A failover is therefore noticed by the
 * first connection made after it (the pool discards connections to the old primary as they fail). Health reads
 * which host that is and when it last changed.
 *
 * @internal
 */
export class PrimaryLocator {
  readonly #targets: ConnectionTargets
  readonly #timeoutMs: number
  readonly #logger: Logger | undefined
  #current = 0
  /** Whether a host has matched yet: the first one found is where the primary is, not a change. */
  #found = false
  #changedAt: Date | null = null
  #changes = 0

  constructor(targets: ConnectionTargets, failoverTimeoutMs: number, logger: Logger | undefined) {
    this.#targets = targets
    this.#timeoutMs = failoverTimeoutMs
    this.#logger = logger
  }

  /** Whether a connection must be writable: then a read-only error means it is on the wrong server now. */
  get wantsWritable(): boolean {
    return this.#targets.targetSessionAttrs !== 'any'
  }

  status(): PrimaryStatus {
    return {
      host: this.#targets.hosts[this.#current]!.name,
      changedAt: this.#changedAt?.toISOString() ?? null,
      changes: this.#changes,
    }
  }

  /** The pg settings that point a connection at the current host (for connections outside the pool). */
  current(): HostTarget['settings'] {
    return this.#targets.hosts[this.#current]!.settings
  }

  /** A connection to a host that matches, made with `open`; an `UnavailableError` after `failoverTimeoutMs`. */
  async connect(open: OpenConnection): Promise<RawConnection> {
    const deadline = Date.now() + this.#timeoutMs
    const hosts = this.#targets.hosts
    let lastError: unknown
    for (let round = 0; ; round++) {
      for (let step = 0; step < hosts.length; step++) {
        const index = (this.#current + step) % hosts.length
        const remaining = deadline - Date.now()
        if (remaining <= 0) break
        try {
          const connection = await open({
            ...hosts[index]!.settings,
            connectionTimeoutMillis: Math.min(HOST_CONNECT_TIMEOUT_MS, remaining),
          })
          let matches: boolean
          try {
            matches = await this.#matches(connection)
          } catch (error) {
            // The check itself failed (a timeout, the host going away): this connection serves nobody.
            connection.connection?.stream?.destroy?.()
            throw error
          }
          if (matches) {
            this.#use(index)
            return connection
          }
          lastError = new Error(`${hosts[index]!.name} is not ${this.#targets.targetSessionAttrs}`)
          await connection.end().catch(() => undefined)
        } catch (error) {
          if (isFinal(error)) throw error
          lastError = error
        }
      }
      const pause = Math.min(100 * 2 ** round, 1_000)
      if (Date.now() + pause >= deadline) break
      await sleep(pause)
    }
    throw new UnavailableError(
      `No ${this.#targets.targetSessionAttrs} server among ${hosts.map((h) => h.name).join(', ')} within ${this.#timeoutMs} ms.`,
      { cause: lastError },
    )
  }

  async #matches(connection: RawConnection): Promise<boolean> {
    const attrs = this.#targets.targetSessionAttrs
    if (attrs === 'any') return true
    const result = (await connection.query(
      "select pg_is_in_recovery() as recovery, current_setting('transaction_read_only') = 'on' as read_only",
    )) as pg.QueryResult<{ recovery: boolean; read_only: boolean }>
    const row = result.rows[0]
    return row !== undefined && !row.recovery && (attrs === 'primary' || !row.read_only)
  }

  #use(index: number): void {
    const first = !this.#found
    this.#found = true
    if (index === this.#current) return
    if (first) {
      this.#current = index
      return
    }
    const from = this.#targets.hosts[this.#current]!.name
    this.#current = index
    this.#changedAt = new Date()
    this.#changes++
    this.#logger?.warn({ from, to: this.#targets.hosts[index]!.name }, 'primary changed')
  }
}
