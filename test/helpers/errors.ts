import { expect } from 'vitest'
import { ConfigError, ValidationError } from '../../src/errors/index.js'
import { parseConfig } from '../../src/db/config.js'

/** What `fn` throws (fails the test when it throws nothing). */
export function caught(fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  throw new Error('nothing was thrown')
}

/** Expects `fn` to throw a ValidationError with this message and exactly one detail naming `field`. */
export function expectInvalid(fn: () => unknown, field: string, message: string, detail: string): void {
  const error = caught(fn)
  expect(error).toBeInstanceOf(ValidationError)
  const e = error as ValidationError
  expect(e.code).toBe('VALIDATION_FAILED')
  expect(e.httpStatus).toBe(400)
  expect(e.message).toBe(message)
  expect(e.details.map((d) => ({ field: d.field, message: d.message }))).toEqual([{ field, message: detail }])
}

/** The ConfigError `parseConfig` throws for `input` (fails the test when it accepts the input). */
export function configError(input: unknown): ConfigError {
  const error = caught(() => parseConfig(input))
  expect(error).toBeInstanceOf(ConfigError)
  return error as ConfigError
}
