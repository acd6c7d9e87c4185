import { ConfigError } from '../../errors/index.js'

/**
 * True for an object that is not an array: the shape of every section of the configuration.
 *
 * @internal
 */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * An integer from `min` to `max`, or `fallback` when the field is left out.
 *
 * @internal
 */
export function integer(value: unknown, field: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(field, `must be an integer from ${min} to ${max}.`)
  }
  return value
}

/**
 * Refuses a key of `value` that is not in `allowed`; `prefix` is the section's path, e.g. `pool.`.
 *
 * @internal
 */
export function checkKeys(value: Record<string, unknown>, allowed: readonly string[], prefix: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw new ConfigError(`${prefix}${key}`, `is not a known option (expected one of: ${allowed.join(', ')}).`)
    }
  }
}

/**
 * An optional section: an object with only the `allowed` keys, or `{}` when the field is left out (or null).
 *
 * @internal
 */
export function section(value: unknown, field: string, allowed: readonly string[]): Record<string, unknown> {
  const object = value ?? {}
  if (!isPlainObject(object)) throw new ConfigError(field, 'must be an object.')
  checkKeys(object, allowed, `${field}.`)
  return object
}

/**
 * An optional boolean: `true`, `false`, or left out.
 *
 * @internal
 */
export function optionalBoolean(value: unknown, field: string): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') throw new ConfigError(field, 'must be true or false.')
  return value
}
