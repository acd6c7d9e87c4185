import { isIP } from 'node:net'
import { ValidationError } from '../errors/index.js'
import { BoundedMap } from '../internal/bounded-map.js'

/**
 * The type of a filterable or sortable property; it decides which operators apply and which values are accepted.
 *
 * @example
 * ```ts
 * static override filterable: Readonly<Record<string, ColumnType>> = {
 *   status: { enum: ['building', 'active'] },
 *   createdAt: 'timestamp',
 * }
 * ```
 */
export type ColumnType =
  'string' | 'uuid' | 'integer' | 'boolean' | 'timestamp' | 'inet' | { readonly enum: readonly string[] }

/**
 * The `like` / `ilike` forms. The text is matched literally: `%` and `_` in it are escaped.
 *
 * @example
 * ```ts
 * const byPrefix: LikePattern = { startsWith: 'web-' }
 * ```
 */
export type LikePattern = { startsWith: string } | { contains: string } | { endsWith: string }

/**
 * The operators of one property. Several operators on one property are ANDed.
 *
 * @example
 * ```ts
 * const recent: FieldOperators = { gte: '2026-01-01T00:00:00Z', lt: new Date() }
 * ```
 */
export interface FieldOperators {
  eq?: FilterValue
  /** Not equal; rows whose value is NULL match. */
  ne?: FilterValue
  in?: readonly FilterValue[]
  /** Not in the list; rows whose value is NULL match. */
  notIn?: readonly FilterValue[]
  lt?: FilterValue
  lte?: FilterValue
  gt?: FilterValue
  gte?: FilterValue
  between?: readonly [FilterValue, FilterValue]
  isNull?: boolean
  like?: LikePattern
  ilike?: LikePattern
}

/**
 * A value in a filter: a string, number, boolean or Date (timestamps as Date or ISO 8601 strings).
 *
 * @example
 * ```ts
 * const since: FilterValue = new Date('2026-01-01')
 * ```
 */
export type FilterValue = string | number | boolean | Date

/**
 * A filter: properties with a value (equality), `null` (is null) or operators, combined with `and`, `or` and
 * `not`. Only properties the model lists in `static filterable` may appear.
 *
 * @example
 * ```ts
 * const filter: Filter = {
 *   status: { in: ['active', 'building'] },
 *   or: [{ name: { ilike: { startsWith: 'web' } } }, { region: 'nyc3' }],
 *   not: { ipAddress: null },
 * }
 * ```
 */
export interface Filter {
  and?: readonly Filter[]
  or?: readonly Filter[]
  not?: Filter
  [property: string]: FilterValue | null | FieldOperators | readonly Filter[] | Filter | undefined
}

/**
 * Limits that keep a filter from becoming a denial of service. Every part of a filter counts against one of them,
 * empty groups included, and they are checked while the filter is walked, before any SQL exists:
 *
 * - `depth`: levels of `and` / `or` / `not` below the top of the filter;
 * - `conditions`: conditions in the whole filter (each operator on a property is one, a plain value or `null` is
 *   one), and entries of one `and` / `or`;
 * - `nodes`: groups, properties and operators in the whole filter: every group (the top one, each entry of an
 *   `and` / `or`, each `not`, empty ones included), every property and every operator;
 * - `listLength`: values in one `in` or `notIn`;
 * - `values`: values in the whole filter: each plain value and operand, each element of an `in` / `notIn`, both ends
 *   of a `between`;
 * - `stringLength`: characters in one string value.
 *
 * @example
 * ```ts
 * const ids = wanted.slice(0, FILTER_LIMITS.listLength)
 * ```
 */
export const FILTER_LIMITS = Object.freeze({
  depth: 6,
  conditions: 64,
  nodes: 512,
  listLength: 1_000,
  values: 4_096,
  stringLength: 4_096,
})

/**
 * The bounds of the cache of compiled filter SQL, per model: at most `entries` distinct filter shapes and about `bytes`
 * bytes of shapes and SQL together; past either, the least recently used shapes are dropped (and compiled again when
 * they come back).
 *
 * @internal
 */
export const FILTER_SQL_CACHE = Object.freeze({ entries: 1_000, bytes: 1024 * 1024 })

/** A property as the compiler sees it. @internal */
export interface FilterColumn {
  readonly sql: string
  readonly type: ColumnType
  /**
   * For an encrypted property: its blind index of a value. The column is then the blind-index column, and only
   * equality (and `null`) can be asked.
   */
  readonly lookup?: (value: string) => string | readonly string[]
}

/** The result of walking a filter: a key for its shape, and its values in order. @internal */
export interface FilterWalk {
  readonly shape: string
  readonly bindings: unknown[]
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$/

// Caller-controlled names (properties, operators, like forms) are only ever looked up in Maps and Sets, or as own
// properties: never through an object's prototype chain, where `constructor` or `toString` would be found.
const OPERATORS: ReadonlyMap<string, ReadonlySet<string>> = new Map([
  ['string', new Set(['eq', 'ne', 'in', 'notIn', 'lt', 'lte', 'gt', 'gte', 'between', 'isNull', 'like', 'ilike'])],
  ['uuid', new Set(['eq', 'ne', 'in', 'notIn', 'isNull'])],
  ['enum', new Set(['eq', 'ne', 'in', 'notIn', 'isNull'])],
  ['integer', new Set(['eq', 'ne', 'in', 'notIn', 'lt', 'lte', 'gt', 'gte', 'between', 'isNull'])],
  ['timestamp', new Set(['eq', 'ne', 'in', 'notIn', 'lt', 'lte', 'gt', 'gte', 'between', 'isNull'])],
  ['boolean', new Set(['eq', 'ne', 'isNull'])],
  ['inet', new Set(['eq', 'ne', 'in', 'notIn', 'isNull'])],
])

const LIKE_FORMS: ReadonlySet<string> = new Set(['startsWith', 'contains', 'endsWith'])

const ARRAY_TYPES: ReadonlyMap<string, string> = new Map([
  ['string', 'text[]'],
  ['enum', 'text[]'],
  ['uuid', 'uuid[]'],
  ['integer', 'int8[]'],
  ['timestamp', 'timestamptz[]'],
  ['inet', 'inet[]'],
])

const hasOwn = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key)

/** How much of the limits a filter has used so far. */
interface Counter {
  conditions: number
  nodes: number
  values: number
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

const typeName = (type: ColumnType): string => (typeof type === 'string' ? type : 'enum')

const SAFE_KEY = /^[A-Za-z_$][A-Za-z0-9_$]{0,63}$/

/** A caller's key as it may appear in an error: short identifiers as they are, anything else not at all. */
export const displayKey = (key: string): string => (SAFE_KEY.test(key) ? key : '(invalid key)')

/**
 * Where a node is in a filter, as `filter.or[2].name.in[7]`: built as a chain while walking, and rendered only for
 * an error message (a filter within the limits never pays for the text).
 */
class Path {
  constructor(
    readonly parent: Path | string,
    readonly key: string | number,
  ) {}

  toString(): string {
    return typeof this.key === 'number'
      ? `${String(this.parent)}[${this.key}]`
      : `${String(this.parent)}.${displayKey(this.key)}`
  }
}

/** A place in a filter: a Path, or its text. */
type Field = Path | string

function invalid(at: Field, message: string): never {
  const field = String(at)
  throw new ValidationError(`Invalid filter: ${field} ${message}.`, [{ field, message, keyword: 'filter' }])
}

function countNode(counter: Counter, at: Field): void {
  counter.nodes += 1
  if (counter.nodes > FILTER_LIMITS.nodes) {
    invalid(at, `makes the filter larger than ${FILTER_LIMITS.nodes} groups, properties and operators`)
  }
}

function countCondition(counter: Counter, at: Field, values: number): void {
  counter.conditions += 1
  if (counter.conditions > FILTER_LIMITS.conditions) {
    invalid(at, `makes the filter longer than ${FILTER_LIMITS.conditions} conditions`)
  }
  countValues(counter, at, values)
}

function countValues(counter: Counter, at: Field, values: number): void {
  counter.values += values
  if (counter.values > FILTER_LIMITS.values)
    invalid(at, `makes the filter hold more than ${FILTER_LIMITS.values} values`)
}

function arrayType(type: ColumnType): string {
  const array = ARRAY_TYPES.get(typeName(type))
  if (array === undefined) throw new Error('filter shape: no array type')
  return array
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Date) return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}

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
      if (typeof value !== 'string' || !UUID.test(value)) invalid(field, 'must be a UUID')
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

function likeValue(pattern: unknown, field: Field): { form: string; value: string } {
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

/**
 * Compiles filters to parameterized SQL for one model. `walk()` checks a filter and extracts its shape and values
 * on every call; `sql()` turns a shape into SQL text once, and the caller caches it by shape. Column names come
 * only from the model's whitelist; every value is a bind parameter.
 *
 * @internal
 */
export class FilterCompiler {
  readonly #columns: ReadonlyMap<string, FilterColumn>
  readonly #sqlByShape = new BoundedMap<string, string>({
    maxEntries: FILTER_SQL_CACHE.entries,
    maxBytes: FILTER_SQL_CACHE.bytes,
  })

  constructor(columns: ReadonlyMap<string, FilterColumn>) {
    this.#columns = columns
  }

  /** Checks a filter; throws a ValidationError for anything not allowed, before any SQL exists. */
  walk(filter: unknown): FilterWalk {
    const bindings: unknown[] = []
    const counter: Counter = { conditions: 0, nodes: 0, values: 0 }
    if (filter === undefined) return { shape: '', bindings }
    const shape = this.#walkGroup(filter, 'filter', 0, bindings, counter)
    return { shape, bindings }
  }

  /** The SQL condition for a shape from {@link walk}, with `?` placeholders; `''` for no filter. */
  sql(shape: string): string {
    if (shape === '') return ''
    let sql = this.#sqlByShape.get(shape)
    if (sql === undefined) {
      sql = this.#compile(shape)
      this.#sqlByShape.set(shape, sql)
    }
    return sql
  }

  /** What the compiled-SQL cache holds now: entries and estimated bytes. @internal */
  cacheStats(): { entries: number; bytes: number; maxEntries: number; maxBytes: number } {
    const cache = this.#sqlByShape
    return { entries: cache.size, bytes: cache.bytes, maxEntries: cache.maxEntries, maxBytes: cache.maxBytes }
  }

  #walkGroup(filter: unknown, path: Field, depth: number, bindings: unknown[], counter: Counter): string {
    if (depth > FILTER_LIMITS.depth) invalid(path, `nests deeper than ${FILTER_LIMITS.depth} levels`)
    countNode(counter, path)
    if (!isPlainObject(filter)) invalid(path, 'must be an object')
    const parts: string[] = []
    for (const key of Object.keys(filter)) {
      const value = filter[key]
      if (value === undefined) continue
      const at = new Path(path, key)
      if (key === 'and' || key === 'or') {
        if (!Array.isArray(value)) invalid(at, 'must be an array of filters')
        const items = value as readonly unknown[]
        if (items.length > FILTER_LIMITS.conditions) invalid(at, `has more than ${FILTER_LIMITS.conditions} filters`)
        // An index loop, not map(): map skips the holes of a sparse array, which must be refused like undefined.
        const inner: string[] = []
        for (let i = 0; i < items.length; i += 1) {
          inner.push(this.#walkGroup(items[i], new Path(at, i), depth + 1, bindings, counter))
        }
        parts.push(`${key}(${inner.join(',')})`)
      } else if (key === 'not') {
        parts.push(`not(${this.#walkGroup(value, at, depth + 1, bindings, counter)})`)
      } else {
        parts.push(this.#walkField(key, value, at, bindings, counter))
      }
    }
    return `{${parts.join(';')}}`
  }

  #walkField(key: string, value: unknown, path: Path, bindings: unknown[], counter: Counter): string {
    const column = this.#columns.get(key)
    if (column === undefined) invalid(path, 'is not a filterable property')
    countNode(counter, path)
    const count = (at: Field, values = 1): void => countCondition(counter, at, values)
    if (value === null) {
      count(path, 0)
      return `${key}:isNull=1`
    }
    if (column.lookup !== undefined) {
      // An encrypted property: equality through its blind index, nothing else (a range or a pattern over
      // ciphertexts would silently match nothing).
      let operand: unknown = value
      if (isPlainObject(value)) {
        const operators = Object.keys(value)
        const unknownOp = operators.find((op) => !OPERATORS.get('string')!.has(op))
        if (unknownOp !== undefined) invalid(new Path(path, unknownOp), 'is not an operator')
        if (operators.length === 1 && hasOwn(value, 'eq')) {
          countNode(counter, new Path(path, 'eq'))
          operand = value.eq
        }
      }
      if (isPlainObject(operand) || Array.isArray(operand)) {
        invalid(path, 'is encrypted: only equality ({ eq } or a plain value) can be filtered, through its blind index')
      }
      count(path)
      // Several indexes while a blind-index key is being retired: a row matches under the new key or an old one.
      const indexes = column.lookup(checkValue('string', operand, path) as string)
      if (typeof indexes === 'string') {
        bindings.push(indexes)
        return `${key}:eq`
      }
      bindings.push([...indexes])
      return `${key}:in`
    }
    if (!isPlainObject(value)) {
      if (Array.isArray(value)) invalid(path, 'is a list; use { in: [...] }')
      count(path)
      bindings.push(checkValue(column.type, value, path))
      return `${key}:eq`
    }
    const allowed = OPERATORS.get(typeName(column.type))
    if (allowed === undefined) return invalid(path, 'has an unknown type')
    const ops: string[] = []
    const operators = Object.keys(value)
    if (operators.length === 0) invalid(path, 'has no operator')
    for (const op of operators) {
      const at = new Path(path, op)
      if (!allowed.has(op)) invalid(at, `is not an operator for ${typeName(column.type)} properties`)
      countNode(counter, at)
      // An own property: `op` is one of the known operator names, and the value is a plain object.
      const operand = value[op]
      switch (op) {
        case 'in':
        case 'notIn': {
          if (!Array.isArray(operand)) invalid(at, 'must be an array')
          if (operand.length > FILTER_LIMITS.listLength) invalid(at, `has more than ${FILTER_LIMITS.listLength} values`)
          count(at, operand.length)
          // Array.from visits holes too, so `[, 'x']` is refused like `[undefined, 'x']`.
          bindings.push(Array.from(operand as unknown[], (item, i) => checkValue(column.type, item, new Path(at, i))))
          ops.push(op)
          break
        }
        case 'between': {
          if (!Array.isArray(operand) || operand.length !== 2) invalid(at, 'must be [low, high]')
          count(at, 2)
          bindings.push(
            checkValue(column.type, operand[0], new Path(at, 0)),
            checkValue(column.type, operand[1], new Path(at, 1)),
          )
          ops.push(op)
          break
        }
        case 'isNull':
          count(at, 0)
          if (typeof operand !== 'boolean') invalid(at, 'must be true or false')
          ops.push(`isNull=${operand ? 1 : 0}`)
          break
        case 'like':
        case 'ilike': {
          count(at)
          const { value: pattern } = likeValue(operand, at)
          bindings.push(pattern)
          ops.push(op)
          break
        }
        default:
          count(at)
          if (operand === null) invalid(at, 'must not be null; use { isNull: true }')
          if (Array.isArray(operand)) invalid(at, 'is a list; use { in: [...] }')
          bindings.push(checkValue(column.type, operand, at))
          ops.push(op)
      }
    }
    return `${key}:${ops.join(',')}`
  }

  #compile(shape: string): string {
    let pos = 0
    const expect = (char: string): void => {
      if (shape[pos] !== char) throw new Error(`filter shape: expected ${char} at ${pos}`)
      pos += 1
    }
    const readUntil = (stops: string): string => {
      const start = pos
      while (pos < shape.length && !stops.includes(shape[pos]!)) pos += 1
      return shape.slice(start, pos)
    }
    const group = (): string => {
      expect('{')
      const parts: string[] = []
      while (shape[pos] !== '}') {
        if (shape.startsWith('and(', pos) || shape.startsWith('or(', pos)) {
          const joiner = shape.startsWith('and(', pos) ? ' and ' : ' or '
          pos += joiner === ' and ' ? 4 : 3
          const inner: string[] = []
          while (shape[pos] !== ')') {
            inner.push(group())
            if (shape[pos] === ',') pos += 1
          }
          expect(')')
          parts.push(inner.length === 0 ? (joiner === ' and ' ? 'true' : 'false') : `(${inner.join(joiner)})`)
        } else if (shape.startsWith('not(', pos)) {
          pos += 4
          const inner = group()
          expect(')')
          // `is not true` keeps two-valued logic: a comparison with NULL counts as false, so its negation is true.
          parts.push(`((${inner}) is not true)`)
        } else {
          const key = readUntil(':')
          expect(':')
          const ops = readUntil(';}').split(',')
          const column = this.#columns.get(key)!
          for (const op of ops) parts.push(this.#condition(column, op))
        }
        if (shape[pos] === ';') pos += 1
      }
      expect('}')
      return parts.length === 0 ? 'true' : parts.length === 1 ? parts[0]! : `(${parts.join(' and ')})`
    }
    return group()
  }

  #condition(column: FilterColumn, op: string): string {
    const c = column.sql
    // An integer value is any safe integer: bound as int8, so a smallint or integer column compares it (PostgreSQL
    // has the cross-type operators, and indexes serve them) instead of failing to read it as its own type.
    const v = typeName(column.type) === 'integer' ? '?::int8' : '?'
    switch (op) {
      case 'eq':
        return `${c} = ${v}`
      case 'ne':
        return `${c} is distinct from ${v}`
      case 'lt':
        return `${c} < ${v}`
      case 'lte':
        return `${c} <= ${v}`
      case 'gt':
        return `${c} > ${v}`
      case 'gte':
        return `${c} >= ${v}`
      case 'between':
        return `${c} between ${v} and ${v}`
      case 'in':
        return `${c} = any(?::${arrayType(column.type)})`
      case 'notIn':
        return `((${c} = any(?::${arrayType(column.type)})) is not true)`
      case 'isNull=1':
        return `${c} is null`
      case 'isNull=0':
        return `${c} is not null`
      case 'like':
        return `${c} like ? escape '\\'`
      case 'ilike':
        return `${c} ilike ? escape '\\'`
      default:
        throw new Error(`filter shape: unknown operator ${op}`)
    }
  }
}
