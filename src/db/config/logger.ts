import { ConfigError } from '../../errors/index.js'

/**
 * A pino-compatible logger: each method takes a plain object of fields and a message. `console` works too.
 *
 * @example
 * ```ts
 * import pino from 'pino'
 * const db = await createDatabase({ connection: process.env.DATABASE_URL, logger: pino() })
 * ```
 */
export interface Logger {
  debug(fields: Record<string, unknown>, message?: string): void
  info(fields: Record<string, unknown>, message?: string): void
  warn(fields: Record<string, unknown>, message?: string): void
  error(fields: Record<string, unknown>, message?: string): void
}

/**
 * `logger`: an object with `debug`, `info`, `warn` and `error` methods, or undefined.
 *
 * @internal
 */
export function parseLogger(value: unknown): Logger | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null) {
    throw new ConfigError('logger', 'must be an object with debug, info, warn and error methods.')
  }
  for (const level of ['debug', 'info', 'warn', 'error'] as const) {
    if (typeof (value as Record<string, unknown>)[level] !== 'function') {
      throw new ConfigError(`logger.${level}`, 'must be a function (a pino-compatible logger is expected).')
    }
  }
  return value as Logger
}
