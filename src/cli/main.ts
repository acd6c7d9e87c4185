import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { createDatabase, type Database } from '../db/create-database.js'
import { isDataError, UnavailableError } from '../errors/index.js'
import type { HealthReport } from '../observability/health.js'

/** Exit codes of `wincloud-data`. */
const EXIT = { ok: 0, failure: 1, usage: 2, checkFailed: 3 } as const

const HELP: Record<string, string> = {
  main: `Usage: wincloud-data <command> [options]

Commands:
  migrate latest      apply every pending migration
  migrate rollback    roll back the last batch (--all: every batch)
  migrate status      list applied and pending migrations
  seed                seed a development database (idempotent)
  audit verify        check the audit log's hash chain; exit 3 names the first tampered row
  audit enable-chain  turn the audit log's hash chain on (for good)
  audit purge         delete audit rows older than --before, recording that it did (--reason)
  inventory-legacy    record where each Fernet token of the Python backend is (right after importing)
  rotate-keys         re-encrypt every encrypted value under the current key, with progress
  health              print the health report; exit 3 when the database is unhealthy

Options:
  --url <url>         PostgreSQL URL (default: the DATABASE_URL environment variable)

Encryption keys come from WINCLOUD_ENCRYPTION: the JSON of the encryption configuration
({"keys": {"k2026": "<base64>"}, "current": "k2026", "blindIndexKey": "…", "legacyFernetKeys": ["…"]}).

  -h, --help          show help for a command
  -v, --version       print the version

Exit codes: 0 success, 1 the command failed (database unreachable, migration error, …), 2 bad usage,
3 a check failed: the audit log's hash chain is broken (audit verify) or the database is unhealthy (health).`,
  health: `Usage: wincloud-data health [--timeout-ms <n>] [--exact] [--key-usage] [--json] [--url <url>]

Prints the health report: status and why, round trip, server version, pool, rows per table (planner
estimates; --exact counts them), pending migrations, and with --key-usage the values each encryption key
protects (keys from WINCLOUD_ENCRYPTION). --json prints the report as JSON. Answers within --timeout-ms
(default 1000).
Exit codes: 0 healthy or degraded, 3 unhealthy (including a database that cannot be reached), 2 bad usage.
Reads DATABASE_URL unless --url is given.`,
  migrate: `Usage: wincloud-data migrate <latest|rollback|status> [--all] [--url <url>]

  latest     apply every pending migration in one batch
  rollback   roll back the last batch; with --all, every batch
  status     list applied and pending migrations; exits 0 either way

Reads DATABASE_URL unless --url is given.`,
  seed: `Usage: wincloud-data seed [--users <n>] [--droplets-per-user <n>] [--url <url>]

Creates an admin (admin@wincloud.test), sample users and their droplets, unless they exist already.
The admin password is taken from WINCLOUD_ADMIN_PASSWORD, or generated and printed once when the admin is created.
Reads DATABASE_URL unless --url is given.`,
  'rotate-keys': `Usage: wincloud-data rotate-keys [--batch-size <n>] [--url <url>]

Re-encrypts, under the current key, every encrypted value that is under another key or is a Fernet token from the
Python backend, in batches (default 500 rows, each batch its own transaction), with a progress bar on stderr (a line
per batch when stderr is not a terminal). Safe
to stop and run again: it resumes with what is left. Then prints how many values each key protects.
A Fernet token is re-encrypted only where inventory-legacy recorded it; the others are left as they are and listed
on stderr with the reason.
Reads DATABASE_URL unless --url is given, and the keys from WINCLOUD_ENCRYPTION.`,
  'inventory-legacy': `Usage: wincloud-data inventory-legacy [--batch-size <n>] [--reopen] [--url <url>]

Records the place (table, column, row) of every Fernet token from the Python backend, as a keyed digest, so that
rotate-keys makes envelopes only of tokens still where they were found. Run it right after importing the Python
backend's data, before anyone else can write to the database: it trusts the rows as they are. Safe to stop and run
again; once it has completed, later runs record nothing new unless --reopen is given (only for a second import).
Needs blindIndexKey and legacyFernetKeys in WINCLOUD_ENCRYPTION.
Reads DATABASE_URL unless --url is given.`,
  audit: `Usage: wincloud-data audit <verify|enable-chain|purge> [options] [--url <url>]

  verify         walk the hash chain, recomputing every hash; prints how many rows were checked.
                 Exits 0 when intact (or when the chain is off), 3 naming the first row that was modified,
                 deleted or inserted out of band.
  enable-chain   turn the hash chain on (idempotent; needs the owner of audit_logs)
  purge          --before <ISO date> --reason <text>: delete audit rows written before the date, keeping the
                 chain verifiable, and record the purge (needs the owner of audit_logs)

Reads DATABASE_URL unless --url is given.`,
}

interface Io {
  out(line: string): void
  err(line: string): void
  env: NodeJS.ProcessEnv
  /** Redraws one status line in place (a terminal on stderr); absent when stderr is not a terminal. */
  status?: (line: string) => void
}

/** `[########------------]  40%  1,234 / 3,085` */
function progressBar(done: number, total: number, width = 24): string {
  const share = total === 0 ? 1 : Math.min(1, done / total)
  const filled = Math.round(share * width)
  const percent = `${Math.round(share * 100)}%`.padStart(4)
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${percent}  ${done.toLocaleString('en')} / ${total.toLocaleString('en')}`
}

function intOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number`)
  return Number(value)
}

class UsageError extends Error {}

/** The version in the package's own package.json, found from the source and from the build alike. */
function packageVersion(): string {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === '@wincloud/data' && pkg.version) return pkg.version
    } catch {
      // not here: keep walking up
    }
  }
  return 'unknown'
}

async function withDatabase<T>(
  url: string | undefined,
  work: (db: Database) => Promise<T>,
  env: NodeJS.ProcessEnv = {},
  connectTimeoutMs?: number,
): Promise<T> {
  if (!url) throw new UsageError('no database: set DATABASE_URL or pass --url')
  let encryption: unknown
  if (env.WINCLOUD_ENCRYPTION) {
    try {
      encryption = JSON.parse(env.WINCLOUD_ENCRYPTION) as unknown
    } catch {
      throw new UsageError('WINCLOUD_ENCRYPTION must be the JSON of the encryption configuration')
    }
  }
  const db = await createDatabase({
    connection: url,
    ...(encryption === undefined ? {} : { encryption: encryption as never }),
    // The first connection waits at most this long (health answers within its own timeout).
    ...(connectTimeoutMs === undefined ? {} : { pool: { acquireTimeoutMs: connectTimeoutMs } }),
  })
  try {
    return await work(db)
  } finally {
    await db.close()
  }
}

/** The report of a database that refused or did not answer the first connection. */
function unreachableReport(): HealthReport {
  return {
    status: 'unhealthy',
    reasons: ['could not connect'],
    checkedAt: new Date().toISOString(),
    latencyMs: 0,
    database: { serverVersion: null, inRecovery: null },
    pool: { min: 0, max: 0, used: 0, free: 0, pendingAcquires: 0, pendingCreates: 0 },
    tables: {},
    migrations: { pending: null },
    replicas: [],
    error: 'could not connect',
  }
}

/** The report as lines for a terminal. */
function describeHealth(report: HealthReport): string[] {
  const lines = [`status: ${report.status}${report.reasons.length ? ` (${report.reasons.join('; ')})` : ''}`]
  lines.push(`checked at: ${report.checkedAt}, in ${report.latencyMs.toFixed(1)} ms`)
  if (report.database.serverVersion !== null) {
    lines.push(
      `database: PostgreSQL ${report.database.serverVersion}, ${report.database.inRecovery ? 'in recovery (replica)' : 'primary'}`,
    )
  }
  const p = report.pool
  lines.push(
    `pool: ${p.used} used, ${p.free} free, max ${p.max}; ${p.pendingAcquires} waiting, ${p.pendingCreates} opening`,
  )
  const tables = Object.entries(report.tables)
  if (tables.length > 0) {
    lines.push(`tables: ${tables.map(([name, t]) => `${name} ${t.exact ? '' : '~'}${t.rows}`).join(', ')}`)
  }
  if (report.migrations.pending !== null) {
    const pending = report.migrations.pending
    lines.push(
      `migrations: ${pending.length === 0 ? 'up to date' : `${pending.length} pending (${pending.join(', ')})`}`,
    )
  }
  if (report.encryption !== undefined) {
    const usage = report.encryption.keyUsage
    lines.push(
      `encryption: current key ${report.encryption.currentKey}` +
        (usage === undefined
          ? ''
          : `; values per key: ${
              Object.entries(usage)
                .map(([k, n]) => `${k} ${n}`)
                .join(', ') || 'none'
            }`),
    )
  }
  return lines
}

/**
 * Runs the `wincloud-data` command line with `argv` (without node and the script) and returns the exit code.
 *
 * @internal
 */
export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        all: { type: 'boolean' },
        users: { type: 'string' },
        'droplets-per-user': { type: 'string' },
        before: { type: 'string' },
        'batch-size': { type: 'string' },
        reopen: { type: 'boolean' },
        reason: { type: 'string' },
        'timeout-ms': { type: 'string' },
        exact: { type: 'boolean' },
        'key-usage': { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    })
  } catch (error) {
    io.err(`wincloud-data: ${(error as Error).message}\n\n${HELP.main}`)
    return EXIT.usage
  }
  const { values, positionals } = parsed
  const [command, sub] = positionals
  if (values.version) {
    io.out(packageVersion())
    return EXIT.ok
  }
  if (values.help || command === undefined || command === 'help') {
    io.out(HELP[command === 'help' ? (sub ?? 'main') : (command ?? 'main')] ?? HELP.main!)
    return command === undefined && !values.help ? EXIT.usage : EXIT.ok
  }
  const url = values.url ?? io.env.DATABASE_URL
  try {
    switch (command) {
      case 'migrate': {
        if (sub !== 'latest' && sub !== 'rollback' && sub !== 'status') {
          throw new UsageError(`migrate needs one of latest, rollback, status\n\n${HELP.migrate}`)
        }
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
        return EXIT.ok
      }
      case 'seed': {
        const users = intOption(values.users, 'users')
        const dropletsPerUser = intOption(values['droplets-per-user'], 'droplets-per-user')
        await withDatabase(url, async (db) => {
          const adminPassword = io.env.WINCLOUD_ADMIN_PASSWORD || undefined
          const result = await db.seed.development({
            ...(users === undefined ? {} : { users }),
            ...(dropletsPerUser === undefined ? {} : { dropletsPerUser }),
            ...(adminPassword === undefined ? {} : { adminPassword }),
          })
          io.out(`admin ${result.admin.email}: ${result.admin.created ? 'created' : 'already there'}`)
          if (result.admin.generatedPassword) io.out(`admin password (shown once): ${result.admin.generatedPassword}`)
          io.out(`users created: ${result.usersCreated}, droplets created: ${result.dropletsCreated}`)
        })
        return EXIT.ok
      }
      case 'rotate-keys': {
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
              onProgress: (p) => {
                const line =
                  `${progressBar(p.rotated, total)}  ${p.table}.${p.column}` +
                  (p.reindexed > 0 ? `, ${p.reindexed} blind indexes recomputed` : '')
                if (io.status !== undefined) io.status(line)
                else io.err(line)
              },
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
        return EXIT.ok
      }
      case 'inventory-legacy': {
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
              onProgress: (p) => {
                const line = `${p.recorded} recorded  ${p.table}.${p.column}`
                if (io.status !== undefined) io.status(line)
                else io.err(line)
              },
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
        return EXIT.ok
      }
      case 'health': {
        const timeoutMs = intOption(values['timeout-ms'], 'timeout-ms') ?? 1_000
        if (timeoutMs < 1 || timeoutMs > 600_000) throw new UsageError('--timeout-ms must be from 1 to 600000')
        let report: HealthReport
        try {
          report = await withDatabase(
            url,
            (db) =>
              db.health({ timeoutMs, exactCounts: values.exact === true, keyUsage: values['key-usage'] === true }),
            io.env,
            timeoutMs,
          )
        } catch (error) {
          // A database that cannot be reached at all is the plainest unhealthy.
          if (!(error instanceof UnavailableError)) throw error
          report = unreachableReport()
        }
        if (values.json === true) io.out(JSON.stringify(report, null, 2))
        else for (const line of describeHealth(report)) io.out(line)
        return report.status === 'unhealthy' ? EXIT.checkFailed : EXIT.ok
      }
      case 'audit': {
        if (sub !== 'verify' && sub !== 'enable-chain' && sub !== 'purge') {
          throw new UsageError(`audit needs one of verify, enable-chain, purge\n\n${HELP.audit}`)
        }
        let before: Date | undefined
        if (sub === 'purge') {
          before = values.before === undefined ? undefined : new Date(values.before)
          if (before === undefined || Number.isNaN(before.getTime())) {
            throw new UsageError('audit purge needs --before <ISO date>')
          }
          if (!values.reason) throw new UsageError('audit purge needs --reason <text>')
        }
        let code: number = EXIT.ok
        await withDatabase(url, async (db) => {
          if (sub === 'enable-chain') {
            const { enabledAt } = await db.audit.enableHashChain()
            io.out(`hash chain on since ${enabledAt.toISOString()}`)
          } else if (sub === 'purge') {
            const { deleted } = await db.audit.purge({ before: before!, reason: values.reason! })
            io.out(`purged ${deleted} audit rows written before ${before!.toISOString()}`)
          } else {
            const report = await db.audit.verify()
            if (!report.enabled) io.out('hash chain is off: nothing to verify (wincloud-data audit enable-chain)')
            else if (report.ok) io.out(`audit log intact: ${report.checked} rows checked after #${report.anchorSeq}`)
            else {
              const p = report.problem!
              io.out(
                `audit log TAMPERED: ${p.kind} at ${p.id === null ? 'the end of the chain' : `row ${p.id}`}` +
                  `${p.seq === null ? '' : ` (#${p.seq})`}: ${p.message}; ${report.checked} rows were intact before it`,
              )
              code = EXIT.checkFailed
            }
          }
        })
        return code
      }
      default:
        throw new UsageError(`unknown command: ${command}\n\n${HELP.main}`)
    }
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`wincloud-data: ${error.message}`)
      return EXIT.usage
    }
    io.err(`wincloud-data: ${isDataError(error) ? `${error.name}: ${error.message}` : String(error)}`)
    return EXIT.failure
  }
}

if (require.main === module) {
  runCli(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    env: process.env,
    ...(process.stderr.isTTY
      ? {
          status: (line: string) => {
            process.stderr.clearLine(0)
            process.stderr.cursorTo(0)
            process.stderr.write(line)
            if (line === '') process.stderr.cursorTo(0)
          },
        }
      : {}),
  }).then(
    (code) => {
      process.exitCode = code
    },
    (error: unknown) => {
      process.stderr.write(`wincloud-data: ${String(error)}\n`)
      process.exitCode = EXIT.failure
    },
  )
}
