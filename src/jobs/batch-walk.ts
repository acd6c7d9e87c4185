import type { Knex } from 'knex'
import { ValidationError } from '../errors/index.js'
import { blindIndex } from '../crypto/blind-index.js'
import { encryptedProperties, type EncryptedProperty } from '../crypto/columns.js'
import type { Keyring } from '../crypto/keyring.js'
import type { EncryptedModel } from '../crypto/key-usage.js'

/**
 * One encrypted column a job walks: its table, its ciphertext column and the property it holds.
 *
 * @internal
 */
export interface WalkedColumn {
  readonly table: string
  readonly column: string
  readonly property: EncryptedProperty
}

/**
 * Where a value is: its table, column and row id (what an envelope and an inventory entry are bound to).
 *
 * @internal
 */
export interface WalkedPlace {
  readonly table: string
  readonly column: string
  readonly rowId: string
}

/**
 * The encrypted columns of `models`, in order; throws a `ValidationError` when `models` is not a list of model
 * classes.
 *
 * @internal
 */
export function columnsOf(models: readonly EncryptedModel[]): WalkedColumn[] {
  const list: unknown = models
  const isModel = (m: unknown): boolean =>
    typeof m === 'function' && typeof (m as { tableName?: unknown }).tableName === 'string'
  if (!Array.isArray(list) || !list.every(isModel)) {
    throw new ValidationError('models must be a list of model classes.', [
      { field: 'models', message: 'must be a list of model classes' },
    ])
  }
  return models.flatMap((model) =>
    encryptedProperties(model as never).map((property) => ({
      table: model.tableName,
      column: property.ciphertextColumn,
      property,
    })),
  )
}

/**
 * `batchSize` when it is an integer from 1 to 10000; a `ValidationError` otherwise.
 *
 * @internal
 */
export function checkBatchSize(batchSize: unknown): number {
  if (typeof batchSize !== 'number' || !Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
    throw new ValidationError('batchSize must be an integer from 1 to 10000.', [
      { field: 'batchSize', message: 'must be an integer from 1 to 10000' },
    ])
  }
  return batchSize
}

/**
 * The blind index of a decrypted value under the current blind-index key (null for non-strings).
 *
 * @internal
 */
export function currentIndex(ring: Keyring, walked: WalkedColumn, value: unknown): string | null {
  const { property } = walked
  if (property.blindIndexColumn === undefined || typeof value !== 'string') return null
  return blindIndex(ring, walked.table, property.blindIndexColumn, value, property.blindIndex)
}

/**
 * Runs `batch` again and again, each time in a transaction of its own, until it returns true: each batch commits
 * before the next begins, so a run that stops keeps what the batches before did.
 *
 * @internal
 */
export async function inBatches(knex: Knex, batch: (trx: Knex.Transaction) => Promise<boolean>): Promise<void> {
  for (;;) {
    const done = await knex.transaction((trx) => batch(trx))
    if (done) break
  }
}

/** The id before every UUID: where a walk by id starts. */
const FIRST_ID = '00000000-0000-0000-0000-000000000000'

/**
 * Walks rows by id in batches of `batchSize`, each batch its own transaction: `select` reads (and locks) the next
 * rows after an id, at most `batchSize` of them, and `work` handles them. The walk ends at an empty batch or one
 * shorter than `batchSize`. Because it goes by id, a run that stops anywhere is resumed by running it again.
 *
 * @internal
 */
export async function walkById<Row extends { readonly id: string }>(
  knex: Knex,
  batchSize: number,
  select: (trx: Knex.Transaction, after: string) => Promise<readonly Row[]>,
  work: (trx: Knex.Transaction, rows: readonly Row[]) => Promise<void>,
): Promise<void> {
  let after = FIRST_ID
  await inBatches(knex, async (trx) => {
    const rows = await select(trx, after)
    if (rows.length === 0) return true
    await work(trx, rows)
    after = rows[rows.length - 1]!.id
    return rows.length < batchSize
  })
}
