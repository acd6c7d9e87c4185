import pg from 'pg'
import type { Logger } from '../db/config.js'

/**
 * A short description of why the database did not answer: codes and kinds, never addresses or credentials.
 *
 * @internal
 */
export function describeFailure(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown }
  const code = typeof e?.code === 'string' ? e.code : undefined
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused (ECONNREFUSED)'
    case 'ECONNRESET':
      return 'connection reset (ECONNRESET)'
    case 'ETIMEDOUT':
      return 'connection timed out (ETIMEDOUT)'
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `host not found (${code})`
    case '28P01':
    case '28000':
      return `authentication failed (${code})`
    case '57P01':
    case '57P02':
    case '57P03':
      return `the server is shutting down or starting up (${code})`
    case '3D000':
      return 'the database does not exist (3D000)'
    default:
      if (code !== undefined && /^[0-9A-Z]{5}$/.test(code)) return `query failed (SQLSTATE ${code})`
      if (typeof e?.message === 'string' && /terminated|ended|closed/i.test(e.message)) return 'connection closed'
      return 'the database did not answer'
  }
}

/**
 * Whether an error says the connection itself is gone (not that the database refused a query).
 *
 * @internal
 */
export function connectionLost(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown }
  if (e?.code === '57P01' || e?.code === 'ECONNRESET' || e?.code === 'EPIPE') return true
  return typeof e?.message === 'string' && /Connection terminated|not queryable|ended/i.test(e.message)
}

/** Cuts a client's socket: `end()` waits for the server's goodbye, which a black-holed network never sends. */
function destroySocket(client: pg.Client): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream
  stream?.destroy?.()
}

/**
 * The health reporter's own connection, outside the pool: made on first use, replaced when it dies or is dropped,
 * and used by one check at a time.
 *
 * @internal
 */
export class HealthConnection {
  /** Read at each (re)connect: with a host list, the primary may have moved. */
  readonly #config: () => pg.ClientConfig
  readonly #logger: Logger | undefined
  #client: pg.Client | undefined
  #connecting: Promise<pg.Client> | undefined
  #turn: Promise<void> = Promise.resolve()
  #closed = false

  constructor(config: () => pg.ClientConfig, logger: Logger | undefined) {
    this.#config = config
    this.#logger = logger
  }

  /** Whether a connection is open now (a check would reuse it). */
  get open(): boolean {
    return this.#client !== undefined
  }

  /** Runs `work` once every piece of work given before it has finished. */
  async exclusive<T>(work: () => Promise<T>): Promise<T> {
    const previous = this.#turn
    let release!: () => void
    this.#turn = new Promise<void>((resolve) => {
      release = resolve
    })
    await previous
    try {
      return await work()
    } finally {
      release()
    }
  }

  /** The open connection, or a new one (given `timeoutMs` to connect); concurrent callers share one attempt. */
  async connect(timeoutMs: number): Promise<pg.Client> {
    if (this.#closed) throw new Error('closed')
    if (this.#client !== undefined) return this.#client
    this.#connecting ??= (async () => {
      const client = new pg.Client({ ...this.#config(), connectionTimeoutMillis: timeoutMs })
      client.on('error', (error) => {
        // An idle connection that dies (a restart, a terminate) is replaced on the next check.
        this.#logger?.debug({ source: 'wincloud-data', error: describeFailure(error) }, 'health connection lost')
        if (this.#client === client) this.#client = undefined
      })
      try {
        await client.connect()
      } catch (error) {
        client.end().catch(() => undefined)
        throw error
      }
      if (this.#closed) {
        await client.end().catch(() => undefined)
        throw new Error('closed')
      }
      this.#client = client
      return client
    })().finally(() => {
      this.#connecting = undefined
    })
    return this.#connecting
  }

  /** Drops the open connection at once (it may be black-holed): the next check makes a new one. */
  drop(): void {
    const client = this.#client
    this.#client = undefined
    if (client === undefined) return
    destroySocket(client)
    client.end().catch(() => undefined)
  }

  /** Closes the connection for good: a polite end, given a second, then the socket cut. */
  async close(): Promise<void> {
    this.#closed = true
    const client = this.#client
    this.#client = undefined
    if (client === undefined) return
    await Promise.race([
      client.end().catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, 1_000).unref()),
    ])
    destroySocket(client)
  }
}
