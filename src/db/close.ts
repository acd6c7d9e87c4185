import type { Knex } from 'knex'
import type { HealthReporter } from '../observability/health.js'
import type { QueryStats } from '../observability/query-stats.js'
import type { ReadCache } from './cache.js'
import type { ResolvedConfig } from './config.js'
import type { EmbeddedServer } from './embedded-postgres.js'
import type { ReplicaSet } from './replicas.js'

/**
 * What `db.close()` stops, in this order.
 *
 * @internal
 */
export interface ClosableParts {
  readonly queryStats: QueryStats
  readonly health: HealthReporter
  readonly replicas: ReplicaSet | undefined
  readonly cache: ReadCache | undefined
  readonly knex: Knex
  readonly server: EmbeddedServer | undefined
  readonly logger: ResolvedConfig['logger']
}

/**
 * Stops the statistics, the health reporter, the replicas and the cache, then closes the pool: connections still
 * checked out get `timeoutMs` to come back, then their sockets are closed. Stops the embedded server last.
 *
 * @internal
 */
export async function closeDatabase(parts: ClosableParts, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  parts.queryStats.close()
  await parts.health.close()
  await parts.replicas?.close()
  await parts.cache?.close()
  try {
    const destroyed = parts.knex.destroy().then(() => true)
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs)
    })
    if (!(await Promise.race([destroyed, late]))) {
      // knex waits for every checked-out connection to be released; end their sockets instead of waiting forever.
      const pool = (parts.knex.client as { pool?: { used?: { resource?: { end?: () => Promise<void> } }[] } }).pool
      const used = pool?.used ?? []
      parts.logger?.warn({ connections: used.length }, 'closing with connections still checked out')
      await Promise.all(used.map((u) => (u.resource?.end?.() ?? Promise.resolve()).catch(() => undefined)))
      await Promise.race([destroyed, new Promise((resolve) => setTimeout(resolve, 1_000).unref())])
    }
  } finally {
    clearTimeout(timer)
    await parts.server?.stop()
  }
}
