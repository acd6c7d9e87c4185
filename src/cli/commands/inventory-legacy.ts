import { defineCommand, intOption, showProgress, UsageError } from '../command.js'
import { withDatabase } from '../with-database.js'

/**
 * `wincloud-data inventory-legacy`: records where each Fernet token of the Python backend is.
 *
 * @internal
 */
export const inventoryLegacyCommand = defineCommand({
  name: 'inventory-legacy',
  summary: 'record where each Fernet token of the Python backend is (right after importing)',
  help: `Usage: wincloud-data inventory-legacy [--batch-size <n>] [--reopen] [--url <url>]

Records the place (table, column, row) of every Fernet token from the Python backend, as a keyed digest, so that
rotate-keys makes envelopes only of tokens still where they were found. Run it right after importing the Python
backend's data, before anyone else can write to the database: it trusts the rows as they are. Safe to stop and run
again; once it has completed, later runs record nothing new unless --reopen is given (only for a second import).
Needs blindIndexKey and legacyFernetKeys in WINCLOUD_ENCRYPTION.
Reads DATABASE_URL unless --url is given.`,
  options: { 'batch-size': { type: 'string' }, reopen: { type: 'boolean' } },
  async run({ values, url, io }) {
    const batchSize = intOption(values['batch-size'], 'batch-size')
    if (!io.env.WINCLOUD_ENCRYPTION) {
      throw new UsageError('inventory-legacy needs the keys in WINCLOUD_ENCRYPTION')
    }
    await withDatabase(
      url,
      async (db) => {
        const result = await db.crypto.inventoryLegacyTokens({
          ...(batchSize === undefined ? {} : { batchSize }),
          reopen: values.reopen === true,
          onProgress: (p) => showProgress(io, `${p.recorded} recorded  ${p.table}.${p.column}`),
        })
        io.status?.('')
        io.out(
          `recorded ${result.recorded} Fernet tokens, ${result.alreadyRecorded} already recorded, ` +
            `${result.moved} moved since, ${result.unlisted} not recorded (inventory completed before), ` +
            `${result.unreadable} unreadable`,
        )
      },
      io.env,
    )
    return 'ok'
  },
})
