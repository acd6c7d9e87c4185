import type { HealthReport, PoolStatus } from './health.js'
import { DURATION_BUCKETS } from './query-groups.js'
import type { QueryStatsReport } from './query-stats.js'

/** A label value as the text exposition format wants it: backslash, quote and newline escaped. */
function label(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

function number(value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (value === Infinity) return '+Inf'
  if (value === -Infinity) return '-Inf'
  // Sums of floating-point milliseconds: nanoseconds are plenty, and 0.0024820000000000003 helps nobody.
  return String(Number.isInteger(value) ? value : Number(value.toPrecision(12)))
}

class Exposition {
  readonly #lines: string[] = []

  family(name: string, type: 'gauge' | 'counter' | 'histogram', help: string): this {
    this.#lines.push(`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`)
    return this
  }

  sample(name: string, labels: Readonly<Record<string, string>>, value: number): this {
    const pairs = Object.entries(labels).map(([k, v]) => `${k}="${label(v)}"`)
    this.#lines.push(`${name}${pairs.length === 0 ? '' : `{${pairs.join(',')}}`} ${number(value)}`)
    return this
  }

  text(): string {
    return `${this.#lines.join('\n')}\n`
  }
}

/**
 * The Prometheus text exposition (format 0.0.4) of the pool, the query timings and, when given, a health report.
 * Metric names start with `wincloud_db_`; queries are labelled by `operation` and by `query_id` (see `db.stats()`
 * for the SQL of an id), never by SQL text or values.
 *
 * @internal
 */
export function renderMetrics(
  pool: PoolStatus,
  stats: QueryStatsReport,
  histograms: ReadonlyMap<string, readonly number[]>,
  health: HealthReport | undefined,
): string {
  const out = new Exposition()
  out.family('wincloud_db_pool_connections', 'gauge', 'Pooled connections by state.')
  out.sample('wincloud_db_pool_connections', { state: 'used' }, pool.used)
  out.sample('wincloud_db_pool_connections', { state: 'free' }, pool.free)
  out.family('wincloud_db_pool_max_connections', 'gauge', 'The most connections the pool opens.')
  out.sample('wincloud_db_pool_max_connections', {}, pool.max)
  out.family('wincloud_db_pool_pending_acquires', 'gauge', 'Callers waiting for a connection.')
  out.sample('wincloud_db_pool_pending_acquires', {}, pool.pendingAcquires)
  out.family('wincloud_db_pool_pending_creates', 'gauge', 'Connections being opened.')
  out.sample('wincloud_db_pool_pending_creates', {}, pool.pendingCreates)

  const c = stats.connections
  out.family('wincloud_db_pool_acquires_total', 'counter', 'Connections handed out by the pool.')
  out.sample('wincloud_db_pool_acquires_total', {}, c.acquires)
  out.family('wincloud_db_pool_acquire_failures_total', 'counter', 'Acquisitions that failed or timed out.')
  out.sample('wincloud_db_pool_acquire_failures_total', {}, c.timeouts)
  out.family('wincloud_db_pool_acquire_wait_seconds_max', 'gauge', 'Longest wait for a connection.')
  out.sample('wincloud_db_pool_acquire_wait_seconds_max', {}, c.maxMs / 1000)
  out.family('wincloud_db_pool_leaked_connections', 'gauge', 'Connections held past the leak threshold.')
  out.sample('wincloud_db_pool_leaked_connections', {}, c.leaks.length)

  out.family('wincloud_db_queries_total', 'counter', 'Queries by normalized SQL.')
  for (const q of stats.queries)
    out.sample('wincloud_db_queries_total', { operation: q.operation, query_id: q.id }, q.calls)
  out.family('wincloud_db_query_errors_total', 'counter', 'Failed queries by normalized SQL.')
  for (const q of stats.queries) {
    out.sample('wincloud_db_query_errors_total', { operation: q.operation, query_id: q.id }, q.errors)
  }
  out.family('wincloud_db_query_rows_total', 'counter', 'Rows returned or changed, by normalized SQL.')
  for (const q of stats.queries)
    out.sample('wincloud_db_query_rows_total', { operation: q.operation, query_id: q.id }, q.rows)
  out.family('wincloud_db_slow_queries_total', 'counter', 'Queries that ran slowQueryMs or longer.')
  out.sample('wincloud_db_slow_queries_total', {}, stats.totals.slow)

  out.family('wincloud_db_query_duration_seconds', 'histogram', 'Query execution time by operation.')
  const totals = new Map<string, { count: number; sum: number }>()
  for (const q of stats.queries) {
    const t = totals.get(q.operation) ?? { count: 0, sum: 0 }
    t.count += q.calls
    t.sum += q.totalMs / 1000
    totals.set(q.operation, t)
  }
  for (const [operation, buckets] of histograms) {
    const t = totals.get(operation) ?? { count: 0, sum: 0 }
    for (const [i, le] of DURATION_BUCKETS.entries()) {
      out.sample('wincloud_db_query_duration_seconds_bucket', { operation, le: String(le) }, buckets[i] ?? 0)
    }
    out.sample('wincloud_db_query_duration_seconds_bucket', { operation, le: '+Inf' }, t.count)
    out.sample('wincloud_db_query_duration_seconds_sum', { operation }, t.sum)
    out.sample('wincloud_db_query_duration_seconds_count', { operation }, t.count)
  }

  if (health !== undefined) healthMetrics(out, health)
  return out.text()
}

/** The health report's figures: up, status, latency, table rows, the topology, migrations, key usage. */
function healthMetrics(out: Exposition, health: HealthReport): void {
  out.family('wincloud_db_up', 'gauge', '1 when the database answered the health check.')
  out.sample('wincloud_db_up', {}, health.status === 'unhealthy' ? 0 : 1)
  out.family('wincloud_db_health_status', 'gauge', 'The health status, one series per status (1 for the current).')
  for (const status of ['healthy', 'degraded', 'unhealthy'] as const) {
    out.sample('wincloud_db_health_status', { status }, health.status === status ? 1 : 0)
  }
  out.family('wincloud_db_health_latency_seconds', 'gauge', 'The health check round trip.')
  out.sample('wincloud_db_health_latency_seconds', {}, health.latencyMs / 1000)
  out.family('wincloud_db_table_rows', 'gauge', 'Rows per table (planner estimate unless exact).')
  for (const [table, t] of Object.entries(health.tables)) {
    out.sample('wincloud_db_table_rows', { table, exact: String(t.exact) }, t.rows)
  }
  topologyMetrics(out, health)
  if (health.migrations.pending !== null) {
    out.family('wincloud_db_migrations_pending', 'gauge', 'Library migrations not applied.')
    out.sample('wincloud_db_migrations_pending', {}, health.migrations.pending.length)
  }
  if (health.encryption?.keyUsage !== undefined) {
    out.family('wincloud_db_encrypted_values', 'gauge', 'Encrypted values per key id.')
    for (const [key, n] of Object.entries(health.encryption.keyUsage)) {
      out.sample('wincloud_db_encrypted_values', { key }, n)
    }
  }
}

/** Failovers of the primary; each replica's state, lag and pool, labelled by its name (host, port, database). */
function topologyMetrics(out: Exposition, health: HealthReport): void {
  out.family('wincloud_db_primary_changes_total', 'counter', 'Times the primary moved to another host (failovers).')
  out.sample('wincloud_db_primary_changes_total', {}, health.primary.changes)
  const replicas = health.replicas
  if (replicas.length === 0) return
  out.family('wincloud_db_replica_up', 'gauge', '1 when the replica serves reads (state ok).')
  for (const r of replicas) out.sample('wincloud_db_replica_up', { replica: r.name }, r.state === 'ok' ? 1 : 0)
  out.family('wincloud_db_replica_lag_seconds', 'gauge', 'How far the replica is behind the primary.')
  for (const r of replicas) {
    if (r.lagMs !== null) out.sample('wincloud_db_replica_lag_seconds', { replica: r.name }, r.lagMs / 1000)
  }
  out.family('wincloud_db_replica_pool_connections', 'gauge', "Each replica pool's connections by state.")
  for (const r of replicas) {
    out.sample('wincloud_db_replica_pool_connections', { replica: r.name, state: 'used' }, r.pool.used)
    out.sample('wincloud_db_replica_pool_connections', { replica: r.name, state: 'free' }, r.pool.free)
  }
  out.family('wincloud_db_replica_pool_pending_acquires', 'gauge', "Callers waiting for a replica's connection.")
  for (const r of replicas) {
    out.sample('wincloud_db_replica_pool_pending_acquires', { replica: r.name }, r.pool.pendingAcquires)
  }
}
