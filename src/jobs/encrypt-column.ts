import type { Knex } from 'knex'
import { quoteIdentifier } from '../internal/identifiers.js'
import { ValidationError } from '../errors/index.js'
import { encryptValue } from '../crypto/envelope.js'
import type { Keyring } from '../crypto/keyring.js'
import type { EncryptedModel } from '../crypto/key-usage.js'
import { checkBatchSize, columnsOf, currentIndex, inBatches, type WalkedColumn } from './batch-walk.js'
import type { CryptoJob } from './crypto-job.js'

/**
 * Progress of `db.crypto.encryptColumn()`, after each batch.
 *
 * @example
 * ```ts
 * const onProgress = (p: EncryptColumnProgress) => console.log(`${p.table}.${p.from}: ${p.encrypted}`)
 * ```
 */
export interface EncryptColumnProgress {
  readonly table: string
  /** The plaintext column being emptied. */
  readonly from: string
  /** Values encrypted so far in this run. */
  readonly encrypted: number
}

/** The encrypted property `property` of `model`, or a `ValidationError`. */
function propertyOf(model: EncryptedModel, property: string): WalkedColumn {
  const walked = columnsOf([model]).find((w) => w.property.property === property)
  if (walked === undefined) {
    throw new ValidationError(`${String(model?.name)}.${String(property)} is not an encrypted property.`, [
      { field: 'property', message: 'must be an encrypted property of the model' },
    ])
  }
  return walked
}

/**
 * `db.crypto.encryptColumn()`: see `DatabaseCrypto.encryptColumn`.
 *
 * @internal
 */
export async function encryptColumn(
  job: CryptoJob,
  model: EncryptedModel,
  property: string,
  options: { from: string; batchSize?: number; onProgress?: (progress: EncryptColumnProgress) => void },
): Promise<{ encrypted: number }> {
  const ring = job.needKeyring('encrypt a column')
  const walked = propertyOf(model, property)
  const from: unknown = options?.from
  if (typeof from !== 'string' || from.length === 0 || from.length > 63 || from === walked.column) {
    throw new ValidationError('from must name the plaintext column.', [
      { field: 'from', message: 'must name the plaintext column (1 to 63 characters), not the ciphertext column' },
    ])
  }
  const batchSize = checkBatchSize(options.batchSize ?? 500)
  const { table, column } = walked
  const t = quoteIdentifier(table)
  const c = quoteIdentifier(column)
  const f = quoteIdentifier(from)
  const indexColumn = walked.property.blindIndexColumn
  const b = indexColumn === undefined ? undefined : quoteIdentifier(indexColumn)
  let encrypted = 0
  await job.dataErrors(async () => {
    // Rows still holding a plaintext: each batch empties the ones it takes, so a run that stops is resumed by
    // running it again.
    await inBatches(job.knex, async (trx) => {
      const { rows } = await trx.raw<{ rows: { id: string; value: string; taken: boolean }[] }>(
        `select id::text as id, ${f}::text as value, ${c} is not null as taken from ${t}
         where ${f} is not null order by id limit ? for no key update`,
        [batchSize],
      )
      if (rows.length === 0) return true
      const batch = encryptRows(ring, walked, rows)
      encrypted += batch.encrypted
      await trx.raw(
        `update ${t} set ${f} = null, ${c} = coalesce(${t}.${c}, v.value)
           ${b === undefined ? '' : `, ${b} = case when ${t}.${c} is null then v.bidx else ${t}.${b} end`}
         from unnest(?::uuid[], ?::text[], ?::text[]) as v(id, value, bidx) where ${t}.id = v.id`,
        [batch.ids, batch.values, batch.indexes] as Knex.RawBinding[],
      )
      options.onProgress?.({ table, from, encrypted })
      return rows.length < batchSize
    })
    await job.summarize('crypto.encrypt_column', 'encrypt column', { table, from, column, encrypted })
  })
  return { encrypted }
}

/**
 * The envelopes and blind indexes of a batch's plaintexts; null for a row whose encrypted property already has a
 * value (it was written since: only its plaintext is emptied).
 */
function encryptRows(
  ring: Keyring,
  walked: WalkedColumn,
  rows: readonly { readonly id: string; readonly value: string; readonly taken: boolean }[],
): { ids: string[]; values: (string | null)[]; indexes: (string | null)[]; encrypted: number } {
  const { table, column } = walked
  const ids: string[] = []
  const values: (string | null)[] = []
  const indexes: (string | null)[] = []
  let encrypted = 0
  for (const row of rows) {
    ids.push(row.id)
    if (row.taken) {
      values.push(null)
      indexes.push(null)
      continue
    }
    values.push(encryptValue(ring, row.value, { table, column, rowId: row.id }))
    indexes.push(currentIndex(ring, walked, row.value))
    encrypted += 1
  }
  return { ids, values, indexes, encrypted }
}
