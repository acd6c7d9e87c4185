import { ValidationError } from '../errors/index.js'

/**
 * Options of the bulk operations.
 *
 * @example
 * ```ts
 * await repo.bulkUpdate(ids, { status: 'stopped' }, { chunkSize: 2_000, onProgress: (p) => bar.update(p.done) })
 * ```
 */
export interface BulkOptions {
  /** Rows per statement, 1 to 10,000 (default 5,000): well under PostgreSQL's 65,535 bind parameters. */
  readonly chunkSize?: number
  /**
   * `'all'` (default): every chunk in one transaction, all or nothing. `'chunk'`: a transaction per chunk, for very
   * large jobs; a failure leaves the chunks before it done (the result of the failed call is then an error).
   */
  readonly transaction?: 'all' | 'chunk'
  /** Called after each chunk. */
  readonly onProgress?: (progress: BulkProgress) => void
}

/**
 * Progress of a bulk operation, after each chunk.
 *
 * @example
 * ```ts
 * const log = (p: BulkProgress) => console.log(`${p.done}/${p.total ?? '?'} after chunk ${p.chunk}`)
 * ```
 */
export interface BulkProgress {
  /** Chunks finished. */
  readonly chunk: number
  /** Rows changed so far. */
  readonly done: number
  /** Ids or rows asked for, when known (undefined for filter-based updates). */
  readonly total: number | undefined
}

/**
 * The result of a bulk update by ids: which ids were changed, and which were not found (missing, or outside the
 * scope: the two are not told apart).
 *
 * @example
 * ```ts
 * const { updated, notFound }: BulkResult = await repo.bulkUpdate(ids, { status: 'stopped' })
 * ```
 */
export interface BulkResult {
  readonly updated: string[]
  readonly notFound: string[]
}

/** @internal */
export const CHUNK = Object.freeze({ default: 5_000, max: 10_000 })

/** @internal */
export function checkBulkOptions(options: unknown): Required<Omit<BulkOptions, 'onProgress'>> & BulkOptions {
  if (options === undefined) return { chunkSize: CHUNK.default, transaction: 'all' }
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ValidationError('Bulk options must be an object.', [{ field: 'options', message: 'must be an object' }])
  }
  const { chunkSize = CHUNK.default, transaction = 'all', onProgress } = options as BulkOptions
  for (const key of Object.keys(options)) {
    if (key !== 'chunkSize' && key !== 'transaction' && key !== 'onProgress') {
      throw new ValidationError('Unknown bulk option.', [{ field: 'options', message: 'has an unknown option' }])
    }
  }
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > CHUNK.max) {
    throw new ValidationError(`chunkSize must be an integer from 1 to ${CHUNK.max}.`, [
      { field: 'chunkSize', message: `must be an integer from 1 to ${CHUNK.max}`, keyword: 'range' },
    ])
  }
  if (transaction !== 'all' && transaction !== 'chunk') {
    throw new ValidationError("transaction must be 'all' or 'chunk'.", [
      { field: 'transaction', message: "must be 'all' or 'chunk'" },
    ])
  }
  if (onProgress !== undefined && typeof onProgress !== 'function') {
    throw new ValidationError('onProgress must be a function.', [
      { field: 'onProgress', message: 'must be a function' },
    ])
  }
  return onProgress === undefined ? { chunkSize, transaction } : { chunkSize, transaction, onProgress }
}

/** Splits a list into chunks of at most `size`. @internal */
export function* chunks<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size)
}
