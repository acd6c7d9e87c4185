import type { Logger } from '../db/config.js'
import { round, Timings } from './timings.js'

/**
 * Time spent waiting for a pooled connection, apart from the queries' own time.
 *
 * @example
 * ```ts
 * const { acquires, p95Ms, timeouts }: ConnectionWaitStats = db.stats().connections
 * ```
 */
export interface ConnectionWaitStats {
  /** Connections handed out by the pool. */
  readonly acquires: number
  /** Acquisitions that failed (a timeout with the pool exhausted, or the database unreachable). */
  readonly timeouts: number
  readonly meanMs: number
  /** Over the most recent 256 acquisitions. */
  readonly p95Ms: number
  readonly maxMs: number
  /** Connections held now for longer than `observability.connectionLeakMs`, with the stack that acquired each. */
  readonly leaks: readonly { readonly heldMs: number; readonly stack: string }[]
}

interface PoolLike {
  acquire?: unknown
}

interface KnexTransaction {
  acquireConnection(config: unknown, callback: unknown): Promise<unknown>
}

/**
 * The part of a knex client that connection waits wrap: its acquire, release and transaction methods.
 *
 * @internal
 */
export interface InstrumentedClient {
  acquireConnection(): Promise<unknown>
  releaseConnection(connection: unknown): Promise<void>
  transaction(container: unknown, config: unknown, outerTx: unknown): KnexTransaction
  pool?: PoolLike
}

/** The origin of a connection taken by a single statement (no stack is captured for those). */
const SINGLE_STATEMENT = new Error('a single statement (not a transaction) holds it')
SINGLE_STATEMENT.stack =
  'Error: a single statement (not a transaction) holds it\n    (a long-running query: see db.stats().slowQueries)'

/** A stack captured where a connection was asked for: deep enough to reach the host's code. */
function origin(): Error {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 30
  try {
    return new Error('connection acquired here')
  } finally {
    Error.stackTraceLimit = limit
  }
}

/** The acquiring stack without the marker line and without knex's, node's and this module's own frames. */
function stackOf(origin: Error): string {
  return (origin.stack ?? '')
    .split('\n')
    .slice(1)
    .filter((line) => !/[\\/]node_modules[\\/]knex[\\/]|\(node:internal|[\\/]connection-waits\.[jt]s:/.test(line))
    .join('\n')
}

/**
 * Connection waits and leaks of one knex client, from its acquire and release: how long each acquisition waited,
 * how many failed, and (with a leak threshold) which connections are held too long, with the stack that took each.
 *
 * @internal
 */
export class ConnectionWaits {
  readonly #leakMs: number
  readonly #logger: Logger | undefined
  readonly #held = new Map<unknown, { since: number; origin: Error; reported: boolean }>()
  #waits = new Timings()
  #timeouts = 0
  #leakTimer: NodeJS.Timeout | undefined
  #restore: (() => void) | undefined

  constructor(client: InstrumentedClient, options: { leakMs: number; logger: Logger | undefined }) {
    this.#leakMs = options.leakMs
    this.#logger = options.logger
    this.#instrument(client)
  }

  #instrument(client: InstrumentedClient): void {
    const acquire = client.acquireConnection.bind(client)
    const release = client.releaseConnection.bind(client)
    const transaction = client.transaction.bind(client)
    const leakMs = this.#leakMs
    // A transaction acquires its connection in a later tick, where the host's frames are gone: its origin is the
    // stack of the knex.transaction() call, handed to the acquisition the transaction makes.
    let transactionOrigin: Error | undefined
    if (leakMs > 0) {
      client.transaction = (container, config, outerTx) => {
        const trx = transaction(container, config, outerTx)
        const started = origin()
        const acquireFor = trx.acquireConnection.bind(trx)
        trx.acquireConnection = (trxConfig, callback) => {
          transactionOrigin = started
          try {
            return acquireFor(trxConfig, callback)
          } finally {
            transactionOrigin = undefined
          }
        }
        return trx
      }
    }
    client.acquireConnection = async () => {
      // A single statement's stack holds only knex's own frames (it acquires in a later tick): it is not captured,
      // which keeps a checkout cheap; a transaction's is, where knex.transaction() was called.
      const acquiredAt = leakMs > 0 ? (transactionOrigin ?? SINGLE_STATEMENT) : undefined
      const started = performance.now()
      try {
        const connection = await acquire()
        this.#waits.add(performance.now() - started)
        if (acquiredAt !== undefined) {
          this.#held.set(connection, { since: Date.now(), origin: acquiredAt, reported: false })
        }
        return connection
      } catch (error) {
        this.#timeouts += 1
        throw error
      }
    }
    client.releaseConnection = (connection: unknown) => {
      this.#held.delete(connection)
      return release(connection)
    }
    this.#restore = () => {
      client.acquireConnection = acquire
      client.releaseConnection = release
      client.transaction = transaction
    }
    if (leakMs > 0) {
      this.#leakTimer = setInterval(() => this.#checkLeaks(), Math.max(50, Math.min(leakMs / 2, 5_000)))
      this.#leakTimer.unref()
    }
  }

  #checkLeaks(): void {
    const now = Date.now()
    for (const held of this.#held.values()) {
      if (held.reported || now - held.since < this.#leakMs) continue
      held.reported = true
      this.#logger?.warn(
        { source: 'wincloud-data', heldMs: now - held.since, stack: stackOf(held.origin) },
        'a connection has been checked out for longer than observability.connectionLeakMs',
      )
    }
  }

  /** Connections held now for longer than the leak threshold. */
  leaks(): { heldMs: number; stack: string }[] {
    if (this.#leakMs <= 0) return []
    const now = Date.now()
    return [...this.#held.values()]
      .filter((held) => now - held.since >= this.#leakMs)
      .map((held) => ({ heldMs: now - held.since, stack: stackOf(held.origin) }))
  }

  /** The waits and failures since the start or the last {@link ConnectionWaits.reset}, and the leaks now. */
  report(): ConnectionWaitStats {
    return {
      acquires: this.#waits.count,
      timeouts: this.#timeouts,
      meanMs: round(this.#waits.mean()),
      p95Ms: round(this.#waits.p95()),
      maxMs: round(this.#waits.max),
      leaks: this.leaks(),
    }
  }

  /** Starts the waits and failures over; connections held now stay watched. */
  reset(): void {
    this.#waits = new Timings()
    this.#timeouts = 0
  }

  /** Stops watching: the client's methods restored, the leak timer cleared. */
  close(): void {
    clearInterval(this.#leakTimer)
    this.#restore?.()
    this.#restore = undefined
    this.#held.clear()
  }
}
