import { defineCommand, intOption, showProgress, UsageError } from '../command.js'
import { withDatabase } from '../with-database.js'

/** `[########------------]  40%  1,234 / 3,085` */
function progressBar(done: number, total: number, width = 24): string {
  const share = total === 0 ? 1 : Math.min(1, done / total)
  const filled = Math.round(share * width)
  const percent = `${Math.round(share * 100)}%`.padStart(4)
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${percent}  ${done.toLocaleString('en')} / ${total.toLocaleString('en')}`
}

/**
 * `wincloud-data rotate-keys`: every encrypted value under the current key, with a progress bar.
 *
 * @internal
 */
export const rotateKeysCommand = defineCommand({
  name: 'rotate-keys',
  summary: 're-encrypt every encrypted value under the current key, with progress',
  help: `Usage: wincloud-data rotate-keys [--batch-size <n>] [--url <url>]

Re-encrypts, under the current key, every encrypted value that is under another key or is a Fernet token from the
Python backend, in batches (default 500 rows, each batch its own transaction), with a progress bar on stderr (a line
per batch when stderr is not a terminal). Safe
to stop and run again: it resumes with what is left. Then prints how many values each key protects.
A Fernet token is re-encrypted only where inventory-legacy recorded it; the others are left as they are and listed
on stderr with the reason.
Reads DATABASE_URL unless --url is given, and the keys from WINCLOUD_ENCRYPTION.`,
  options: { 'batch-size': { type: 'string' } },
  async run({ values, url, io }) {
    const batchSize = intOption(values['batch-size'], 'batch-size')
    if (!io.env.WINCLOUD_ENCRYPTION) throw new UsageError('rotate-keys needs the keys in WINCLOUD_ENCRYPTION')
    await withDatabase(
      url,
      async (db) => {
        const started = Date.now()
        // The total for the bar: every value not under the current key (blind indexes are not counted ahead).
        const before = await db.crypto.keyUsage()
        const current = (JSON.parse(io.env.WINCLOUD_ENCRYPTION!) as { current?: string }).current
        const total = Object.entries(before.total)
          .filter(([key]) => key !== current)
          .reduce((sum, [, n]) => sum + n, 0)
        const { rotated, reindexed, refused, refusals } = await db.crypto.rotate({
          ...(batchSize === undefined ? {} : { batchSize }),
          onProgress: (p) =>
            showProgress(
              io,
              `${progressBar(p.rotated, total)}  ${p.table}.${p.column}` +
                (p.reindexed > 0 ? `, ${p.reindexed} blind indexes recomputed` : ''),
            ),
        })
        io.status?.('')
        io.out(
          `rotated ${rotated} values` +
            (reindexed > 0 ? `, recomputed ${reindexed} blind indexes` : '') +
            ` in ${((Date.now() - started) / 1000).toFixed(1)} s`,
        )
        if (refused > 0) {
          io.err(`left ${refused} Fernet tokens as they were:`)
          for (const r of refusals) io.err(`  ${r.table}.${r.column} row ${r.rowId}: ${r.message}`)
          if (refused > refusals.length) io.err(`  … and ${refused - refusals.length} more`)
        }
        const usage = await db.crypto.keyUsage()
        for (const column of usage.columns) {
          const keys = Object.entries(column.keys).map(([key, n]) => `${key} ${n}`)
          io.out(`${column.table}.${column.column}: ${keys.length ? keys.join(', ') : 'no values'}`)
        }
      },
      io.env,
    )
    return 'ok'
  },
})
