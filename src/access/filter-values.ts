/**
 * What a filter may say about a property of each column type: the operators that apply, and the check of each value
 * (which also gives what is bound for it).
 */
import { isIP } from 'node:net'
import { isUuid } from '../internal/uuid.js'
import { FILTER_LIMITS, Path, invalid, type Field } from './filter-limits.js'
import type { ColumnType } from './filter-types.js'

const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$/

/**
 * The operators of each column type (by {@link typeName}).
 *
 * Caller-controlled names (properties, operators, like forms) are only ever looked up in Maps and Sets, or as own
 * properties: never through an object's prototype chain, where `constructor` or `toString` would be found.
 *
 * @internal
 */
export const OPERATORS: ReadonlyMap<string, ReadonlySet<string>> = new Map([
  ['string', new Set(['eq', 'ne', 'in', 'notIn', 'lt', 'lte', 'gt', 'gte', 'between', 'isNull', 'like', 'ilike'])],
  ['uuid', new Set(['eq', 'ne', 'in', 'notIn', 'isNull'])],
  ['enum', new Set(['eq', 'ne', 'in', 'notIn', 'isNull'])],
  ['integer', new Set(['eq', 'ne', 'in', 'notIn', 'lt', 'lte', 'gt', 'gte', 'between', 'isNull'])],
  ['timestamp', new Set(['eq', 'ne', 'in', 'notIn', 'lt', 'lte', 'gt', 'gte', 'between', 'isNull'])],
  ['boolean', new Set(['eq', 'ne', 'isNull'])],
  ['inet', new Set(['eq', 'ne', 'in', 'notIn', 'isNull'])],
])

const LIKE_FORMS: ReadonlySet<string> = new Set(['startsWith', 'contains', 'endsWith'])

/** Whether an object has `key` as its own property (never one of its prototype's). @internal */
export const hasOwn = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key)

/** The name of a column type: the string, or `'enum'`. @internal */
export const typeName = (type: ColumnType): string => (typeof type === 'string' ? type : 'enum')

/** An object literal (or one made with a null prototype): not an array, a Date or a class instance. @internal */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Date) return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}

/** An ISO 8601 timestamp whose fields are real: no February 30th, no year 0, no hour 25. */
function isRealTimestamp(value: string): boolean {
  const match = ISO_TIMESTAMP.exec(value)
  if (!match) return false
  const [year, month, day] = value.slice(0, 10).split('-').map(Number) as [number, number, number]
  const rest = /[T ](\d{2}):(\d{2})(?::(\d{2}))?/.exec(value)
  const [hour, minute, second] = rest ? [Number(rest[1]), Number(rest[2]), Number(rest[3] ?? 0)] : [0, 0, 0]
  if (year < 1 || year > 9999 || hour > 23 || minute > 59 || second > 59) return false
  const date = new Date(Date.UTC(2000, month - 1, day))
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day && (month !== 2 || day !== 29 || isLeap(year))
}

const isLeap = (year: number): boolean => (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0

/**
 * Checks one value against a column type and returns what is bound for it. Never echoes the value in errors.
 *
 * @internal
 */
export function checkValue(type: ColumnType, value: unknown, field: Field): unknown {
  switch (typeName(type)) {
    case 'string':
      if (typeof value !== 'string') invalid(field, 'must be a string')
      if (value.length > FILTER_LIMITS.stringLength)
        invalid(field, `must be at most ${FILTER_LIMITS.stringLength} characters`)
      if (value.includes('\u0000')) invalid(field, 'must not contain NUL characters')
      return value
    case 'uuid':
      if (!isUuid(value)) invalid(field, 'must be a UUID')
      return value.toLowerCase()
    case 'enum': {
      const allowed = (type as { enum: readonly string[] }).enum
      if (typeof value !== 'string' || !allowed.includes(value)) invalid(field, `must be one of: ${allowed.join(', ')}`)
      return value
    }
    case 'integer':
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) invalid(field, 'must be an integer')
      return value
    case 'boolean':
      if (typeof value !== 'boolean') invalid(field, 'must be true or false')
      return value
    case 'timestamp':
      if (value instanceof Date) {
        const year = value.getUTCFullYear()
        if (Number.isNaN(value.getTime()) || year < 1 || year > 9999)
          invalid(field, 'must be a date in years 1 to 9999')
        return value.toISOString()
      }
      if (typeof value !== 'string' || !isRealTimestamp(value)) {
        invalid(field, 'must be a Date or an ISO 8601 timestamp in years 1 to 9999')
      }
      return value
    case 'inet':
      // Node accepts IPv6 zone ids (fe80::1%eth0); PostgreSQL's inet does not.
      if (typeof value !== 'string' || value.length > 64 || value.includes('%') || isIP(value) === 0) {
        invalid(field, 'must be an IP address')
      }
      return value
    default:
      return invalid(field, 'has an unknown type')
  }
}

const escapeLike = (text: string): string => text.replace(/[\\%_]/g, (c) => `\\${c}`)

/**
 * Checks a `like` / `ilike` operand and returns its form and the pattern bound for it, the text escaped.
 *
 * @internal
 */
export function likeValue(pattern: unknown, field: Field): { form: string; value: string } {
  if (!isPlainObject(pattern)) invalid(field, 'must be { startsWith }, { contains } or { endsWith }')
  const keys = Object.keys(pattern)
  const form = keys[0]
  if (keys.length !== 1 || form === undefined || !LIKE_FORMS.has(form)) {
    invalid(field, 'must be { startsWith }, { contains } or { endsWith }')
  }
  const text = checkValue('string', pattern[form], new Path(field, form)) as string
  const escaped = escapeLike(text)
  const value = form === 'startsWith' ? `${escaped}%` : form === 'endsWith' ? `%${escaped}` : `%${escaped}%`
  return { form, value }
}
