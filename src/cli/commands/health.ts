import type { HealthReport } from '../../observability/health.js'
import { defineCommand, intOption, UsageError } from '../command.js'
import { OpenDatabaseError, withDatabase } from '../with-database.js'

/**
 * Why the database could not be opened, for the report: the driver's code (`ECONNREFUSED`, `28P01`), else the
 * driver error's class, else the library's code. Never an address or a credential (stderr has the whole message).
 */
function openFailure(error: OpenDatabaseError): string {
  const cause = error.error.cause as { code?: unknown; name?: unknown } | undefined
  for (const label of [cause?.code, cause?.name]) {
    if (typeof label === 'string' && /^\w+$/.test(label) && label.toLowerCase() !== 'error') return label
  }
  return error.error.code
}

/**
 * The report of a database that could not be opened: nothing listens, no answer in time, the credentials or the
 * database refused, a bad connection string. Every such case is the same "could not check" (exit 3).
 */
function unreachableReport(error: OpenDatabaseError): HealthReport {
  const reason = `could not connect (${openFailure(error)})`
  return {
    status: 'unhealthy',
    reasons: [reason],
    checkedAt: new Date().toISOString(),
    latencyMs: 0,
    database: { serverVersion: null, inRecovery: null },
    pool: { min: 0, max: 0, used: 0, free: 0, pendingAcquires: 0, pendingCreates: 0 },
    tables: {},
    migrations: { pending: null },
    primary: { host: 'unknown', changedAt: null, changes: 0 },
    replicas: [],
    error: reason,
  }
}

/** The report as lines for a terminal. */
function describeHealth(report: HealthReport): string[] {
  const lines = [`status: ${report.status}${report.reasons.length ? ` (${report.reasons.join('; ')})` : ''}`]
  lines.push(`checked at: ${report.checkedAt}, in ${report.latencyMs.toFixed(1)} ms`)
  const { primary } = report
  lines.push(
    `primary: ${primary.host}${primary.changedAt === null ? '' : ` (changed ${primary.changes}×, last at ${primary.changedAt})`}`,
  )
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
 * `wincloud-data health`: the health report; exit 3 when the database is unhealthy or its health could not be
 * checked (the database could not be opened, whatever the reason), 0 when healthy or degraded, 2 on bad usage.
 *
 * @example
 * ```ts
 * const code = await runCli(['health', '--timeout-ms', '500'], io) // 3: nothing listens at the URL's host and port
 * ```
 *
 * @internal
 */
export const healthCommand = defineCommand({
  name: 'health',
  summary: 'print the health report; exit 3 when unhealthy or it could not be checked',
  help: `Usage: wincloud-data health [--timeout-ms <n>] [--exact] [--key-usage] [--json] [--url <url>]

Prints the health report: status and why, round trip, server version, pool, rows per table (planner
estimates; --exact counts them), pending migrations, and with --key-usage the values each encryption key
protects (keys from WINCLOUD_ENCRYPTION). --json prints the report as JSON. Answers within --timeout-ms
(default 1000).
Exit codes:
  0  healthy or degraded
  3  unhealthy, or the health could not be checked: the database could not be opened (nothing listens,
     no answer in time, credentials refused, no such database, a bad URL). stderr says why, with the
     driver's error below; the report says "could not connect".
  2  bad usage (an unknown option, a --timeout-ms that is not a number, no DATABASE_URL or --url)
  1  anything else that failed
Reads DATABASE_URL unless --url is given.`,
  options: {
    'timeout-ms': { type: 'string' },
    exact: { type: 'boolean' },
    'key-usage': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run({ values, url, io }) {
    const timeoutMs = intOption(values['timeout-ms'], 'timeout-ms') ?? 1_000
    if (timeoutMs < 1 || timeoutMs > 600_000) throw new UsageError('--timeout-ms must be from 1 to 600000')
    let report: HealthReport
    try {
      report = await withDatabase(
        url,
        (db) => db.health({ timeoutMs, exactCounts: values.exact === true, keyUsage: values['key-usage'] === true }),
        io.env,
        timeoutMs,
      )
    } catch (error) {
      // Whatever kept the database from being opened, its health could not be checked: one exit code for all.
      if (!(error instanceof OpenDatabaseError)) throw error
      io.err(`wincloud-data: ${String(error)}`)
      report = unreachableReport(error)
    }
    if (values.json === true) io.out(JSON.stringify(report, null, 2))
    else for (const line of describeHealth(report)) io.out(line)
    return report.status === 'unhealthy' ? 'checkFailed' : 'ok'
  },
})
