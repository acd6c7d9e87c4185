import { ConfigError } from '../../errors/index.js'
import { checkKeys, integer, isPlainObject } from './fields.js'
import { fieldTargets, urlTargets, type TargetSessionAttrs } from './hosts.js'

export type { TargetSessionAttrs } from './hosts.js'

/**
 * Connection fields, for hosts that do not use a connection string.
 *
 * @example
 * ```ts
 * const connection: ConnectionOptions = { host: '127.0.0.1', port: 5432, user: 'app', password, database: 'wincloud' }
 * ```
 */
export interface ConnectionOptions {
  host?: string
  port?: number
  /**
   * Several servers instead of `host` and `port`, tried in order (after the one last found writable) until one
   * matches `targetSessionAttrs`: the connection follows the primary through a failover. Like libpq's host list.
   */
  hosts?: readonly { host: string; port?: number }[]
  /** What the server must be (default `'read-write'` with `hosts`, `'any'` without); see {@link TargetSessionAttrs}. */
  targetSessionAttrs?: TargetSessionAttrs
  user?: string
  password?: string
  database?: string
  /** Passed to `pg` as is: `true`, or an object of TLS options. */
  ssl?: boolean | Record<string, unknown>
}

/**
 * `connection` (and each of `replicas`): a `postgres://` URL (one host or a libpq host list) or connection fields;
 * never empty.
 *
 * @internal
 */
export function parseConnection(value: unknown): string | ConnectionOptions {
  if (value === undefined || value === null || value === '') {
    throw new ConfigError(
      'connection',
      'is empty. Pass a postgres:// URL (is DATABASE_URL set?), or leave the field out to use an embedded PostgreSQL.',
    )
  }
  if (typeof value === 'string') {
    urlTargets(value)
    return value
  }
  if (!isPlainObject(value)) {
    throw new ConfigError('connection', 'must be a postgres:// URL or an object of connection fields.')
  }
  checkKeys(
    value,
    ['host', 'port', 'hosts', 'targetSessionAttrs', 'user', 'password', 'database', 'ssl'],
    'connection.',
  )
  fieldTargets(value)
  for (const key of ['host', 'user', 'password', 'database'] as const) {
    if (value[key] !== undefined && (typeof value[key] !== 'string' || value[key] === '')) {
      throw new ConfigError(`connection.${key}`, 'must be a non-empty string.')
    }
  }
  integer(value.port, 'connection.port', 1, 65_535, 5432)
  if (value.ssl !== undefined && typeof value.ssl !== 'boolean' && !isPlainObject(value.ssl)) {
    throw new ConfigError('connection.ssl', 'must be a boolean or an object of TLS options.')
  }
  return { ...(value as ConnectionOptions) }
}

/**
 * `applicationName`: the `application_name` of every connection, default `wincloud-data`.
 *
 * @internal
 */
export function parseApplicationName(value: unknown): string {
  const applicationName = value ?? 'wincloud-data'
  if (typeof applicationName !== 'string' || applicationName.length === 0 || applicationName.length > 63) {
    throw new ConfigError('applicationName', 'must be a string of 1 to 63 characters.')
  }
  return applicationName
}
