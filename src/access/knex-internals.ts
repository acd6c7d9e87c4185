import type { Knex } from 'knex'

// With connection-guard.ts, the modules that reach into knex's internals on the query path (checked against knex
// 3.1–3.3, PostgreSQL dialect): here the builder's statements and single-valued parts, its compilation, and running a
// statement on a connection the caller holds; there, the pool's connections. (The collectors of observability/ read
// the pool's figures from the side.)

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
