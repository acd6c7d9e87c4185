import type { Knex } from 'knex'
import { quoteIdentifier } from '../internal/identifiers.js'
import { readStoredValue } from '../crypto/columns.js'
import { encryptValue } from '../crypto/envelope.js'
import { isFernetToken } from '../crypto/fernet.js'
import type { Keyring } from '../crypto/keyring.js'
import type { EncryptedModel } from '../crypto/key-usage.js'
import { checkBatchSize, columnsOf, currentIndex, walkById, type WalkedColumn, type WalkedPlace } from './batch-walk.js'
import type { CryptoJob } from './crypto-job.js'
import { inventoryCompleted, inventoryEntries, vouchedFor } from './legacy-inventory.js'

/**
 * Progress of `db.crypto.rotate()`, after each batch.
 *
 * @example
 * ```ts
 * await db.crypto.rotate({ onProgress: (p: RotationProgress) => console.log(`${p.table}.${p.column}: ${p.rotated}`) })
 * ```
 */
export interface RotationProgress {
  readonly table: string
  readonly column: string
  /** Values re-encrypted so far in this run, all columns. */
  readonly rotated: number
  /** Blind indexes recomputed under `blindIndexKey` so far in this run (only while `previousBlindIndexKeys` are set). */
  readonly reindexed: number
  /** Fernet tokens left as they were so far in this run, all columns: see {@link LegacyTokenRefusal}. */
  readonly refused: number
}

/**
 * Why `db.crypto.rotate()` left a Fernet token as it was instead of making it an envelope bound to its row:
 *
 * - `no-inventory`: no inventory of legacy tokens was completed for the column. Take it with
 *   `db.crypto.inventoryLegacyTokens()` right after importing the Python backend's data.
 * - `not-in-inventory`: the inventory has no entry for this row: the token was written or moved here after it.
 * - `moved`: the row's entry is for another token: this one was moved or copied here (or swapped) since.
 * - `no-key`: `encryption.blindIndexKey`, which keys the inventory, is not configured.
 *
 * @example
 * ```ts
 * const { refusals } = await db.crypto.rotate()
 * for (const r of refusals) log.warn({ table: r.table, column: r.column, rowId: r.rowId }, r.message)
 * ```
 */
export interface LegacyTokenRefusal {
  readonly table: string
  readonly column: string
  readonly rowId: string
  readonly reason: 'no-inventory' | 'not-in-inventory' | 'moved' | 'no-key'
  /** What it means and what to do; never the value. */
  readonly message: string
}

/**
 * What `db.crypto.rotate()` did.
 *
 * @example
 * ```ts
 * const { rotated, refused }: RotationResult = await db.crypto.rotate()
 * ```
 */
export interface RotationResult {
  /** Values re-encrypted under the current key (Fernet tokens made envelopes included). */
  readonly rotated: number
  /** Blind indexes recomputed under `blindIndexKey` (only while `previousBlindIndexKeys` are set). */
  readonly reindexed: number
  /** Fernet tokens left as they were, because the inventory does not vouch for them at their row. */
  readonly refused: number
  /** The first 100 of them, each with its reason. */
  readonly refusals: readonly LegacyTokenRefusal[]
}

const REFUSALS_LISTED = 100

const REFUSAL_MESSAGES: Record<LegacyTokenRefusal['reason'], string> = {
  'no-inventory':
    'Fernet token left as it is: no inventory of legacy tokens was taken for this column. Take it with ' +
    'db.crypto.inventoryLegacyTokens() (command line: wincloud-data inventory-legacy) right after importing the ' +
    "Python backend's data, before anyone else can write to the database, then rotate again.",
  'not-in-inventory':
    'Fernet token left as it is: the legacy-token inventory has no entry for this row, so it was written or moved ' +
    'here after the inventory was taken.',
  moved:
    "Fernet token left as it is: this row's inventory entry is for another token, so this one was moved or copied " +
    'here, or replaced, after the inventory was taken.',
  'no-key':
    'Fernet token left as it is: encryption.blindIndexKey, which keys the legacy-token inventory, is not configured.',
}

/** The counts of one rotation run, all columns, and the first refusals. */
class RotationTally {
  rotated = 0
  reindexed = 0
  refused = 0
  readonly refusals: LegacyTokenRefusal[] = []

  refuse(place: WalkedPlace, reason: LegacyTokenRefusal['reason']): void {
    this.refused += 1
    if (this.refusals.length < REFUSALS_LISTED) {
      this.refusals.push({ ...place, reason, message: REFUSAL_MESSAGES[reason] })
    }
  }
}

/** One rotation run: its settings, keys and counts so far. */
interface RotationRun {
  readonly knex: Knex
  readonly ring: Keyring
  readonly batchSize: number
  /** The `like` pattern of values under the current key. */
  readonly current: string
  readonly inventoryKeys: readonly Buffer[]
  readonly tally: RotationTally
  readonly onProgress: ((progress: RotationProgress) => void) | undefined
}

interface StoredRow {
  readonly id: string
  readonly value: string
  readonly bidx: string | null
}

/**
 * `db.crypto.rotate()`: see `DatabaseCrypto.rotate`.
 *
 * @internal
 */
export async function rotateKeys(
  job: CryptoJob,
  options: {
    batchSize?: number
    models?: readonly EncryptedModel[]
    onProgress?: (progress: RotationProgress) => void
  },
): Promise<RotationResult> {
  const ring = job.needKeyring('rotate keys')
  const batchSize = checkBatchSize(options.batchSize ?? 500)
  const columns = columnsOf(options.models ?? job.defaultModels)
  const current = `v1.${ring.currentKeyId}.%`
  const tally = new RotationTally()
  const run: RotationRun = {
    knex: job.knex,
    ring,
    batchSize,
    current,
    inventoryKeys: ring.legacyInventoryKeys(),
    tally,
    onProgress: options.onProgress,
  }
  await job.dataErrors(async () => {
    for (const walked of columns) await rotateColumn(run, walked)
    const { rotated, reindexed, refused } = tally
    await job.summarize('crypto.rotate', 'key rotation', { rotated, reindexed, refused, currentKey: ring.currentKeyId })
  })
  return { rotated: tally.rotated, reindexed: tally.reindexed, refused: tally.refused, refusals: tally.refusals }
}

/** Rotates (and re-indexes) the values of one column in batches. */
async function rotateColumn(run: RotationRun, walked: WalkedColumn): Promise<void> {
  const { ring, tally } = run
  const { table, column } = walked
  // Whether this column's legacy-token inventory was completed: asked once, when its first token shows up.
  let completed: boolean | undefined | null = null
  const t = quoteIdentifier(table)
  const c = quoteIdentifier(column)
  const indexColumn = walked.property.blindIndexColumn
  // While an old blind-index key is retired, every value is visited (its index may be stale); otherwise only
  // values not under the current key. Either way the walk is by id, so a run that stops anywhere is resumed
  // by running it again.
  const reindex = indexColumn !== undefined && ring.previousBlindIndexCount > 0
  // A rotated value's index is written too: that fills the ones a value from the Python backend never had.
  const b = indexColumn === undefined ? undefined : quoteIdentifier(indexColumn)
  await walkById<StoredRow>(
    run.knex,
    run.batchSize,
    async (trx, after) => {
      const { rows } = await trx.raw<{ rows: StoredRow[] }>(
        `select id::text as id, ${c} as value, ${b ?? 'null'} as bidx from ${t}
         where ${c} is not null ${reindex ? '' : `and ${c} not like ?`} and id > ?
         order by id limit ? for no key update`,
        reindex ? [after, run.batchSize] : [run.current, after, run.batchSize],
      )
      return rows
    },
    async (trx, rows) => {
      // A Fernet token names no row: it becomes an envelope bound to this row only when the inventory, taken
      // before anyone could move it, recorded it here.
      const tokenIds = rows.filter((row) => isFernetToken(row.value)).map((row) => row.id)
      if (tokenIds.length > 0 && completed === null) completed = await inventoryCompleted(trx, table, column)
      const entries =
        tokenIds.length > 0 && completed !== undefined && run.inventoryKeys.length > 0
          ? await inventoryEntries(trx, table, column, tokenIds)
          : new Map<string, Buffer>()
      const batch = rotateRows(run, walked, rows, { reindex, completed, entries })
      if (batch.ids.length > 0) {
        await trx.raw(
          `update ${t} set ${c} = v.value${b === undefined ? '' : `, ${b} = v.bidx`}
           from unnest(?::uuid[], ?::text[], ?::text[]) as v(id, value, bidx) where ${t}.id = v.id`,
          [batch.ids, batch.values, batch.indexes] as Knex.RawBinding[],
        )
      }
      if (batch.converted.length > 0) {
        await trx.raw(
          `delete from wincloud_legacy_tokens where table_name = ? and column_name = ? and row_id = any(?::text[])`,
          [table, column, batch.converted] as Knex.RawBinding[],
        )
      }
      const { rotated, reindexed, refused } = tally
      run.onProgress?.({ table, column, rotated, reindexed, refused })
    },
  )
}

/**
 * The new values and indexes of a batch's rows (re-encrypted under the current key, indexes recomputed), and the
 * Fernet tokens among them that the inventory vouched for; refusals and counts go to the run's tally.
 */
function rotateRows(
  run: RotationRun,
  walked: WalkedColumn,
  rows: readonly StoredRow[],
  column: {
    readonly reindex: boolean
    readonly completed: boolean | undefined | null
    readonly entries: ReadonlyMap<string, Buffer>
  },
): { ids: string[]; values: string[]; indexes: (string | null)[]; converted: string[] } {
  const { ring, tally, inventoryKeys } = run
  const { table } = walked
  const ids: string[] = []
  const values: string[] = []
  const indexes: (string | null)[] = []
  const converted: string[] = []
  for (const row of rows) {
    const place = { table, column: walked.column, rowId: row.id }
    const underCurrent = row.value.startsWith(`v1.${ring.currentKeyId}.`)
    if (underCurrent && !column.reindex) continue
    if (isFernetToken(row.value)) {
      const entry = column.entries.get(row.id)
      if (inventoryKeys.length === 0) {
        tally.refuse(place, 'no-key')
        continue
      }
      if (entry === undefined) {
        tally.refuse(place, column.completed === true ? 'not-in-inventory' : 'no-inventory')
        continue
      }
      if (!vouchedFor(inventoryKeys, place, row.value, entry)) {
        tally.refuse(place, 'moved')
        continue
      }
      converted.push(row.id)
    }
    const plaintext = readStoredValue(ring, row.value, place)
    const index = currentIndex(ring, walked, plaintext)
    if (underCurrent && index === row.bidx) continue
    ids.push(row.id)
    values.push(underCurrent ? row.value : encryptValue(ring, plaintext, place))
    indexes.push(index)
    if (!underCurrent) tally.rotated += 1
    if (walked.property.blindIndexColumn !== undefined && index !== row.bidx) tally.reindexed += 1
  }
  return { ids, values, indexes, converted }
}
