import { ConfigError } from '../../errors/index.js'
import { parseConnection, type ConnectionOptions } from './connection.js'
import { fieldTargets, urlTargets } from './hosts.js'
import { integer } from './fields.js'

/**
 * `replicas` (each checked as a `connection`, its errors named `replicas[i]…`), `maxReplicaLagMs` and
 * `replicaCheckIntervalMs`.
 *
 * @internal
 */
export function parseReplicas(
  value: unknown,
  maxReplicaLagMs: unknown,
  checkIntervalMs: unknown,
): {
  readonly replicas: readonly (string | ConnectionOptions)[]
  readonly maxReplicaLagMs: number
  readonly replicaCheckIntervalMs: number
} {
  if (value !== undefined && !Array.isArray(value)) {
    throw new ConfigError('replicas', 'must be a list of postgres:// URLs or connection fields.')
  }
  const replicas = ((value ?? []) as unknown[]).map((replica, i) => {
    try {
      const parsed = parseConnection(replica)
      const targets = typeof parsed === 'string' ? urlTargets(parsed) : fieldTargets(parsed as Record<string, unknown>)
      if (targets !== undefined) {
        throw new ConfigError(
          'connection',
          'must name one host without target_session_attrs: a host list is for the primary.',
        )
      }
      return parsed
    } catch (error) {
      if (error instanceof ConfigError) {
        const expected = error.message.slice(`Invalid configuration: ${error.field} `.length)
        throw new ConfigError(`replicas[${i}]${error.field.slice('connection'.length)}`, expected)
      }
      throw error
    }
  })
  if (replicas.length > 16) throw new ConfigError('replicas', 'must list at most 16 replicas.')
  return {
    replicas: Object.freeze(replicas),
    maxReplicaLagMs: integer(maxReplicaLagMs, 'maxReplicaLagMs', 0, 3_600_000, 5_000),
    replicaCheckIntervalMs: integer(checkIntervalMs, 'replicaCheckIntervalMs', 10, 60_000, 250),
  }
}
