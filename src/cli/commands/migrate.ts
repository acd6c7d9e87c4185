import { createInterface } from 'node:readline'
import type { RollbackPlan, RollbackTable } from '../../db/migrator.js'
import { defineCommand, type Io, UsageError } from '../command.js'
import { withDatabase } from '../with-database.js'

/** `1 row`, `3 rows`. */
function rowCount(rows: number): string {
  return `${rows} ${rows === 1 ? 'row' : 'rows'}`
}

/** Prints what the rollback drops: a line per table, with its row count. */
function printPlan(io: Io, plan: RollbackPlan): void {
  if (plan.tables.length === 0) return
  io.out(`rolling back ${plan.migrations.join(', ')} drops these tables:`)
  const width = Math.max(...plan.tables.map((t) => t.name.length))
  for (const table of plan.tables) {
    const note = table.rows > 0 && !table.holdsData ? ' (none written by the application)' : ''
    io.out(`  ${table.name.padEnd(width)}  ${rowCount(table.rows)}${note}`)
  }
}

/**
 * Asks `question` on the terminal (read from stdin, shown on stderr, or on stdout when stderr is redirected) and
 * resolves with the line typed: an empty answer when the input ends or the user presses Ctrl-C.
 */
function ask(question: string): Promise<string> {
  return new Promise((resolve) => {
    const output = process.stderr.isTTY ? process.stderr : process.stdout
    const rl = createInterface({ input: process.stdin, output })
    let answer = ''
    rl.once('line', (line) => {
      answer = line
      rl.close()
    })
    rl.once('SIGINT', () => rl.close())
    rl.once('close', () => resolve(answer))
    rl.setPrompt(question)
    rl.prompt()
  })
}

/**
 * Goes on only with the user's consent to drop `tables` with their rows: `yes` typed on a terminal. Without a
 * terminal it refuses (the caller gives `--yes` instead). A refusal is a usage error: exit code 2, nothing changed.
 */
async function confirmDrop(tables: readonly RollbackTable[]): Promise<void> {
  const what = tables.map((t) => `${t.name} (${rowCount(t.rows)})`).join(', ')
  if (process.stdin.isTTY !== true) {
    throw new UsageError(
      `migrate rollback would drop tables that hold rows: ${what}. Nothing was changed: pass --yes to drop them, or run it on a terminal to be asked.`,
    )
  }
  const answer = await ask(`Drop ${what}, and every row in them? Type yes to go on: `)
  if (answer.trim() !== 'yes') throw new UsageError('migrate rollback cancelled: nothing was changed')
}

/**
 * `wincloud-data migrate latest|rollback|status`.
 *
 * @internal
 */
export const migrateCommand = defineCommand({
  name: 'migrate',
  summary: {
    latest: 'apply every pending migration',
    rollback: 'roll back the last batch (--all: every batch); asks before dropping rows',
    status: 'list applied and pending migrations',
  },
  help: `Usage: wincloud-data migrate <latest|rollback|status> [--all] [--yes] [--url <url>]

  latest     apply every pending migration in one batch
  rollback   roll back the last batch; with --all, every batch. One transaction: all of it is rolled back,
             or nothing. First lists the tables it drops with their row counts. When any holds rows, asks
             for "yes" on a terminal; without a terminal it refuses (exit 2) unless --yes is given. While
             tables or views outside the library depend on those tables, it refuses, names them and changes
             nothing (exit 1).
  status     list applied and pending migrations; exits 0 either way

Options:
  --all      rollback: every batch, not only the last one
  --yes      rollback: drop tables that hold rows without asking

Reads DATABASE_URL unless --url is given.`,
  options: { all: { type: 'boolean' }, yes: { type: 'boolean' } },
  async run({ sub, values, url, io }) {
    await withDatabase(url, async (db) => {
      if (sub === 'latest') {
        const result = await db.migrate.latest()
        io.out(result.migrations.length ? `applied: ${result.migrations.join(', ')}` : 'already up to date')
      } else if (sub === 'rollback') {
        const all = values.all === true
        const plan = await db.migrate.planRollback({ all })
        printPlan(io, plan)
        const holding = plan.tables.filter((t) => t.holdsData)
        // With objects in the way, the rollback refuses by itself and names them: no question to ask first.
        if (plan.dependents.length === 0 && holding.length > 0 && values.yes !== true) await confirmDrop(holding)
        const result = await db.migrate.rollback({ all })
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
