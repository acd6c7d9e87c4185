import type { Knex } from 'knex'

// How the pool's connections are kept sound, through knex's client (checked against knex 3.1–3.3 and pg 8.x): a dead
// connection is never handed out again, an idle one answers a ping first, a read lost on arrival runs again, a
// connection's server is chosen by the caller (host lists), and closing never waits on a silent network.

/** A pooled pg client as knex keeps it: knex's pool refuses one whose `__knex__disposed` is set. */
interface PooledClient {
  query(...args: unknown[]): unknown
  end(): Promise<void>
  __knex__disposed?: unknown
  _ending?: boolean
  _queryable?: boolean
  /** The transaction status the server last reported (`'I'`, `'T'`, `'E'`); pg 8.x keeps it. */
  _txStatus?: string | null
  /** When the connection last finished a query (ms since the epoch), kept by {@link guardConnections}. */
  __wincloud_lastUsed?: number
  /** Queries sent and not yet settled, kept by {@link guardConnections}. */
  __wincloud_busy?: number
  on(event: 'end' | 'error', listener: (error?: unknown) => void): unknown
  connection?: { stream?: { destroy?: () => void } }
}

/** How {@link guardConnections} keeps a pool's connections sound. @internal */
export interface ConnectionGuard {
  /** Whether an error means the connection it happened on must never serve again. */
  isLost(error: unknown): boolean
  /** Notes on a lost-connection error what the loss means (see `noteLostConnection`). */
  noteLoss(error: unknown, sql: string, transactionStatus: string | null | undefined, elapsedMs: number): void
  /** A connection idle this long (ms) answers a ping before it is handed out again; 0: never. */
  idleCheckMs: number
  /** How long that ping may take before the connection is discarded (ms). */
  pingTimeoutMs: number
}

/** The SQL text of the arguments of a pg `query` call: a string, a query config, or a Query object. */
function sqlOf(first: unknown): string {
  if (typeof first === 'string') return first
  const text = (first as { text?: unknown } | null)?.text
  return typeof text === 'string' ? text : ''
}

/** Cuts a connection's socket: a polite close waits for the server's goodbye, which a silent network never sends. */
function cutSocket(connection: PooledClient): void {
  connection.connection?.stream?.destroy?.()
}

/**
 * Wraps a new connection's `query`: a failure that `guard.isLost` says ends the connection marks it disposed (knex's
 * own flag, which its pool checks on every acquire) before the caller hears of it, with what it means for a commit;
 * every finished query stamps the connection's last use.
 */
function watchQueries(connection: PooledClient, guard: ConnectionGuard): void {
  const query = connection.query.bind(connection)
  const settle = (error: unknown, sql: string, status: string | null | undefined, sentAt: number): void => {
    const now = Date.now()
    connection.__wincloud_lastUsed = now
    connection.__wincloud_busy = (connection.__wincloud_busy ?? 1) - 1
    if (!error || !guard.isLost(error)) return
    guard.noteLoss(error, sql, status, now - sentAt)
    connection.__knex__disposed ??= error
    // A reply that never came (pg's query_timeout) may mean a network that swallows packets, where a polite close
    // would wait forever: cut the socket.
    if ((error as { message?: unknown }).message === 'Query read timeout') cutSocket(connection)
  }
  connection.query = (...args: unknown[]): unknown => {
    const sql = sqlOf(args[0])
    const status = connection._txStatus
    const sentAt = Date.now()
    const last = args.length - 1
    const callback = args[last]
    if (typeof callback === 'function') {
      args[last] = (error: unknown, ...rest: unknown[]): unknown => {
        settle(error, sql, status, sentAt)
        return (callback as (...a: unknown[]) => unknown)(error, ...rest)
      }
      connection.__wincloud_busy = (connection.__wincloud_busy ?? 0) + 1
      try {
        return query(...args)
      } catch (error) {
        connection.__wincloud_busy -= 1
        throw error
      }
    }
    // Counted only once it is known to settle: a query object without a callback (a stream, a cursor) is not
    // watched, and a call that throws at once never started.
    const result = query(...args)
    if (!(result instanceof Promise)) return result
    connection.__wincloud_busy = (connection.__wincloud_busy ?? 0) + 1
    return result.then(
      (value: unknown) => {
        settle(undefined, sql, status, sentAt)
        return value
      },
      (error: unknown) => {
        settle(error, sql, status, sentAt)
        throw error
      },
    )
  }
}

/** Whether a connection idle since `lastUsed` still answers within `timeoutMs`. */
async function answers(connection: PooledClient, timeoutMs: number): Promise<boolean> {
  try {
    await connection.query({ text: 'select 1', query_timeout: timeoutMs })
    return connection.__knex__disposed === undefined
  } catch {
    return false
  }
}

/** How long a pooled connection's polite close may take before its socket is cut (ms). */
const CLOSE_GRACE_MS = 1_000

/**
 * Keeps a dead connection out of knex's pool. pg reports a lost connection to the query that was running before
 * it emits the client's `end`, and knex gives the connection back to the pool in between: without this, the next
 * caller is handed the dead connection and fails too. Each new connection's queries are watched (see
 * `watchQueries`); the pool refuses a connection pg already knows is ending or not queryable; and a connection idle
 * longer than `guard.idleCheckMs` must answer a ping before it is handed out (a server restart or a middlebox that
 * dropped the connection while it sat in the pool), which costs a round trip only after such a rest. When a ping
 * fails, every other connection idle as long is retired with it without a ping of its own: they went quiet on the
 * same network at the same time, and pinging them one by one would make the caller wait a ping timeout for each.
 * Closing a connection cuts its socket after a second without the server's goodbye.
 *
 * @internal
 */
export function guardConnections(knex: Knex, guard: ConnectionGuard): void {
  const client = knex.client as unknown as {
    acquireRawConnection(): Promise<PooledClient>
    validateConnection(connection: PooledClient): boolean | Promise<boolean>
    destroyRawConnection(connection: PooledClient): Promise<void>
    _acquireOnlyConnection(): Promise<PooledClient>
    connectionSettings: unknown
    driver: { Client: new (settings: unknown) => PooledClient & { connect(): Promise<void> } }
  }
  // knex's own making of a connection (knex 3.1–3.3, PostgreSQL dialect), plus what it leaves out: a connection whose
  // connect failed (a timeout, a refused password, a TLS mismatch) has its socket cut, instead of lingering half open
  // until the server gives up on it and keeping the process alive meanwhile.
  client._acquireOnlyConnection = async () => {
    const connection = new client.driver.Client(client.connectionSettings)
    connection.on('error', (error?: unknown) => {
      connection.__knex__disposed = error
    })
    connection.on('end', (error?: unknown) => {
      connection.__knex__disposed = error ?? 'Connection ended unexpectedly'
    })
    try {
      await connection.connect()
    } catch (error) {
      cutSocket(connection)
      throw error
    }
    return connection
  }
  const open = new Set<PooledClient>()
  const acquire = client.acquireRawConnection.bind(client)
  client.acquireRawConnection = async () => {
    const connection = await acquire()
    watchQueries(connection, guard)
    connection.__wincloud_lastUsed = Date.now()
    open.add(connection)
    connection.on('end', () => open.delete(connection))
    return connection
  }
  // Only connections resting in the pool: one checked out (a transaction waiting on the host between statements, a
  // pinned connection) is not idle, however long since its last query, and must never be cut under its holder.
  const pool = (): { free?: readonly { resource: PooledClient }[] } | undefined =>
    (knex.client as unknown as { pool?: { free?: readonly { resource: PooledClient }[] } }).pool
  const retireIdleSince = (before: number, failed: PooledClient): void => {
    for (const { resource: other } of pool()?.free ?? []) {
      if (other === failed || !open.has(other) || (other.__wincloud_lastUsed ?? 0) > before) continue
      other.__knex__disposed ??= 'an idle connection of the same age failed its ping'
      cutSocket(other)
    }
  }
  const validate = client.validateConnection.bind(client)
  client.validateConnection = (connection) => {
    if (connection._ending === true || connection._queryable === false || !validate(connection)) return false
    const lastUsed = connection.__wincloud_lastUsed
    if (guard.idleCheckMs <= 0 || lastUsed === undefined || Date.now() - lastUsed < guard.idleCheckMs) return true
    return answers(connection, guard.pingTimeoutMs).then((alive) => {
      if (!alive) {
        cutSocket(connection)
        retireIdleSince(Date.now() - guard.idleCheckMs, connection)
      }
      return alive
    })
  }
  const destroy = client.destroyRawConnection.bind(client)
  client.destroyRawConnection = async (connection) => {
    open.delete(connection)
    const timer = setTimeout(() => cutSocket(connection), CLOSE_GRACE_MS)
    timer.unref()
    try {
      await destroy(connection)
    } finally {
      clearTimeout(timer)
    }
  }
}

/**
 * How many more times a read lost on arrival runs: each failure retires its connection, so this bounds the dead
 * connections one read may meet (several die at once when a server restarts or a network resets them).
 *
 * @internal
 */
export const LOST_READ_RETRIES = 16

/**
 * Runs again a read that knex ran on a connection of its pool and that failed because the connection was lost as
 * the read was sent (`isLostOnArrival`): the pool handed out a connection whose end it had not heard of yet (a backend
 * killed while idle, a server restart, a reset), the read got no result, and the pool has discarded that connection.
 * Again while that is what happens, at most {@link LOST_READ_RETRIES} times. Only a single SELECT outside a
 * transaction and on no connection the caller chose; never a write. The error of a read that fails otherwise is
 * its own.
 *
 * @internal
 */
export function retryLostReads(knex: Knex, isLostOnArrival: (error: unknown) => boolean): void {
  const client = knex.client as unknown as { runner(builder: unknown): { run(): Promise<unknown> } }
  const runner = client.runner.bind(client)
  client.runner = (builder) => {
    const first = runner(builder)
    const run = first.run.bind(first)
    first.run = async () => {
      for (let retries = 0; ; retries++) {
        try {
          return await (retries === 0 ? run() : runner(builder).run())
        } catch (error) {
          if (retries >= LOST_READ_RETRIES || !isLostOnArrival(error) || !isPlainRead(builder)) throw error
        }
      }
    }
    return first
  }
}

/** Whether a builder is one SELECT, run on a connection of the pool (not one the caller chose). */
function isPlainRead(builder: unknown): boolean {
  const b = builder as { _connection?: unknown; toSQL(): unknown }
  if (b._connection !== undefined) return false
  const compiled = b.toSQL() as { sql?: unknown } | unknown[]
  if (Array.isArray(compiled)) return false
  return typeof compiled.sql === 'string' && /^\s*select\b/i.test(compiled.sql)
}

/** A knex client's connection settings, merged with `overrides`, as `open` gets them. @internal */
export type OpenConnection = (overrides: Readonly<Record<string, unknown>>) => Promise<PooledClient>

/**
 * Lets `connect` decide which server each new pooled connection goes to: it gets `open`, which makes a connection
 * the way knex does (its error and end listeners included) with the client's settings merged with the overrides it
 * is given (another host, a connect timeout), and returns the connection to use. knex then checks the server
 * version and sets the search path as usual.
 *
 * @internal
 */
export function connectThrough(knex: Knex, connect: (open: OpenConnection) => Promise<PooledClient>): void {
  const client = knex.client as unknown as {
    connectionSettings: Record<string, unknown>
    _acquireOnlyConnection(): Promise<PooledClient>
  }
  const openOne = client._acquireOnlyConnection.bind(client)
  const open: OpenConnection = (overrides) => {
    const settings = client.connectionSettings
    // knex reads its settings synchronously when it makes the client: swap them in for that one call.
    client.connectionSettings = { ...settings, ...overrides }
    try {
      return openOne()
    } finally {
      client.connectionSettings = settings
    }
  }
  client._acquireOnlyConnection = () => connect(open)
}

/** A connection made by {@link connectThrough}'s `open`. @internal */
export type { PooledClient as RawConnection }
