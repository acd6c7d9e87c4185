import { UnavailableError } from '../../errors/index.js'
import type { HealthReport } from '../../observability/health.js'
import { defineCommand, intOption, UsageError } from '../command.js'
import { withDatabase } from '../with-database.js'

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
    primary: { host: 'unknown', changedAt: null, changes: 0 },
    replicas: [],
    error: 'could not connect',
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
 * `wincloud-data health`: the health report; exit 3 when the database is unhealthy.
 *
 * @internal
 */
export const healthCommand = defineCommand({
  name: 'health',
  summary: 'print the health report; exit 3 when the database is unhealthy',
  help: `Usage: wincloud-data health [--timeout-ms <n>] [--exact] [--key-usage] [--json] [--url <url>]

Prints the health report: status and why, round trip, server version, pool, rows per table (planner
estimates; --exact counts them), pending migrations, and with --key-usage the values each encryption key
protects (keys from WINCLOUD_ENCRYPTION). --json prints the report as JSON. Answers within --timeout-ms
(default 1000).
Exit codes: 0 healthy or degraded, 3 unhealthy (including a database that cannot be reached), 2 bad usage.
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
      // A database that cannot be reached at all is the plainest unhealthy.
      if (!(error instanceof UnavailableError)) throw error
      report = unreachableReport()
    }
    if (values.json === true) io.out(JSON.stringify(report, null, 2))
    else for (const line of describeHealth(report)) io.out(line)
    return report.status === 'unhealthy' ? 'checkFailed' : 'ok'
  },
})
