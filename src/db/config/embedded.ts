import { ConfigError } from '../../errors/index.js'
import { integer, isPlainObject, section } from './fields.js'

/**
 * Settings of the embedded PostgreSQL started when `connection` is omitted.
 *
 * @example
 * ```ts
 * const db = await createDatabase({ embedded: { port: 54329 } })
 * ```
 */
export interface EmbeddedConfig {
  /** TCP port on 127.0.0.1; a free one is picked when omitted. */
  port?: number
  /** Extra `-c name=value` server settings, e.g. `{ fsync: 'off' }` for throwaway test clusters. */
  settings?: Record<string, string>
}

/**
 * `embedded`: the port and server settings; refused beside a `connection`.
 *
 * @internal
 */
export function parseEmbedded(value: unknown, hasConnection: boolean): EmbeddedConfig {
  const embedded = section(value, 'embedded', ['port', 'settings'])
  if (embedded.port !== undefined) integer(embedded.port, 'embedded.port', 1024, 65_535, 0)
  const settings = embedded.settings
  if (settings !== undefined) {
    if (!isPlainObject(settings)) throw new ConfigError('embedded.settings', 'must be an object of strings.')
    for (const [name, setting] of Object.entries(settings)) {
      if (!/^[a-z_][a-z0-9_.]*$/.test(name)) {
        throw new ConfigError(`embedded.settings.${name}`, 'is not a PostgreSQL setting name.')
      }
      if (typeof setting !== 'string') throw new ConfigError(`embedded.settings.${name}`, 'must be a string.')
    }
  }
  if (hasConnection && value !== undefined) {
    throw new ConfigError('embedded', 'only applies when connection is omitted.')
  }
  return Object.freeze({ ...(embedded as EmbeddedConfig) })
}
