import type { Knex } from 'knex'
import { toDataError } from '../errors/driver-errors.js'
import { isUuid } from '../internal/uuid.js'
import { ValidationError } from '../errors/index.js'
import type { BulkOptions } from './bulk.js'

/**
 * The plans of bulk operations: which ids, in which order, in which chunks, in which transactions. The statements
 * each chunk runs are access/'s (the one audited-write builder); this folder decides only how the work is cut.
 */

/** Where a bulk operation runs: a knex or the scope's transaction, and the scope's row-level security settings. @internal */
export interface BulkRunner {
  readonly runner: Knex | Knex.Transaction
  /** Opens each transaction with the scope's RLS settings, unless the scope already runs in one. */
  readonly rlsSql?: string | undefined
  readonly inTransaction: boolean
}

/** An id as a not-found list reports it: any value as text, never a throw (an object without a prototype included). */
function idText(id: unknown): string {
  try {
    return String(id)
  } catch {
    return Object.prototype.toString.call(id)
  }
}

/**
 * The key under which rows with the same patch share one check, or undefined when the patch must be checked for its
 * own row: only a patch of JSON values that survive JSON as themselves (strings, finite numbers, booleans, null, and
 * plain lists and objects of them) has a key, so two patches share a check only when they are equal.
 */
function sharedPatchKey(patch: Record<string, unknown>): string | undefined {
  const exact = (value: unknown): boolean => {
    if (value === null || typeof value === 'string' || typeof value === 'boolean') return true
    if (typeof value === 'number') return Number.isFinite(value)
    if (Array.isArray(value)) return value.every(exact)
    if (typeof value !== 'object') return false
    const proto = Object.getPrototypeOf(value) as unknown
    return (proto === Object.prototype || proto === null) && Object.values(value).every(exact)
  }
  return Object.values(patch).every(exact) ? JSON.stringify(patch) : undefined
}

/**
 * Ids to work on in lock order: the well-formed ones deduplicated (lower case) and sorted, so concurrent bulk calls
 * over overlapping ids lock them in the same order and cannot deadlock; the rest are reported as not found.
 *
 * @internal
 */
export function planIds(ids: readonly unknown[]): { sorted: string[]; notFound: string[] } {
  const wanted = new Set<string>()
  const notFound: string[] = []
  for (const id of ids) {
    if (isUuid(id)) wanted.add(id.toLowerCase())
    else notFound.push(idText(id))
  }
  return { sorted: [...wanted].sort(), notFound }
}

/** Rows of `bulkUpdateEach` that change the same columns: one statement shape. @internal */
export interface RowGroup {
  readonly columns: string[]
  readonly rows: { id: string; values: unknown[] }[]
}

/** A patch as columns and values, checked. @internal */
export interface CheckedPatch {
  readonly columns: string[]
  readonly values: unknown[]
}

/**
 * Plans `bulkUpdateEach`: each row `{ id, ...patch }` checked once (rows with the same patch share one check unless
 * `perRow` says the patch depends on its row, as an encrypted value does), grouped by the columns they change (one
 * statement shape per group), each group in id order. Malformed ids are not found; a repeated id is an error.
 *
 * @internal
 */
export function planRowGroups(
  rows: readonly unknown[],
  check: (patch: Record<string, unknown>, id: string) => CheckedPatch,
  perRow: (patch: Record<string, unknown>) => boolean,
): { groups: RowGroup[]; ids: Set<string>; notFound: string[] } {
  if (!Array.isArray(rows)) {
    throw new ValidationError('bulkUpdateEach needs a list of rows.', [{ field: 'rows', message: 'must be a list' }])
  }
  const notFound: string[] = []
  const groups = new Map<string, RowGroup>()
  const ids = new Set<string>()
  const shared = new Map<string, CheckedPatch>()
  const now = new Date()
  for (const [i, row] of rows.entries()) {
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw new ValidationError(`rows[${i}] must be an object with an id.`, [
        { field: `rows[${i}]`, message: 'must be an object' },
      ])
    }
    const { id, ...patch } = row as Record<string, unknown>
    if (!isUuid(id)) {
      notFound.push(idText(id))
      continue
    }
    const key = id.toLowerCase()
    if (ids.has(key)) {
      throw new ValidationError(`rows[${i}] repeats an id.`, [{ field: `rows[${i}].id`, message: 'repeats an id' }])
    }
    ids.add(key)
    const patchKey = perRow(patch) ? undefined : sharedPatchKey(patch)
    let checked = patchKey === undefined ? undefined : shared.get(patchKey)
    if (checked === undefined) {
      checked = check(patch, key)
      if (patchKey !== undefined) shared.set(patchKey, checked)
    }
    const { columns, values } = checked
    const shape = columns.join(',')
    let group = groups.get(shape)
    if (group === undefined) {
      group = { columns, rows: [] }
      groups.set(shape, group)
    }
    // One updated_at for the whole call, as one statement would give.
    group.rows.push({ id: key, values: values.map((v, c) => (columns[c] === 'updated_at' ? now : v)) })
  }
  for (const group of groups.values()) group.rows.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0))
  return { groups: [...groups.values()], ids, notFound }
}

/**
 * Runs `work` once per chunk, in one transaction (`'all'`) or one per chunk (`'chunk'`), each opened with the
 * scope's RLS settings, reporting progress after each chunk.
 *
 * @internal
 */
export async function inTransactions<T>(
  target: BulkRunner,
  mode: 'all' | 'chunk',
  batches: Iterable<T>,
  work: (trx: Knex.Transaction, batch: T) => Promise<number>,
  onProgress: BulkOptions['onProgress'],
  total: number | undefined,
): Promise<void> {
  const { runner, rlsSql, inTransaction } = target
  const begin = async (trx: Knex.Transaction): Promise<void> => {
    if (rlsSql !== undefined && !inTransaction) await trx.raw(rlsSql)
  }
  let chunk = 0
  let done = 0
  const step = async (trx: Knex.Transaction, batch: T): Promise<void> => {
    done += await work(trx, batch)
    chunk += 1
    onProgress?.({ chunk, done, total })
  }
  try {
    if (mode === 'all') {
      await runner.transaction(async (trx) => {
        await begin(trx)
        for (const batch of batches) await step(trx, batch)
      })
    } else {
      for (const batch of batches) {
        await runner.transaction(async (trx) => {
          await begin(trx)
          await step(trx, batch)
        })
      }
    }
  } catch (error) {
    throw toDataError(error)
  }
}
