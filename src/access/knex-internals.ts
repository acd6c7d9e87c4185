import type { Knex } from 'knex'

// The one module that reaches into knex's internals on the query path (checked against knex 3.1–3.3, PostgreSQL
// dialect): the builder's statements and single-valued parts, its compilation, running a statement on a connection
// the caller holds, and keeping dead connections out of the pool. (The collectors of observability/ read the pool's
// figures from the side.)

/**
 * The parts of a knex query builder (knex 3.1–3.3, PostgreSQL dialect) that scoping reads and rewrites: its
 * statements (where clauses, joins, unions, CTEs) and its single-valued parts (table, insert rows, update data,
 * increments, RETURNING, the upsert's conflict target and merge): read by access/enforce.ts (narrowing) and
 * access/query-writes.ts (one audited statement per write).
 *
 * @internal
 */
export interface KnexInternals {
  _method: string
  _statements: { grouping: string }[]
  _single: {
    table?: unknown
    insert?: unknown
    update?: Record<string, unknown>
    counter?: Record<string, number>
    updateFrom?: unknown
    returning?: unknown
    onConflict?: unknown
    merge?: { updates?: unknown }
    ignore?: unknown
  }
  client: { queryBuilder(): Knex.QueryBuilder; raw(sql: string): Knex.Raw }
}

/** A knex query builder seen through its internals. @internal */
export const internalsOf = (knexBuilder: Knex.QueryBuilder): KnexInternals => knexBuilder as unknown as KnexInternals

/** `droplets.user_id` → `user_id`. @internal */
export const unqualified = (column: string): string => column.slice(column.lastIndexOf('.') + 1)

/** The columns of the rows an INSERT writes, in first-seen order (knex keeps them as column → value objects). @internal */
export function insertedColumns(insert: unknown): string[] {
  const rows = Array.isArray(insert) ? (insert as unknown[]) : [insert]
  const columns = new Set<string>()
  for (const row of rows) {
    if (typeof row !== 'object' || row === null) continue
    for (const column of Object.keys(row)) columns.add(column)
  }
  return [...columns]
}

/** The columns an upsert's `merge(…)` names (a list, or an object of column → value), unqualified. @internal */
export function mergedColumns(updates: unknown): string[] {
  const named = Array.isArray(updates)
    ? (updates as unknown[]).map(String)
    : typeof updates === 'object' && updates !== null
      ? Object.keys(updates)
      : []
  return named.map(unqualified)
}

/** A connection as knex's pool hands it out (a pg client); the pool destroys one whose `__knex__disposed` is set. */
interface PooledConnection {
  query(sql: string): Promise<unknown>
  __knex__disposed?: unknown
}

/** What {@link withPinnedConnection} gives its work: text sent straight on the connection, and knex statements on it. @internal */
export interface PinnedConnection {
  /** Sends text on the connection as one simple-protocol message (several statements allowed, no bindings). */
  send(sql: string): Promise<unknown>
  /** Runs a statement through knex (its events, its error handling) on the same connection. */
  raw<R>(sql: string, bindings: readonly unknown[]): Promise<R>
  /** Makes knex's pool destroy the connection when it is given back (its state is unknown: a rollback failed). */
  discard(reason: unknown): void
}

/**
 * Runs `work` on one connection taken from knex's pool, given back afterwards whatever happens. knex's runner uses
 * a builder's `_connection` when one is set, which is how a statement goes through knex on a connection the caller
 * holds (checked against knex 3.1–3.3).
 *
 * @internal
 */
export async function withPinnedConnection<T>(
  knex: Knex,
  work: (connection: PinnedConnection) => Promise<T>,
): Promise<T> {
  const client = knex.client as unknown as {
    acquireConnection(): Promise<PooledConnection>
    releaseConnection(connection: PooledConnection): Promise<void>
  }
  const connection = await client.acquireConnection()
  try {
    return await work({
      send: (sql) => connection.query(sql),
      raw: async <R>(sql: string, bindings: readonly unknown[]) =>
        (await Object.assign(knex.raw(sql, bindings as Knex.RawBinding[]), { _connection: connection })) as R,
      discard: (reason) => {
        connection.__knex__disposed ??= reason ?? 'discarded'
      },
    })
  } finally {
    await client.releaseConnection(connection)
  }
}

/** A query as knex compiles it for PostgreSQL, with its RETURNING list. @internal */
export type Sql = Knex.Sql & { returning?: unknown }

/** A compiled query as knex runs it: SQL, bindings, and how to turn the response into the result. @internal */
export interface CompiledQuery extends Sql {
  output?: (response: { rows: Record<string, unknown>[] }) => unknown
}

/**
 * Makes `knexBuilder` compile to what `rewrite` returns: knex calls a builder's own `toSQL` when it runs it, and
 * `compile` is knex's compilation of the builder as it stands (its prototype's `toSQL`).
 *
 * @internal
 */
export function replaceCompilation(
  knexBuilder: Knex.QueryBuilder,
  rewrite: (compile: () => Sql) => CompiledQuery,
): void {
  const prototype = Object.getPrototypeOf(knexBuilder) as { toSQL(this: Knex.QueryBuilder): Sql }
  const compile = (): Sql => prototype.toSQL.call(knexBuilder)
  ;(knexBuilder as unknown as { toSQL: () => CompiledQuery }).toSQL = () => rewrite(compile)
}

/**
 * Compiles the statement without its RETURNING clause, and with `where` (SQL, no bindings) added to its where
 * clauses when given; the builder is left as it was.
 *
 * @internal
 */
export function withoutReturning(internals: KnexInternals, compile: () => Sql, where?: Knex.Raw): Sql {
  const returning = internals._single.returning
  const statements = internals._statements
  internals._single.returning = undefined
  if (where !== undefined)
    internals._statements = [
      ...statements,
      { grouping: 'where', type: 'whereRaw', value: where, bool: 'and', not: false } as never,
    ]
  try {
    return compile()
  } finally {
    internals._single.returning = returning
    internals._statements = statements
  }
}

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
    if (!error || !guard.isLost(error)) return
    guard.noteLoss(error, sql, status, now - sentAt)
    connection.__knex__disposed ??= error
    // A reply that never came (pg's query_timeout) may mean a network that swallows packets, where a polite close
    // would wait forever: cut the socket.
    if ((error as { message?: unknown }).message === 'Query read timeout') {
      ;(connection as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream?.destroy?.()
    }
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
      return query(...args)
    }
    const result = query(...args)
    if (!(result instanceof Promise)) return result
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

/**
 * Keeps a dead connection out of knex's pool. pg reports a lost connection to the query that was running before
 * it emits the client's `end`, and knex gives the connection back to the pool in between: without this, the next
 * caller is handed the dead connection and fails too. Each new connection's queries are watched (see
 * `watchQueries`); the pool refuses a connection pg already knows is ending or not queryable; and a connection idle
 * longer than `guard.idleCheckMs` must answer a ping before it is handed out (a server restart or a middlebox that
 * dropped the connection while it sat in the pool), which costs a round trip only after such a rest.
 *
 * @internal
 */
export function guardConnections(knex: Knex, guard: ConnectionGuard): void {
  const client = knex.client as unknown as {
    acquireRawConnection(): Promise<PooledClient>
    validateConnection(connection: PooledClient): boolean | Promise<boolean>
  }
  const acquire = client.acquireRawConnection.bind(client)
  client.acquireRawConnection = async () => {
    const connection = await acquire()
    watchQueries(connection, guard)
    connection.__wincloud_lastUsed = Date.now()
    return connection
  }
  const validate = client.validateConnection.bind(client)
  client.validateConnection = (connection) => {
    if (connection._ending === true || connection._queryable === false || !validate(connection)) return false
    const lastUsed = connection.__wincloud_lastUsed
    if (guard.idleCheckMs <= 0 || lastUsed === undefined || Date.now() - lastUsed < guard.idleCheckMs) return true
    return answers(connection, guard.pingTimeoutMs)
  }
}

/**
 * Retries, once, a read that knex ran on a connection of its pool and that failed because the connection was lost as
 * the read was sent (`isLostOnArrival`): the pool handed out a connection whose end it had not heard of yet (a backend
 * killed while idle, a server restart), the read got no result, and the pool has discarded that connection. Only a
 * single SELECT outside a transaction and on no connection the caller chose; never a write. The error of a read that
 * failed twice is the second one.
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
      try {
        return await run()
      } catch (error) {
        if (!isLostOnArrival(error) || !isPlainRead(builder)) throw error
        return runner(builder).run()
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
