import type { CacheStatus } from '../db/cache.js'
import type { ReplicaStatus } from '../db/replicas.js'
import type { ProbeResult } from './health-probe.js'
import type { PoolStatus } from './pool-status.js'

/**
 * What a check that got its answer weighs: the pool, leaks, the probe's findings, the replicas and the cache.
 *
 * @internal
 */
export interface HealthFindings {
  readonly pool: PoolStatus
  /** Connections held past `observability.connectionLeakMs`. */
  readonly leaks: number
  readonly found: ProbeResult
  readonly degradedLatencyMs: number
  readonly replicas: readonly ReplicaStatus[]
  readonly cache: CacheStatus | undefined
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}

/**
 * Why an answered check is `degraded`, in the order of the rules of `HealthReport`: none when it is healthy.
 *
 * @internal
 */
export function degradedReasons(findings: HealthFindings): string[] {
  const { pool, leaks, found, degradedLatencyMs } = findings
  const reasons: string[] = []
  if (pool.pendingAcquires > 0) {
    reasons.push(
      `${plural(pool.pendingAcquires, 'caller')} ${pool.pendingAcquires === 1 ? 'waits' : 'wait'} for a connection`,
    )
  }
  if (pool.used >= pool.max) reasons.push('every pooled connection is in use')
  if (leaks > 0) reasons.push(`${plural(leaks, 'connection')} held past observability.connectionLeakMs`)
  if (found.pending.length > 0) reasons.push(`${plural(found.pending.length, 'migration')} pending`)
  if (found.roundTripMs > degradedLatencyMs) reasons.push(`round trip over ${degradedLatencyMs} ms`)
  if (found.countsTimedOut) reasons.push('exact counts or key usage did not finish in time')
  reasons.push(...replicaReasons(findings.replicas))
  const { cache } = findings
  if (cache !== undefined && cache.state !== 'ok') reasons.push(`cache ${cache.state}: reads go to the database`)
  return reasons
}

/** The replica section: a replica not checked yet (just after start) is not a problem; one lagging or down is. */
function replicaReasons(replicas: readonly ReplicaStatus[]): string[] {
  const out = replicas.filter((r) => r.state === 'lagging' || r.state === 'down').length
  if (out === 0) return []
  return [`${out} of ${plural(replicas.length, 'replica')} serve${out === 1 ? 's' : ''} no reads`]
}
