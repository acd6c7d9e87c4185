import type { Knex } from 'knex'

/**
 * The parts of a knex query builder (knex 3.1–3.3, PostgreSQL dialect) that scoping reads and rewrites: its
 * statements (where clauses, joins, unions, CTEs) and its single-valued parts (table, insert rows, update data,
 * increments, RETURNING, the upsert's conflict target and merge). The one description of knex's internals; read by
 * access/enforce.ts (narrowing) and audit/builder-writes.ts (one audited statement per write).
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
