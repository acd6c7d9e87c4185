import { describe, expect, it } from 'vitest'
import {
  AuthenticationError,
  ConfigError,
  ConflictError,
  DataError,
  DecryptionError,
  ForbiddenError,
  InvalidCursorError,
  isDataError,
  NotFoundError,
  UnavailableError,
  ValidationError,
} from '../../src/index.js'

describe('errors', () => {
  it.each([
    [new ValidationError('bad', [{ field: 'name', message: 'is too short' }]), 'VALIDATION_FAILED', 400],
    [new AuthenticationError(), 'AUTHENTICATION_FAILED', 401],
    [new ForbiddenError('delete', 'AuditLog'), 'FORBIDDEN', 403],
    [new NotFoundError('Droplet', 'abc'), 'NOT_FOUND', 404],
    [new ConflictError('dup', 'unique', 'users', ['email'], 'users_email_unique'), 'CONFLICT', 409],
    [new InvalidCursorError(), 'INVALID_CURSOR', 400],
    [new DecryptionError(), 'DECRYPTION_FAILED', 500],
    [new UnavailableError('down'), 'UNAVAILABLE', 503],
    [new ConfigError('pool.max', 'must be positive.'), 'CONFIG_INVALID', 500],
  ])('%s has its code and HTTP status', (error, code, status) => {
    expect(error).toBeInstanceOf(DataError)
    expect(error).toBeInstanceOf(Error)
    expect(isDataError(error)).toBe(true)
    expect(error.code).toBe(code)
    expect(error.httpStatus).toBe(status)
    expect(error.name).toBe(error.constructor.name)
    const json = JSON.parse(JSON.stringify(error)) as Record<string, unknown>
    expect(json).toMatchObject({ name: error.name, code, message: error.message, httpStatus: status })
  })

  it('keeps the cause out of JSON and the message', () => {
    const cause = Object.assign(new Error('duplicate key'), {
      detail: 'Key (email)=(alice@example.com) already exists.',
    })
    const error = new ConflictError('dup', 'unique', 'users', ['email'], 'users_email_unique', { cause })
    expect(error.cause).toBe(cause)
    expect(JSON.stringify(error)).not.toContain('alice@example.com')
    expect(Object.keys(error)).not.toContain('cause')
  })

  it('keeps subclasses apart under instanceof', () => {
    expect(new NotFoundError('Droplet')).not.toBeInstanceOf(ValidationError)
    expect(new ValidationError('x')).not.toBeInstanceOf(NotFoundError)
    expect(new Error('x')).not.toBeInstanceOf(DataError)
    expect(isDataError(new Error('x'))).toBe(false)
    expect(isDataError(null)).toBe(false)
    expect(isDataError({ code: 'NOT_FOUND' })).toBe(false)
  })

  it('recognises an error made by another copy of the package through the Symbol.for brand', () => {
    // What a second copy's NotFoundError looks like to this copy: same global symbols, other classes.
    class OtherDataError extends Error {}
    const foreign = new OtherDataError('Droplet not found.')
    Object.defineProperty(foreign, Symbol.for('@wincloud/data:error'), { value: true })
    Object.defineProperty(foreign, Symbol.for('@wincloud/data:error-kinds'), {
      value: ['NotFoundError', 'DataError'],
    })
    expect(isDataError(foreign)).toBe(true)
    expect(foreign).toBeInstanceOf(NotFoundError)
    expect(foreign).toBeInstanceOf(DataError)
    expect(foreign).not.toBeInstanceOf(ValidationError)
  })

  it('lists validation details and serialises them', () => {
    const error = new ValidationError('Droplet is invalid', [
      { field: 'name', message: 'is too short', keyword: 'minLength' },
    ])
    expect(error.toJSON().details).toEqual([{ field: 'name', message: 'is too short', keyword: 'minLength' }])
    expect(Object.isFrozen(error.details)).toBe(true)
  })

  it('says only "Decryption failed"', () => {
    expect(new DecryptionError().message).toBe('Decryption failed')
  })
})
