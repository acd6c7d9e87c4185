import { defineCommand } from '../command.js'
import { withDatabase } from '../with-database.js'

/**
 * `wincloud-data migrate latest|rollback|status`.
 *
 * @internal
 */
export const migrateCommand = defineCommand({
  name: 'migrate',
  summary: {
    latest: 'apply every pending migration',
    rollback: 'roll back the last batch (--all: every batch)',
    status: 'list applied and pending migrations',
  },
  help: `Usage: wincloud-data migrate <latest|rollback|status> [--all] [--url <url>]

  latest     apply every pending migration in one batch
  rollback   roll back the last batch; with --all, every batch
  status     list applied and pending migrations; exits 0 either way

Reads DATABASE_URL unless --url is given.`,
  options: { all: { type: 'boolean' } },
  async run({ sub, values, url, io }) {
    await withDatabase(url, async (db) => {
      if (sub === 'latest') {
        const result = await db.migrate.latest()
        io.out(result.migrations.length ? `applied: ${result.migrations.join(', ')}` : 'already up to date')
      } else if (sub === 'rollback') {
        const result = await db.migrate.rollback({ all: values.all === true })
        io.out(result.migrations.length ? `rolled back: ${result.migrations.join(', ')}` : 'nothing to roll back')
      } else {
        const status = await db.migrate.status()
        for (const name of status.applied) io.out(`applied  ${name}`)
        for (const name of status.pending) io.out(`pending  ${name}`)
      }
    })
    return 'ok'
  },
})
